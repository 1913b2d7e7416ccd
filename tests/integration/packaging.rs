//! What an operator installs beside the binary: shell completions and man pages generated from
//! the same clap definitions as the commands, so they name every command and never drift.

use crate::support::keepsake_raw;

#[test]
fn completions_and_man_pages_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let r = keepsake_raw(&["completions", shell], &[]).ok();
        for cmd in [
            "backup", "restore", "verify", "drill", "drills", "audit", "token",
        ] {
            assert!(r.stdout.contains(cmd), "{shell} completions lack {cmd}");
        }
    }
    let bad = keepsake_raw(&["completions", "tcsh"], &[]);
    assert_eq!(bad.code, 2, "{}", bad.all());

    let dir = tempfile::tempdir().expect("tmp");
    let r = keepsake_raw(
        &["manpages", "--output", dir.path().to_str().expect("utf8")],
        &[],
    )
    .ok();
    for page in [
        "keepsake.1",
        "keepsake-backup.1",
        "keepsake-restore.1",
        "keepsake-drill.1",
        "keepsake-config-check.1",
        "keepsake-token-new.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}\n{}", r.stdout));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is roff"
        );
    }
    let drill = std::fs::read_to_string(dir.path().join("keepsake-drill.1")).expect("drill page");
    assert!(drill.contains("Rehearse a recovery"), "{drill}");
    assert!(drill.contains("\\-\\-identity"), "{drill}");
    // The hidden generator has no page of its own.
    assert!(!dir.path().join("keepsake-manpages.1").exists());
}

/// Issue 25: a plain `cargo build --release` made a 197 MiB binary (line tables of every
/// dependency). The release profile builds without debug info and strips it (≤ 40 MiB,
/// measured in BENCHMARKS.md); symbols for a backtrace are one environment variable away
/// (docs/architecture.md). A profile that brings the debug info back fails here.
#[test]
fn the_release_profile_ships_no_debug_info() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let t: toml::Table = text.parse().expect("Cargo.toml parses");
    let release = &t["profile"]["release"];
    assert!(
        matches!(release.get("debug"), Some(toml::Value::Boolean(false)))
            || matches!(release.get("debug"), Some(toml::Value::Integer(0))),
        "[profile.release] debug: {release}"
    );
    assert!(
        matches!(
            release.get("strip").and_then(toml::Value::as_str),
            Some("debuginfo" | "symbols")
        ) || matches!(release.get("strip"), Some(toml::Value::Boolean(true))),
        "[profile.release] strip: {release}"
    );
    // Link-time optimisation across the whole program is what keeps the binary under 40 MiB
    // with its symbols (thin LTO gave 40.5 MiB, none 41.5 MiB, session 14).
    assert!(
        matches!(
            release.get("lto").and_then(toml::Value::as_str),
            Some("fat")
        ) || matches!(release.get("lto"), Some(toml::Value::Boolean(true))),
        "[profile.release] lto: {release}"
    );
    assert!(
        matches!(release.get("codegen-units"), Some(toml::Value::Integer(1))),
        "[profile.release] codegen-units: {release}"
    );
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/architecture.md"))
        .expect("docs/architecture.md");
    assert!(
        doc.contains("CARGO_PROFILE_RELEASE_DEBUG"),
        "the architecture document says how to get symbols for a backtrace"
    );
}
