//! Continuous change capture (issue 29), as far as it is built: the pgoutput decoder against
//! the messages a real server sends for every kind of change.

use keepsake::pg::pgoutput::{decode, parse_lsn, Message, OldKind, Value};

use crate::support::Env;

fn text(v: &str) -> Value {
    Value::Text(v.as_bytes().to_vec())
}

/// A real PostgreSQL (wal_level = logical) and a pgoutput slot; the changes an application
/// makes — inserts, an update leaving a TOASTed value untouched, a key change, deletes with a
/// key and with a whole row (REPLICA IDENTITY FULL), TRUNCATE, NULLs, two tables in one
/// transaction — read back as the server's own bytes (`pg_logical_slot_peek_binary_changes`)
/// and decoded, message by message.
#[test]
fn pgoutput_from_a_real_server_decodes_every_kind_of_change() {
    let mut env = Env::new("cap", None);
    env.cluster
        .reconfigure(&[], "wal_level = logical", None)
        .expect("restart with wal_level = logical");
    // One psql call per transaction (psql -c runs a string of statements as one).
    for sql in [
        "CREATE TABLE t (id int PRIMARY KEY, v text, big text);
         ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
         CREATE TABLE whole (x int, y text);
         ALTER TABLE whole REPLICA IDENTITY FULL;
         CREATE PUBLICATION p FOR TABLE t, whole;",
        "SELECT 1 FROM pg_create_logical_replication_slot('s', 'pgoutput')",
        "INSERT INTO t VALUES (1, 'a', repeat('x', 20000))",
        "UPDATE t SET v = 'b' WHERE id = 1",
        "UPDATE t SET id = 2 WHERE id = 1",
        "DELETE FROM t WHERE id = 2",
        "INSERT INTO whole VALUES (5, NULL); INSERT INTO t VALUES (3, NULL, NULL)",
        "DELETE FROM whole",
        "TRUNCATE t",
    ] {
        env.psql("cap", sql);
    }
    let rows = env.psql(
        "cap",
        "SELECT lsn || ' ' || encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL, 'proto_version', '1', 'publication_names', 'p')",
    );
    let mut msgs = vec![];
    let mut last_lsn = 0;
    for line in rows.lines().filter(|l| !l.trim().is_empty()) {
        let (lsn, hex) = line.split_once(' ').expect("lsn and data");
        let lsn = parse_lsn(lsn).expect("lsn");
        assert!(lsn >= last_lsn, "in stream order");
        last_lsn = lsn;
        let bytes = hex::decode(hex.trim()).expect("hex");
        msgs.push(decode(&bytes).unwrap_or_else(|e| panic!("{e}: {hex}")));
    }
    // Relations by oid, to name what each change is about.
    let mut names = std::collections::BTreeMap::new();
    let mut changes = vec![];
    let mut commits = 0;
    let mut open = false;
    for m in &msgs {
        match m {
            Message::Begin { .. } => {
                assert!(!open, "transactions do not nest");
                open = true;
            }
            Message::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                assert!(open && end_lsn > commit_lsn);
                open = false;
                commits += 1;
            }
            Message::Relation(r) => {
                names.insert(r.oid, r.clone());
            }
            Message::Insert { relation, new } => {
                changes.push(format!("insert {} {:?}", names[relation].name, new))
            }
            Message::Update { relation, old, new } => changes.push(format!(
                "update {} {:?} {:?}",
                names[relation].name, old, new
            )),
            Message::Delete { relation, old } => {
                changes.push(format!("delete {} {:?}", names[relation].name, old))
            }
            Message::Truncate { relations, .. } => changes.push(format!(
                "truncate {}",
                relations
                    .iter()
                    .map(|r| names[r].name.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            _ => {}
        }
    }
    assert!(!open);
    assert_eq!(commits, 7, "{msgs:#?}");
    let t = names.values().find(|r| r.name == "t").expect("relation t");
    assert_eq!(t.namespace, "public");
    assert_eq!(t.replica_identity, b'd');
    assert_eq!(
        t.columns
            .iter()
            .map(|c| (c.name.as_str(), c.key))
            .collect::<Vec<_>>(),
        [("id", true), ("v", false), ("big", false)]
    );
    let whole = names.values().find(|r| r.name == "whole").expect("whole");
    assert_eq!(whole.replica_identity, b'f');
    let big = text(&"x".repeat(20000));
    let expected = vec![
        format!("insert t {:?}", vec![text("1"), text("a"), big.clone()]),
        // The TOASTed value the update did not touch is not sent.
        format!(
            "update t None {:?}",
            vec![text("1"), text("b"), Value::Unchanged]
        ),
        // A key change sends the old key.
        format!(
            "update t {:?} {:?}",
            Some((OldKind::Key, vec![text("1"), Value::Null, Value::Null])),
            vec![text("2"), text("b"), Value::Unchanged]
        ),
        format!(
            "delete t {:?}",
            (OldKind::Key, vec![text("2"), Value::Null, Value::Null])
        ),
        format!("insert whole {:?}", vec![text("5"), Value::Null]),
        format!("insert t {:?}", vec![text("3"), Value::Null, Value::Null]),
        // REPLICA IDENTITY FULL: the whole old row.
        format!(
            "delete whole {:?}",
            (OldKind::Full, vec![text("5"), Value::Null])
        ),
        "truncate t".to_string(),
    ];
    assert_eq!(changes, expected);
}
