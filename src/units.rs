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

#[cfg(test)]
mod tests {
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
