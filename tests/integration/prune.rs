//! Prune: the plan is applied, packs go in two phases, and a backup running beside a prune
//! in another process is never broken.

use std::time::Duration;

use crate::support::{script, Env, AWKWARD_SQL, WEDDING_SQL};

fn with_retention(env: &Env, db: &str, extra: &str, bin_dir: Option<&std::path::Path>) {
    let text = format!("{}\n{extra}\n", env.config_text(db, bin_dir, &env.identity));
    std::fs::write(&env.config, text).expect("config");
}

fn prune_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["prune", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&env.keepsake(&a).ok().stdout).expect("json")
}

#[test]
fn prune_forgets_by_policy_and_collects_packs_in_two_phases() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    with_retention(
        &env,
        "awk",
        "[retention]\nkeep_last = 1\nprune_grace_hours = 0\nallow_short_prune_grace = true",
        None,
    );
    let fp = env.fingerprint("awk");
    let _a = env.backup("full");
    let _b = env.backup("full");
    let c = env.backup("full");
    let packs_before = env.packs().len();

    // Dry run: a plan with reasons, nothing changed.
    let r = prune_json(&env, &["--dry-run"]);
    assert_eq!(r["forgotten"].as_array().expect("f").len(), 2, "{r}");
    assert!(
        r["plan"][0]["reasons"][0]
            .as_str()
            .expect("reason")
            .contains("keep_last 1 of 1"),
        "{r}"
    );
    assert_eq!(env.snapshots().len(), 3);

    // First prune: forgets two backups and only marks their packs.
    let r = prune_json(&env, &[]);
    assert_eq!(
        env.snapshots(),
        vec![c["id"].as_str().expect("id").to_string()]
    );
    assert!(!r["marked"].as_array().expect("m").is_empty(), "{r}");
    assert!(r["deleted_packs"].as_array().expect("d").is_empty(), "{r}");
    assert_eq!(env.packs().len(), packs_before);

    // Second prune: the marked packs go; the kept backup is whole.
    let r = prune_json(&env, &[]);
    let deleted = r["deleted_packs"].as_array().expect("d").len();
    assert!(deleted > 0, "{r}");
    assert_eq!(env.packs().len(), packs_before - deleted);
    env.keepsake(&["verify", "--all", "--level", "data"]).ok();
    env.restore_new(c["id"].as_str().expect("id"), "awk_after_prune")
        .ok();
    assert_eq!(env.fingerprint("awk_after_prune"), fp);
    // A later incremental does not lean on anything deleted.
    let i = env.backup("incremental");
    env.restore_new(i["id"].as_str().expect("id"), "awk_inc_after_prune")
        .ok();
    assert_eq!(env.fingerprint("awk_inc_after_prune"), fp);
}

#[test]
fn prune_beside_a_running_backup_never_breaks_it() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let fp = env.fingerprint("wed");
    // A pg_dump that pauses mid-stream, after some packs are already stored.
    let d = env.dir.path().join("slowbin");
    std::fs::create_dir_all(&d).expect("mkdir");
    let mark = env.dir.path().join("paused");
    script(
        &d.join("pg_dump"),
        &format!(
            "#!/bin/bash\nset -o pipefail\nREAL={}\nif [ \"$1\" = --version ]; then exec \"$REAL\" --version; fi\n\"$REAL\" \"$@\" | {{ head -c 12000000; touch {}; sleep 8; cat; }}\n",
            env.cluster.bin.join("pg_dump").display(),
            mark.display()
        ),
    );
    let _ = std::os::unix::fs::symlink(env.cluster.bin.join("pg_restore"), d.join("pg_restore"));
    with_retention(
        &env,
        "wed",
        "[backup]\npack_size_mib = 1\n\n[retention]\nkeep_last = 1\nprune_grace_hours = 0\nallow_short_prune_grace = true",
        Some(&d),
    );
    let child = env
        .keepsake_cmd(&["backup", "--type", "full", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    crate::support::wait_for(&mark, "dump never paused");
    // The backup has stored a pack (the condition, not a time, is what the test needs).
    crate::support::eventually(
        "the running backup stored a pack",
        Duration::from_secs(60),
        || !env.packs().is_empty(),
    );
    // Two prunes while the backup runs: its packs are unreferenced, get marked, but the
    // backup's lease predates the mark, so nothing is deleted.
    let r1 = prune_json(&env, &[]);
    assert!(!r1["marked"].as_array().expect("m").is_empty(), "{r1}");
    let r2 = prune_json(&env, &[]);
    assert!(
        r2["deleted_packs"].as_array().expect("d").is_empty(),
        "deleted a running backup's pack: {r2}"
    );
    assert!(r2["waiting"].to_string().contains("still running"), "{r2}");

    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = v[0]["id"].as_str().expect("id");
    // Marks of now-referenced packs are dropped; nothing of the backup is deleted later.
    let r3 = prune_json(&env, &[]);
    assert!(
        r3["deleted_packs"].as_array().expect("d").is_empty(),
        "{r3}"
    );
    env.write_config("wed", None, &env.identity);
    env.restore_new(id, "wed_restored").ok();
    assert_eq!(env.fingerprint("wed_restored"), fp);
}

#[test]
fn prune_removes_no_pack_while_a_manifest_is_unreadable() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    with_retention(
        &env,
        "awk",
        "[retention]\nkeep_last = 1\nprune_grace_hours = 0\nallow_short_prune_grace = true",
        None,
    );
    let a = env.backup("full");
    let _b = env.backup("full");
    let p = env
        .repo
        .join("snapshots")
        .join(a["id"].as_str().expect("id"));
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[30] ^= 1;
    std::fs::write(&p, bytes).expect("write");
    let packs = env.packs().len();
    for _ in 0..2 {
        let r = env.keepsake(&["prune"]);
        assert_eq!(r.code, 3, "{}", r.all());
        assert!(r.all().contains("removed no pack"), "{}", r.all());
    }
    assert_eq!(
        env.packs().len(),
        packs,
        "packs of an unreadable backup were removed"
    );
}

