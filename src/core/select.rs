//! Partial restore: which entries of a backup's table of contents restore the tables a user
//! asked for (`--table`, `--schema`), and which dependencies they would need but did not ask
//! for — those are named, never pulled in silently.
//!
//! Rule: an entry is restored when every table (or owned sequence) it is about is selected —
//! the table itself, its data, its indexes and constraints, defaults, triggers, comments and
//! privileges, the sequences it owns and their values. An entry about a selected table and an
//! unselected one (a foreign key to a table not restored) is skipped and named. Types,
//! functions and other objects a selected table uses are not restored: the target must have
//! them (the source database or a copy of its schema does), and they are named.

use std::collections::{BTreeMap, BTreeSet};

use crate::pg::archive::TocEntry;

/// What a partial restore restores.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Selection {
    /// `(schema, name)` of each table asked for.
    pub tables: Vec<(String, String)>,
    /// Every table of these schemas (and the schema itself, except `public`).
    pub schemas: Vec<String>,
    /// Only the rows (and sequence values): the tables must exist in the target.
    pub data_only: bool,
}

/// A table name as SQL reads it: `schema.name`, each part unquoted (folded to lower case) or
/// double-quoted (kept as written, `""` for a quote); no schema means `public`.
pub fn parse_table(s: &str) -> Result<(String, String), String> {
    let parts = split_ident(s)?;
    match parts.as_slice() {
        [name] => Ok(("public".into(), name.clone())),
        [schema, name] => Ok((schema.clone(), name.clone())),
        _ => Err(format!(
            "{s:?} is not a table name: use SCHEMA.NAME, quoting parts with capitals, dots or spaces (\"Wedding Plans\".\"Guest List\")"
        )),
    }
}

/// A schema name as SQL reads it.
pub fn parse_schema(s: &str) -> Result<String, String> {
    match split_ident(s)?.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("{s:?} is not a schema name")),
    }
}

fn split_ident(s: &str) -> Result<Vec<String>, String> {
    let mut parts = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if cur.is_empty() => {
                quoted = true;
                was_quoted = true;
            }
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', true) => quoted = false,
            ('.', false) => {
                if cur.is_empty() {
                    return Err(format!("{s:?}: an empty name part"));
                }
                parts.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (c, true) => cur.push(c),
            (c, false) if was_quoted => {
                return Err(format!("{s:?}: {c:?} after a closing quote"));
            }
            (c, false) => cur.extend(c.to_lowercase()),
        }
    }
    if quoted {
        return Err(format!("{s:?}: a quote is not closed"));
    }
    if cur.is_empty() {
        return Err(format!("{s:?}: an empty name part"));
    }
    parts.push(cur);
    Ok(parts)
}

/// The outcome of a selection: the dump ids to restore (in TOC order when listed) and what was
/// left out, in words.
#[derive(Debug, Clone, Default)]
pub struct Chosen {
    pub ids: BTreeSet<i64>,
    /// The tables restored, `schema.name`.
    pub tables: Vec<String>,
    /// Entries about a selected table that need something not selected.
    pub skipped: Vec<String>,
    /// Objects the selected tables use that are not restored (the target must have them).
    pub needs: Vec<String>,
}

fn is_relation(desc: &str) -> bool {
    matches!(desc, "TABLE" | "SEQUENCE")
}

/// `FK CONSTRAINT public.guests guests_couple_fk (needs public.couples, not restored)`: an
/// entry left out because it is also about relations `about` that were not chosen.
fn skipped_line(
    e: &TocEntry,
    about: &BTreeSet<i64>,
    chosen: &BTreeSet<i64>,
    by_id: &BTreeMap<i64, &TocEntry>,
) -> String {
    let missing: Vec<String> = about
        .difference(chosen)
        .filter_map(|x| by_id.get(x))
        .map(|x| format!("{}.{}", x.namespace, x.tag))
        .collect();
    format!(
        "{} {}.{} (needs {}, not restored)",
        e.desc,
        e.namespace,
        e.tag,
        missing.join(", ")
    )
}

