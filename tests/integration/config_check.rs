//! Configuration fixtures: each invalid file exits 2 with the expected `file:line: key:`
//! message (first line of the fixture, `# expect: …`); the valid one and config.example.toml
//! pass `config check`. Secrets referenced by the config never appear in output.

use crate::support::keepsake_raw;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");

#[test]
fn config_fixtures_give_the_expected_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let identity = tmp.path().join("id.txt");
    keepsake_raw(
        &["keygen", "--output", identity.to_str().expect("utf8")],
        &[],
    )
    .ok();
    let mut checked = 0;
    for e in std::fs::read_dir(DIR).expect("fixtures").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(e.path()).expect("read");
        let path = tmp.path().join(&name);
        std::fs::write(
            &path,
            text.replace("@IDENTITY@", identity.to_str().expect("utf8")),
        )
        .expect("write");
        let r = keepsake_raw(
            &["--config", path.to_str().expect("utf8"), "config", "check"],
            &[("KEEPSAKE_FIXTURE_PW", "fixture-secret-pw")],
        );
        let first = text.lines().next().expect("first line");
        if first == "# expect-ok" {
            assert_eq!(r.code, 0, "{name}: {}", r.all());
            assert!(r.stdout.contains("valid"), "{name}: {}", r.stdout);
        } else {
            let want = first
                .strip_prefix("# expect: ")
                .expect("fixture needs # expect:");
            assert_eq!(r.code, 2, "{name}: {}", r.all());
            assert!(
                r.stderr.contains(want),
                "{name}: expected {want:?} in {:?}",
                r.stderr
            );
        }
        assert!(
            !r.all().contains("hunter2") && !r.all().contains("fixture-secret-pw"),
            "{name} leaked a secret"
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} fixtures");
}

#[test]
fn missing_env_secret_and_missing_file_exit_2() {
    let tmp = tempfile::tempdir().expect("tmp");
    let identity = tmp.path().join("id.txt");
    keepsake_raw(
        &["keygen", "--output", identity.to_str().expect("utf8")],
        &[],
    )
    .ok();
    let text = std::fs::read_to_string(format!("{DIR}/valid.toml"))
        .expect("read")
        .replace("@IDENTITY@", identity.to_str().expect("utf8"));
    let path = tmp.path().join("k.toml");
    std::fs::write(&path, text).expect("write");
    // The env var is not set.
    let r = keepsake_raw(
        &["--config", path.to_str().expect("utf8"), "config", "check"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains(
            ":12: sources[0].password: environment variable KEEPSAKE_FIXTURE_PW is not set"
        ),
        "{}",
        r.stderr
    );
    // $KEEPSAKE_CONFIG is honoured, and a missing file says how to fix it.
    let r = keepsake_raw(
        &["config", "check"],
        &[("KEEPSAKE_CONFIG", "/nonexistent/k.toml")],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/nonexistent/k.toml") && r.stderr.contains("--config"),
        "{}",
        r.stderr
    );
}

#[test]
fn example_config_is_valid() {
    let tmp = tempfile::tempdir().expect("tmp");
    let identity = tmp.path().join("id.txt");
    keepsake_raw(
        &["keygen", "--output", identity.to_str().expect("utf8")],
        &[],
    )
    .ok();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
        .expect("config.example.toml")
        .replace(
            "/etc/keepsake/identity.txt",
            identity.to_str().expect("utf8"),
        );
    let path = tmp.path().join("example.toml");
    std::fs::write(&path, text).expect("write");
    let vars: Vec<(String, String)> = std::fs::read_to_string(&path)
        .expect("read")
        .split("env:")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .map(|v| (v, "example-value".to_string()))
        .collect();
    let env: Vec<(&str, &str)> = vars.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let r = keepsake_raw(
        &["--config", path.to_str().expect("utf8"), "config", "check"],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.all());
}
