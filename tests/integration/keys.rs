//! Keys: keygen writes a standard, private identity and never overwrites; identities from
//! `age-keygen` work; and a backup can be reassembled by hand with the `age` and `zstd` CLIs
//! following the documented layout (src/core/format.rs).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::{keepsake_raw, pipe, Env, AWKWARD_SQL};

/// Open a sealed metadata object with the CLIs: strip the 8-byte magic and 32-byte MAC.
fn open_sealed(bytes: &[u8], identity: &std::path::Path) -> serde_json::Value {
    let age_part = &bytes[8..bytes.len() - 32];
    let z = pipe(
        Command::new("age").arg("-d").arg("-i").arg(identity),
        age_part,
    );
    serde_json::from_slice(&pipe(Command::new("zstd").arg("-d").arg("-c"), &z)).expect("json")
}

#[test]
fn keygen_is_private_and_never_overwrites() {
    let d = tempfile::tempdir().expect("tmp");
    let p = d.path().join("id.txt");
    let r = keepsake_raw(&["keygen", "--output", p.to_str().expect("utf8")], &[]).ok();
    assert!(r.stdout.trim().starts_with("age1"), "{}", r.stdout);
    let text = std::fs::read_to_string(&p).expect("read");
    assert!(
        !r.all().contains(text.lines().last().expect("line")),
        "secret printed"
    );
    assert_eq!(
        std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    // The age CLI accepts it and derives the same recipient.
    let o = Command::new("age-keygen")
        .arg("-y")
        .arg(&p)
        .output()
        .expect("age-keygen");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), r.stdout.trim());
    let again = keepsake_raw(&["keygen", "--output", p.to_str().expect("utf8")], &[]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(&p).expect("read"),
        text,
        "keygen overwrote a key"
    );
}

#[test]
fn age_keygen_identity_works_and_age_cli_can_reassemble_a_backup() {
    let mut env = Env::new("awk", Some(AWKWARD_SQL));
    // Switch to an identity made by age-keygen, in a fresh repository.
    let id = env.dir.path().join("age-keygen.txt");
    let o = Command::new("age-keygen")
        .arg("-o")
        .arg(&id)
        .output()
        .expect("age-keygen");
    assert!(o.status.success());
    let o = Command::new("age-keygen")
        .arg("-y")
        .arg(&id)
        .output()
        .expect("age-keygen -y");
    env.recipient = String::from_utf8_lossy(&o.stdout).trim().to_string();
    env.repo = env.dir.path().join("repo2");
    env.write_config("awk", None, &id);
    env.keepsake(&["init"]).ok();
    let b = env.backup("full");
    let bid = b["id"].as_str().expect("id");

    // The manifest, by hand: stream order and chunk locations.
    let sealed = std::fs::read(env.repo.join("snapshots").join(bid)).expect("manifest");
    let m = open_sealed(&sealed, &id);
    assert_eq!(m["id"], bid);
    let mut archive = Vec::new();
    for ix in m["stream"].as_array().expect("stream") {
        let c = &m["chunks"][ix.as_u64().expect("ix") as usize];
        let pack = m["packs"][c["pack"].as_u64().expect("pack") as usize]["name"]
            .as_str()
            .expect("name");
        let bytes =
            std::fs::read(env.repo.join("packs").join(&pack[..2]).join(pack)).expect("pack");
        let (off, len) = (
            c["offset"].as_u64().expect("o") as usize,
            c["length"].as_u64().expect("l") as usize,
        );
        let z = pipe(
            Command::new("age").arg("-d").arg("-i").arg(&id),
            &bytes[off..off + len],
        );
        archive.extend(pipe(Command::new("zstd").arg("-d").arg("-c"), &z));
    }
    assert_eq!(
        archive.len() as u64,
        m["logical_bytes"].as_u64().expect("n")
    );
    assert!(archive.starts_with(b"PGDMP"));
    // pg_restore reads the hand-made archive.
    let f = env.dir.path().join("by-hand.dump");
    std::fs::write(&f, &archive).expect("write");
    let o = Command::new(env.cluster.bin.join("pg_restore"))
        .arg("--list")
        .arg(&f)
        .output()
        .expect("pg_restore");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Gäste List"));

    // The index is readable the same way and lists the packs the backup wrote.
    let idx_name = crate::support::list_files(&env.repo.join("index"))
        .pop()
        .expect("index");
    let idx = open_sealed(
        &std::fs::read(env.repo.join("index").join(idx_name)).expect("idx"),
        &id,
    );
    assert_eq!(idx["backup_id"], bid);
    assert_eq!(
        idx["packs"].as_array().expect("packs").len(),
        m["packs"].as_array().expect("p").len()
    );
}

/// Regression (issue 13, defect 3): a key object planted by someone who can write to the
/// repository and knows the public recipient. With the fingerprint `init` pinned, only the
/// genuine key is used; with no pin at all, two key objects with different master keys are
/// refused (exit 3, both named); a pin that matches no key object is refused.
#[test]
fn a_planted_key_object_is_refused_or_ignored() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let config = std::fs::read_to_string(&env.config).expect("config");
    let pin = config
        .lines()
        .find_map(|l| l.strip_prefix("repository_key_fingerprint = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("init pinned the key in the configuration");
    assert!(pin.starts_with("ks1:") && pin.len() == 36, "{pin}");

    // The planted key object: a master key of the attacker's, encrypted to the recipient.
    let planted = format!(
        "{{\"version\":1,\"master_key\":\"{}\"}}",
        hex::encode(rand::random::<[u8; 32]>())
    );
    let sealed = pipe(
        Command::new("age").args(["-r", &env.recipient]),
        planted.as_bytes(),
    );
    std::fs::write(env.repo.join("keys").join("0000000000000000"), sealed).expect("plant");

    // Pinned by the configuration: the genuine key, the backup still reads.
    let r = env.keepsake(&["list", "--json"]).ok();
    assert!(r.stdout.contains(&id), "{}", r.all());

    // No pin anywhere: refused, both key objects named.
    let unpinned: String = config
        .lines()
        .filter(|l| !l.starts_with("repository_key_fingerprint"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, &unpinned).expect("config");
    std::fs::remove_file(env.dir.path().join("state/repository-keys.json")).expect("pins");
    let r = env.keepsake(&["list"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("different master keys") && r.stderr.contains("keys/0000000000000000"),
        "{}",
        r.stderr
    );

    // A pin that matches no key object: refused.
    std::fs::write(
        &env.config,
        unpinned.replace(
            "[encryption]\n",
            "[encryption]\nrepository_key_fingerprint = \"ks1:00000000000000000000000000000000\"\n",
        ),
    )
    .expect("config");
    let r = env.keepsake(&["list"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr
            .contains("no key object with the pinned master key"),
        "{}",
        r.stderr
    );
    let _ = pin;
}
