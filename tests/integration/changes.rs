//! Incremental and differential backups after a realistic change, independence of fulls, and
//! restoring a full after every other backup's packs are gone.

use std::collections::BTreeSet;

use crate::support::{Backend, Env, CHANGE_SQL, WEDDING_SQL};

fn stored(v: &serde_json::Value) -> u64 {
    v["stored_bytes"].as_u64().expect("stored_bytes")
}

crate::both_backends!(incremental_and_differential_store_little_and_restore_exactly);

fn incremental_and_differential_store_little_and_restore_exactly(backend: Backend) {
    let env = Env::with_backend(backend, "wed", Some(WEDDING_SQL));
    let before = env.fingerprint("wed");
    let full = env.backup("full");
    let full_packs: BTreeSet<_> = env.pack_keys().into_iter().collect();
    assert!(!full_packs.is_empty());

    env.psql_file("wed", CHANGE_SQL);
    let after = env.fingerprint("wed");
    assert_ne!(before, after, "the change changed nothing");

    let inc = env.backup("incremental");
    let diff = env.backup("differential");
    assert_eq!(inc["type"], "incremental");
    assert_eq!(diff["type"], "differential");
    let (f, i, d) = (stored(&full), stored(&inc), stored(&diff));
    eprintln!(
        "stored bytes: full {f}, incremental {i} ({:.1}%), differential {d} ({:.1}%)",
        i as f64 * 100.0 / f as f64,
        d as f64 * 100.0 / f as f64
    );
    assert!(
        i * 4 < f,
        "incremental stored {i} bytes, not a small fraction of the full's {f}"
    );
    assert!(
        d * 4 < f,
        "differential stored {d} bytes, not a small fraction of the full's {f}"
    );
    // Nothing changed between the incremental and the differential: the incremental's chunks
    // already cover it, yet the differential (against the full) stores the change again.
    assert!(d > 0, "a differential stores what differs from its full");

    for (b, db) in [(&inc, "wed_inc"), (&diff, "wed_diff")] {
        env.restore_new(b["id"].as_str().expect("id"), db).ok();
        assert_eq!(
            env.fingerprint(db),
            after,
            "{db} differs from the changed source"
        );
        assert_eq!(env.schema(db), env.schema("wed"), "{db} schema differs");
    }

    // A second full shares nothing with the first.
    let packs_before_full2: BTreeSet<_> = env.pack_keys().into_iter().collect();
    let full2 = env.backup("full");
    let full2_packs: BTreeSet<_> = env
        .pack_keys()
        .into_iter()
        .collect::<BTreeSet<_>>()
        .difference(&packs_before_full2)
        .cloned()
        .collect();
    assert!(
        stored(&full2) * 10 > f * 9,
        "a full must store everything anew"
    );
    assert!(!full2_packs.is_empty());

    // Delete every pack the first full did not write: it still restores on its own...
    for p in env.pack_keys() {
        if !full_packs.contains(&p) {
            env.delete_object(&p);
        }
    }
    env.restore_new(full["id"].as_str().expect("id"), "wed_full")
        .ok();
    assert_eq!(env.fingerprint("wed_full"), before);

    // ...while the second full now misses its packs: restore fails naming the backup, and
    // the target database is never created.
    let id2 = full2["id"].as_str().expect("id");
    let r = env.restore_new(id2, "wed_broken");
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains(id2) && r.stderr.contains("missing"),
        "{}",
        r.stderr
    );
    assert!(!env.db_exists("wed_broken"));
}

#[test]
fn default_type_is_full_then_incremental() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let r = env.keepsake(&["backup", "--json"]).ok();
    let full: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(full[0]["type"], "full");
    let r = env.keepsake(&["backup", "--json"]).ok();
    let inc: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(inc[0]["type"], "incremental");
    // Nothing changed but the archive header's timestamp: almost nothing is stored.
    assert!(stored(&inc[0]) * 20 < stored(&full[0]), "{}", r.stdout);
}