/// Choose the entries for `sel`; into a `new_database`, the schemas of the chosen tables are
/// created too. Errors name what was asked for and is not in the backup.
pub fn choose(entries: &[TocEntry], sel: &Selection, new_database: bool) -> Result<Chosen, String> {
    let by_id: BTreeMap<i64, &TocEntry> = entries.iter().map(|e| (e.dump_id, e)).collect();
    let mut chosen = BTreeSet::new();
    let mut out = Chosen::default();
    for (schema, name) in &sel.tables {
        match entries
            .iter()
            .find(|e| e.desc == "TABLE" && &e.namespace == schema && &e.tag == name)
        {
            Some(e) => {
                chosen.insert(e.dump_id);
            }
            None => {
                let near: Vec<String> = entries
                    .iter()
                    .filter(|e| e.desc == "TABLE" && e.tag.eq_ignore_ascii_case(name))
                    .map(|e| format!("{}.{}", e.namespace, e.tag))
                    .collect();
                return Err(format!(
                    "the backup has no table {schema}.{name}{}",
                    if near.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it has {}: quote the name to keep its case)",
                            near.join(", ")
                        )
                    }
                ));
            }
        }
    }
    for s in &sel.schemas {
        let mut any = false;
        for e in entries.iter().filter(|e| &e.namespace == s) {
            any = true;
            if e.desc == "TABLE" {
                chosen.insert(e.dump_id);
            }
        }
        if !any {
            return Err(format!("the backup has no schema {s}"));
        }
    }
    // Sequences the chosen tables own.
    for e in entries.iter().filter(|e| e.desc == "SEQUENCE OWNED BY") {
        if e.deps.iter().any(|d| chosen.contains(d)) {
            for d in &e.deps {
                if by_id.get(d).is_some_and(|x| x.desc == "SEQUENCE") {
                    chosen.insert(*d);
                }
            }
        }
    }
    // The relations an entry is about: its relation dependencies, and those of the indexes and
    // constraints it depends on (a foreign key depends on the referenced table's key).
    let about = |e: &TocEntry| -> BTreeSet<i64> {
        let mut r = BTreeSet::new();
        for d in &e.deps {
            match by_id.get(d) {
                Some(x) if is_relation(&x.desc) => {
                    r.insert(*d);
                }
                Some(x) if matches!(x.desc.as_str(), "CONSTRAINT" | "INDEX") => {
                    r.extend(
                        x.deps
                            .iter()
                            .filter(|dd| by_id.get(dd).is_some_and(|y| is_relation(&y.desc))),
                    );
                }
                _ => {}
            }
        }
        r
    };
    // A schema asked for as a whole comes with everything in it: its types, functions,
    // views… (what its tables use is then restored too).
    let whole: BTreeSet<i64> = entries
        .iter()
        .filter(|e| sel.schemas.contains(&e.namespace))
        .map(|e| e.dump_id)
        .collect();
    let mut needs = BTreeSet::new();
    for e in entries {
        if whole.contains(&e.dump_id) && !chosen.contains(&e.dump_id) {
            if sel.data_only && !matches!(e.desc.as_str(), "TABLE DATA" | "SEQUENCE SET") {
                continue;
            }
            // An entry of the schema about a table elsewhere that was not chosen (a foreign
            // key into another schema) is skipped like any other.
            let r = about(e);
            if !r.is_subset(&chosen) {
                out.skipped.push(skipped_line(e, &r, &chosen, &by_id));
                continue;
            }
            out.ids.insert(e.dump_id);
            continue;
        }
        if chosen.contains(&e.dump_id) {
            if sel.data_only {
                continue;
            }
            out.ids.insert(e.dump_id);
            // What a chosen relation uses that is not restored.
            for d in &e.deps {
                if let Some(x) = by_id.get(d) {
                    if !chosen.contains(d)
                        && !whole.contains(d)
                        && !matches!(x.desc.as_str(), "SCHEMA" | "DATABASE")
                    {
                        needs.insert(format!("{} {}.{}", x.desc, x.namespace, x.tag));
                    }
                }
            }
            continue;
        }
        let r = about(e);
        if r.is_empty() || !r.iter().any(|x| chosen.contains(x)) {
            continue;
        }
        if !r.is_subset(&chosen) {
            out.skipped.push(skipped_line(e, &r, &chosen, &by_id));
            continue;
        }
        if sel.data_only && !matches!(e.desc.as_str(), "TABLE DATA" | "SEQUENCE SET") {
            continue;
        }
        out.ids.insert(e.dump_id);
    }
    // The schemas asked for as a whole, and into a new database those of the chosen tables
    // (public exists in every database).
    if !sel.data_only {
        let homes: BTreeSet<&str> = chosen
            .iter()
            .filter_map(|i| by_id.get(i))
            .map(|e| e.namespace.as_str())
            .collect();
        for e in entries.iter().filter(|e| e.desc == "SCHEMA") {
            let wanted =
                sel.schemas.contains(&e.tag) || (new_database && homes.contains(e.tag.as_str()));
            if wanted && e.tag != "public" {
                out.ids.insert(e.dump_id);
            }
        }
        needs.retain(|n| !n.starts_with("SCHEMA "));
    }
    out.tables = chosen
        .iter()
        .filter_map(|i| by_id.get(i))
        .filter(|e| e.desc == "TABLE")
        .map(|e| format!("{}.{}", e.namespace, e.tag))
        .collect();
    out.needs = needs.into_iter().collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: i64, desc: &str, ns: &str, tag: &str, deps: &[i64]) -> TocEntry {
        TocEntry {
            dump_id: id,
            desc: desc.into(),
            tag: tag.into(),
            namespace: ns.into(),
            tablespace: String::new(),
            defn: String::new(),
            copy_stmt: String::new(),
            has_data: desc == "TABLE DATA",
            section: 2,
            deps: deps.to_vec(),
        }
    }

    #[test]
    fn names_follow_sql() {
        assert_eq!(
            parse_table("Guests").unwrap(),
            ("public".into(), "guests".into())
        );
        assert_eq!(
            parse_table(r#""Wedding Plans"."Guest List""#).unwrap(),
            ("Wedding Plans".into(), "Guest List".into())
        );
        assert_eq!(
            parse_table(r#"app."a""b.c""#).unwrap(),
            ("app".into(), r#"a"b.c"#.into())
        );
        assert!(parse_table("a.b.c").is_err());
        assert!(parse_table(r#""open"#).is_err());
        assert!(parse_table("a..b").is_err());
    }

    #[test]
    fn a_table_comes_with_its_own_objects_and_names_what_it_needs() {
        let toc = vec![
            e(1, "TYPE", "public", "vendor_category", &[]),
            e(2, "TABLE", "public", "couples", &[]),
            e(3, "TABLE", "public", "guests", &[1]),
            e(4, "SEQUENCE", "public", "guests_id_seq", &[]),
            e(5, "SEQUENCE OWNED BY", "public", "guests_id_seq", &[4, 3]),
            e(6, "DEFAULT", "public", "guests id", &[3, 4]),
            e(7, "TABLE DATA", "public", "guests", &[3]),
            e(8, "SEQUENCE SET", "public", "guests_id_seq", &[4]),
            e(9, "CONSTRAINT", "public", "guests_pkey", &[3]),
            e(10, "CONSTRAINT", "public", "couples_pkey", &[2]),
            e(
                11,
                "FK CONSTRAINT",
                "public",
                "guests guests_couple_fk",
                &[3, 10],
            ),
            e(12, "TABLE DATA", "public", "couples", &[2]),
            e(13, "INDEX", "public", "guests_name_idx", &[3]),
        ];
        let sel = Selection {
            tables: vec![("public".into(), "guests".into())],
            ..Default::default()
        };
        let c = choose(&toc, &sel, false).unwrap();
        assert_eq!(
            c.ids.iter().copied().collect::<Vec<_>>(),
            vec![3, 4, 5, 6, 7, 8, 9, 13]
        );
        assert_eq!(c.tables, ["public.guests"]);
        assert_eq!(
            c.skipped,
            ["FK CONSTRAINT public.guests guests_couple_fk (needs public.couples, not restored)"]
        );
        assert_eq!(c.needs, ["TYPE public.vendor_category"]);
        // Data only: the rows and the sequence value.
        let c = choose(
            &toc,
            &Selection {
                data_only: true,
                ..sel.clone()
            },
            false,
        )
        .unwrap();
        assert_eq!(c.ids.iter().copied().collect::<Vec<_>>(), vec![7, 8]);
        // A name the backup does not have says what it has.
        let e = choose(
            &toc,
            &Selection {
                tables: vec![("public".into(), "Guests".into())],
                ..Default::default()
            },
            false,
        )
        .unwrap_err();
        assert!(e.contains("it has public.guests"), "{e}");
    }
}