/// Issue 13 defect 4: a backup whose lease disappears while it runs (a prune took it for dead)
/// commits nothing — it would otherwise commit a manifest naming packs that prune may be
/// deleting. Exit 1, the reason named, no new backup, and a rerun succeeds.
#[test]
fn a_backup_whose_lease_was_removed_commits_nothing() {
    let env = Env::new("big", None);
    env.psql(
        "big",
        "CREATE TABLE t AS SELECT i, md5(i::text) || md5((i * 7)::text) AS s FROM generate_series(1, 2000000) i",
    );
    let child = env
        .keepsake_cmd(&["backup", "--type", "full"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let locks = env.repo.join("locks");
    let t = std::time::Instant::now();
    let lease = loop {
        // The lease itself, not the temporary file it is written through (renamed into place).
        let found = std::fs::read_dir(&locks).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with("20"))
                .map(|e| e.path())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "no lease appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::fs::remove_file(&lease).expect("remove the lease");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lease") && err.contains("is gone"), "{err}");
    assert!(env.snapshots().is_empty(), "nothing was committed");
    let r = env.keepsake(&["backup", "--type", "full"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(env.snapshots().len(), 1);
}

/// The grace period, by default 24 hours: packs a prune marked stay through later prunes until
/// it is over (a backup that planned before the mark may still commit with them), and go once
/// it is. On S3, like on a folder.
#[test]
fn marked_packs_wait_out_the_default_grace_period_on_s3() {
    let env = Env::with_backend(crate::support::Backend::S3, "awk", Some(AWKWARD_SQL));
    // No prune_grace_hours: the default applies.
    with_retention(&env, "awk", "[retention]\nkeep_last = 1", None);
    env.backup("full");
    let kept = env.backup("full")["id"].as_str().expect("id").to_string();
    let packs = || env.object_keys("packs/").len();
    let before = packs();
    let r = prune_json(&env, &[]);
    let marked = r["marked"].as_array().expect("marked").len();
    assert!(marked > 0, "{r}");
    // Later prunes keep every marked pack and say why.
    for _ in 0..2 {
        let r = prune_json(&env, &[]);
        assert!(r["deleted_packs"].as_array().expect("d").is_empty(), "{r}");
        let waiting = r["waiting"].as_array().expect("waiting");
        assert_eq!(waiting.len(), marked, "{r}");
        assert!(
            waiting[0][1]
                .as_str()
                .is_some_and(|w| w.contains("grace period not over")),
            "{r}"
        );
    }
    assert_eq!(packs(), before);
    env.keepsake(&["verify", &kept, "--level", "data"]).ok();
    // With the grace period over (here: set to 0), they go; the kept backup is whole.
    with_retention(
        &env,
        "awk",
        "[retention]\nkeep_last = 1\nprune_grace_hours = 0\nallow_short_prune_grace = true",
        None,
    );
    let r = prune_json(&env, &[]);
    assert_eq!(
        r["deleted_packs"].as_array().expect("d").len(),
        marked,
        "{r}"
    );
    assert_eq!(packs(), before - marked);
    env.keepsake(&["verify", &kept, "--level", "data"]).ok();
}

/// Regression (issue 28, HIGH 2): a verification record that cannot be read was skipped, so
/// its backup counted as if it had never been checked — perhaps a damaged backup whose failure
/// record is the unreadable one — and filled `keep_last` while the proven backup before it was
/// forgotten. Its status is now `unknown`: shown, kept, and not counted in a slot.
#[test]
fn an_unreadable_verification_record_makes_its_backup_unknown_never_a_slot_filler() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    with_retention(
        &env,
        "wed",
        "[retention]\nkeep_last = 1\nprune_grace_hours = 0\nallow_short_prune_grace = true",
        None,
    );
    let proven = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &proven, "--level", "data"]).ok();
    let newer = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &newer, "--level", "data"]).ok();
    // The newer backup's record is damaged in the repository.
    let keys: Vec<String> = env
        .object_keys("verifications/")
        .into_iter()
        .filter(|k| k.contains(&newer))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let mut b = env.read_object(&keys[0]);
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    env.write_object(&keys[0], b);
    let _ = std::fs::remove_dir_all(env.dir.path().join("state/cache"));

    let list = env.keepsake(&["list", "--json"]).ok().json();
    let level = |id: &str| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|b| b["id"] == id)
            .map(|b| b["verified_level"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(level(&newer).as_deref(), Some("unknown"), "{list}");
    assert_eq!(level(&proven).as_deref(), Some("data"), "{list}");
    let show = env.keepsake(&["show", &newer]).ok().stdout;
    assert!(show.contains("cannot be read"), "{show}");

    let plan = prune_json(&env, &[]);
    let text = plan.to_string();
    assert!(text.contains("verification status unknown"), "{text}");
    let left = env.snapshots();
    assert_eq!(left.len(), 2, "neither backup is forgotten: {text}");
}
