//! How keepsake writes sizes, ages and durations for people: one style for every face and
//! every report (`4.2 GiB`, `3h`, `1m35s`). A leaf: it imports nothing of keepsake.

/// Bytes in binary units: `512 B`, `4.2 GiB`.
pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// How long ago, coarsely: `45s`, `12m`, `5h`, `3d`.
pub fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A configured duration as written (26h, 90m, 7d).
pub fn span(secs: i64) -> String {
    match secs {
        s if s > 0 && s % 86400 == 0 => format!("{}d", s / 86400),
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A measured time: `12ms`, `0.8s`, `4.2s`, `1m35s`, `2h05m`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        m if m < 1000 => format!("{m}ms"),
        m if m < 60_000 => format!("{:.1}s", m as f64 / 1000.0),
        m => duration(m / 1000),
    }
}

/// Whole seconds: `12s`, `4m12s`, `1h03m`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A size as people write it in the configuration: `512MiB`, `8 GiB`, `64MB`, `1048576` (bytes).
/// Binary and decimal units are taken at their word (`MiB` = 2^20, `MB` = 10^6).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let at = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(at);
    let bad =
        || format!("\"{s}\" is not a size: use a number and B, KiB, MiB, GiB or TiB, e.g. 8GiB");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("\"{s}\" is out of range: more than 0 and less than 16 EiB"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn sizes_as_people_write_them() {
        assert_eq!(super::parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(super::parse_size(" 64 MiB "), Ok(64 << 20));
        assert_eq!(super::parse_size("64MB"), Ok(64_000_000));
        assert_eq!(super::parse_size("1048576"), Ok(1 << 20));
        for bad in ["", "MiB", "8 gigs", "-1GiB", "0", "99999999999TiB"] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }
    use super::*;

    #[test]
    fn one_style_for_every_measure() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(duration_ms(12), "12ms");
        assert_eq!(duration_ms(800), "800ms");
        assert_eq!(duration_ms(4_200), "4.2s");
        assert_eq!(duration_ms(95_000), "1m35s");
        assert_eq!(duration(7_500), "2h05m");
        assert_eq!(age(90), "90s");
        assert_eq!(span(26 * 3600), "26h");
    }
}
