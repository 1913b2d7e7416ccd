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
//!
//! `--exclude-schema` removes a schema and everything that depends on it (a foreign key into
//! it, a table whose column type lives there); what is removed outside the schema is named.
//! `--into-schema` keeps only entries that live in a schema (no database-level entries, no
//! `CREATE SCHEMA` of the originals): the restore renames them into the new schema.

use crate::error::field_ref;
use std::collections::{BTreeMap, BTreeSet};

use crate::pg::archive::TocEntry;

/// What a partial restore restores.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// `(schema, name)` of each table asked for.
    #[serde(default)]
    pub tables: Vec<(String, String)>,
    /// Every table of these schemas (and the schema itself, except `public`).
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Everything in these schemas, and what depends on it, is left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_schemas: Vec<String>,
    /// Only the rows (and sequence values): the tables must exist in the target.
    #[serde(default)]
    pub data_only: bool,
    /// Restore the chosen tables into this new schema of an existing database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into_schema: Option<String>,
}

impl Selection {
    /// Tables or schemas were named (otherwise everything not excluded is restored).
    pub fn names_tables(&self) -> bool {
        !self.tables.is_empty() || !self.schemas.is_empty()
    }
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

/// What a user typed (flags or API fields) for a partial restore.
#[derive(Debug, Default, Clone, Copy)]
pub struct Names<'a> {
    pub tables: &'a [String],
    pub schemas: &'a [String],
    pub exclude_schemas: &'a [String],
    pub data_only: bool,
    pub into_schema: Option<&'a str>,
}

impl Names<'_> {
    /// The selection these names ask for (`None`: the whole backup). An error names the API
    /// field at fault (`tables`, `schemas`, `exclude_schemas`, `data_only`, `into_schema`).
    pub fn selection(&self) -> Result<Option<Selection>, (&'static str, String)> {
        fn all<T>(
            v: &[String],
            parse: fn(&str) -> Result<T, String>,
            field: &'static str,
        ) -> Result<Vec<T>, (&'static str, String)> {
            v.iter()
                .map(|s| parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| (field, m))
        }
        let tables = all(self.tables, parse_table, "tables")?;
        let schemas = all(self.schemas, parse_schema, "schemas")?;
        let exclude_schemas = all(self.exclude_schemas, parse_schema, "exclude_schemas")?;
        let into_schema = match self.into_schema {
            None => None,
            Some(s) => {
                let s = parse_schema(s).map_err(|m| ("into_schema", m))?;
                if s.starts_with("pg_") {
                    return Err((
                        "into_schema",
                        format!("{s:?}: names starting with pg_ are reserved by PostgreSQL"),
                    ));
                }
                Some(s)
            }
        };
        let named = !tables.is_empty() || !schemas.is_empty();
        if into_schema.is_some() && !named {
            return Err((
                "into_schema",
                format!(
                    "needs the tables to restore ({} or {}): it puts them in a new schema beside the originals",
                    field_ref("tables", None),
                    field_ref("schemas", None)
                ),
            ));
        }
        if into_schema.is_some() && self.data_only {
            return Err((
                "data_only",
                format!(
                    "cannot go with {}: the new schema has no tables to fill",
                    field_ref("into_schema", None)
                ),
            ));
        }
        if self.data_only && !named && exclude_schemas.is_empty() {
            return Err((
                "data_only",
                format!(
                    "goes with {}, {} or {}",
                    field_ref("tables", None),
                    field_ref("schemas", None),
                    field_ref("exclude_schemas", None)
                ),
            ));
        }
        if !named && exclude_schemas.is_empty() {
            return Ok(None);
        }
        Ok(Some(Selection {
            tables,
            schemas,
            exclude_schemas,
            data_only: self.data_only,
            into_schema,
        }))
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
    /// Every table and sequence restored, `(schema, name)` as in the backup.
    pub relations: BTreeSet<(String, String)>,
    /// Things to tell the user that change nothing (a schema to exclude that is not there).
    pub notes: Vec<String>,
    /// Excluded schemas of which some functions (and the types and schema they need) are
    /// restored only as scaffolding: kept tables' inline defaults and checks call them while
    /// the tables are created. After the restore, every reference from outside these schemas
    /// is removed and named, then the schemas are dropped ([`remove_scaffolding_sql`]).
    pub scaffold_schemas: Vec<String>,
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
    for (schema, name) in &sel.tables {
        if sel.exclude_schemas.contains(schema) {
            return Err(format!(
                "--table {schema}.{name} is in a schema you excluded (--exclude-schema {schema})"
            ));
        }
    }
    let mut out = if sel.names_tables() {
        choose_named(entries, sel, new_database)?
    } else {
        let data = |e: &&TocEntry| {
            !sel.data_only
                || matches!(
                    e.desc.as_str(),
                    "TABLE DATA" | "SEQUENCE SET" | "BLOBS" | "LARGE OBJECT" | "BLOB"
                )
        };
        Chosen {
            ids: entries.iter().filter(data).map(|e| e.dump_id).collect(),
            ..Default::default()
        }
    };
    // What the excluded schemas take with them. A table outside them is never taken: what it
    // uses there is scaffolding (functions), or the restore is refused (a column's type).
    let (excluded, users) = excluded_ids(entries, &sel.exclude_schemas);
    let scaffold = match sel.data_only {
        true => BTreeSet::new(),
        false => scaffolding(&by_id, &excluded, &users, &out.ids)?,
    };
    for s in &sel.exclude_schemas {
        if !entries
            .iter()
            .any(|e| &e.namespace == s || (e.desc == "SCHEMA" && &e.tag == s))
        {
            out.notes.push(format!(
                "the backup has no schema {s}: nothing to exclude there"
            ));
        }
    }
    for id in out.ids.intersection(&excluded).copied().collect::<Vec<_>>() {
        out.ids.remove(&id);
        let Some(e) = by_id.get(&id) else { continue };
        if sel.exclude_schemas.contains(&e.namespace)
            || e.tag.starts_with("SCHEMA ")
            || matches!(
                e.desc.as_str(),
                "SCHEMA"
                    | "ACL"
                    | "COMMENT"
                    | "SECURITY LABEL"
                    | "TABLE DATA"
                    | "SEQUENCE SET"
                    | "SEQUENCE OWNED BY"
                    | "DEFAULT ACL"
            )
        {
            continue;
        }
        let uses = e
            .deps
            .iter()
            .filter(|d| excluded.contains(d))
            .filter_map(|d| by_id.get(d))
            .map(|x| match x.namespace.as_str() {
                "" => format!("{} {}", x.desc, x.tag),
                ns => format!("{ns}.{}", x.tag),
            })
            .collect::<Vec<_>>();
        let name = match e.namespace.as_str() {
            "" => e.tag.clone(),
            ns => format!("{ns}.{}", e.tag),
        };
        out.skipped.push(format!(
            "{} {name} (uses {}, excluded)",
            e.desc,
            uses.join(", ")
        ));
    }
    out.ids.extend(scaffold.iter().copied());
    let mut homes: Vec<String> = scaffold
        .iter()
        .filter_map(|i| by_id.get(i))
        .map(|e| match e.desc.as_str() {
            "SCHEMA" => e.tag.clone(),
            _ => e.namespace.clone(),
        })
        .collect();
    homes.sort();
    homes.dedup();
    out.scaffold_schemas = homes;
    if let Some(into) = &sel.into_schema {
        // Only what lives in a schema moves; database-level entries (extensions, large
        // objects, comments on a schema) and the originals' CREATE SCHEMA stay out.
        out.ids.retain(|i| {
            by_id
                .get(i)
                .is_some_and(|e| !e.namespace.is_empty() && e.desc != "SCHEMA")
        });
        // Nothing is created outside the new schema: an object of its own name that uses the
        // chosen tables (a view, a materialized view, a function) but was not moved with a
        // whole schema would be created where it already is — skipped and named, with what
        // hangs on it (its comment, grants, data, indexes).
        let mut outside: BTreeSet<i64> = out
            .ids
            .iter()
            .filter_map(|i| by_id.get(i))
            .filter(|e| !sel.schemas.contains(&e.namespace) && !moves_with_a_table(&e.desc))
            .map(|e| e.dump_id)
            .collect();
        let named: Vec<i64> = outside.iter().copied().collect();
        loop {
            let before = outside.len();
            for i in &out.ids {
                if by_id
                    .get(i)
                    .is_some_and(|e| e.deps.iter().any(|d| outside.contains(d)))
                {
                    outside.insert(*i);
                }
            }
            if outside.len() == before {
                break;
            }
        }
        out.ids.retain(|i| !outside.contains(i));
        for e in named.iter().filter_map(|i| by_id.get(i)) {
            out.skipped.push(format!(
                "{} {}.{} (uses the chosen tables but lives outside the new schema {into}: not restored)",
                e.desc, e.namespace, e.tag
            ));
        }
    }
    // The relations and tables restored; with --data-only, the ones whose data is (data
    // entries carry their table's name).
    let (relation_desc, table_desc): (&[&str], &str) = match sel.data_only {
        false => (&["TABLE", "SEQUENCE"], "TABLE"),
        true => (&["TABLE DATA", "SEQUENCE SET"], "TABLE DATA"),
    };
    let restored = || out.ids.iter().filter_map(|i| by_id.get(i));
    let relations = restored()
        .filter(|e| relation_desc.contains(&e.desc.as_str()))
        .map(|e| (e.namespace.clone(), e.tag.clone()))
        .collect();
    let tables = restored()
        .filter(|e| e.desc == table_desc)
        .map(|e| format!("{}.{}", e.namespace, e.tag))
        .collect();
    (out.relations, out.tables) = (relations, tables);
    out.tables.sort();
    if let Some(into) = &sel.into_schema {
        let mut seen = BTreeMap::new();
        for (schema, name) in &out.relations {
            if let Some(other) = seen.insert(name.clone(), schema.clone()) {
                return Err(format!(
                    "{other}.{name} and {schema}.{name} would both become {into}.{name}: restore them into schemas of their own, one at a time"
                ));
            }
        }
    }
    Ok(out)
}

/// Whether an entry of this kind is a chosen relation itself or belongs to one (its data, keys,
/// indexes, defaults, triggers, policies, comments, grants): what `--into-schema` moves with
/// the table. Anything else has a name of its own in some schema.
fn moves_with_a_table(desc: &str) -> bool {
    matches!(
        desc,
        "TABLE"
            | "SEQUENCE"
            | "TABLE DATA"
            | "SEQUENCE SET"
            | "SEQUENCE OWNED BY"
            | "INDEX"
            | "CONSTRAINT"
            | "FK CONSTRAINT"
            | "CHECK CONSTRAINT"
            | "DEFAULT"
            | "TRIGGER"
            | "POLICY"
            | "ROW SECURITY"
            | "RULE"
            | "COMMENT"
            | "ACL"
            | "SECURITY LABEL"
    )
}

/// The entries in `schemas` (and the schemas themselves), and every entry that depends on one
/// of them, however indirectly — except tables outside them: those are kept, and returned
/// second (the tables that use something excluded).
fn excluded_ids(entries: &[TocEntry], schemas: &[String]) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let mut out: BTreeSet<i64> = entries
        .iter()
        .filter(|e| {
            schemas.contains(&e.namespace) || (e.desc == "SCHEMA" && schemas.contains(&e.tag))
        })
        .map(|e| e.dump_id)
        .collect();
    let mut users = BTreeSet::new();
    if out.is_empty() {
        return (out, users);
    }
    loop {
        let before = out.len();
        for e in entries {
            if !out.contains(&e.dump_id) && e.deps.iter().any(|d| out.contains(d)) {
                if e.desc == "TABLE" {
                    users.insert(e.dump_id);
                } else {
                    out.insert(e.dump_id);
                }
            }
        }
        if out.len() == before {
            return (out, users);
        }
    }
}

/// What the kept tables `users` (those of them restored) need from the excluded entries while
/// they are created: the functions their inline defaults, checks and generated columns call,
/// with the types and schemas those need. Anything else a kept table takes from an excluded
/// schema (a column's type, a parent table) cannot be removed from it afterwards: refused,
/// naming the column.
fn scaffolding(
    by_id: &BTreeMap<i64, &TocEntry>,
    excluded: &BTreeSet<i64>,
    users: &BTreeSet<i64>,
    restored: &BTreeSet<i64>,
) -> Result<BTreeSet<i64>, String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<i64> = Vec::new();
    for t in users.iter().filter(|t| restored.contains(t)) {
        let Some(table) = by_id.get(t) else { continue };
        for d in table.deps.iter().filter(|d| excluded.contains(d)) {
            let Some(x) = by_id.get(d) else { continue };
            match x.desc.as_str() {
                "FUNCTION" | "PROCEDURE" | "AGGREGATE" => todo.push(*d),
                "SCHEMA" => {}
                desc => {
                    return Err(format!(
                        "table {}.{} {} {desc} {}.{} of an excluded schema, which cannot be removed from the table: restore without --exclude-schema {}, or create that {} in the target first and leave the schema in; nothing was done",
                        table.namespace,
                        table.tag,
                        column_using(&table.defn, &x.namespace, &x.tag)
                            .map(|c| format!("has column {c} of"))
                            .unwrap_or_else(|| "uses".into()),
                        x.namespace,
                        x.tag,
                        x.namespace,
                        desc.to_lowercase()
                    ))
                }
            }
        }
    }
    while let Some(id) = todo.pop() {
        if !out.insert(id) {
            continue;
        }
        let Some(e) = by_id.get(&id) else { continue };
        for d in e.deps.iter().filter(|d| excluded.contains(d)) {
            let Some(x) = by_id.get(d) else { continue };
            if !matches!(
                x.desc.as_str(),
                "FUNCTION"
                    | "PROCEDURE"
                    | "AGGREGATE"
                    | "TYPE"
                    | "SHELL TYPE"
                    | "DOMAIN"
                    | "SCHEMA"
            ) {
                return Err(format!(
                    "function {}.{} of an excluded schema, which a kept table calls, needs {} {}.{}: restore without --exclude-schema {}; nothing was done",
                    e.namespace, e.tag, x.desc, x.namespace, x.tag, e.namespace
                ));
            }
            todo.push(*d);
        }
    }
    Ok(out)
}

/// The column of `CREATE TABLE` text `defn` whose type is `schema.name` (quoted or not).
fn column_using(defn: &str, schema: &str, name: &str) -> Option<String> {
    let q = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            s.to_string()
        } else {
            format!("\"{}\"", s.replace('"', "\"\""))
        }
    };
    let wanted = format!("{}.{}", q(schema), q(name));
    defn.lines()
        .map(str::trim)
        .find(|l| l.contains(&wanted))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

/// SQL (run with `search_path = ''`, in one transaction, after a restore with scaffolding)
/// that lists every reference from outside the `schemas` into them, as
/// `(kind, object, statement that removes it, what it referenced)`.
pub fn remove_scaffolding_sql() -> &'static str {
    "WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = ANY($1::text[])),
          inside AS (
            SELECT 'pg_proc'::regclass AS c, p.oid FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM s)
            UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM s)
            UNION ALL SELECT 'pg_namespace'::regclass, oid FROM s),
          refs AS (
            SELECT DISTINCT d.classid, d.objid, d.objsubid,
                   pg_describe_object(d.refclassid, d.refobjid, 0) AS used
            FROM pg_depend d JOIN inside i ON d.refclassid = i.c AND d.refobjid = i.oid
            WHERE d.deptype = 'n')
     SELECT 'default', format('%s.%I', a.adrelid::regclass, att.attname),
            format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', a.adrelid::regclass, att.attname), r.used
       FROM refs r JOIN pg_attrdef a ON r.classid = 'pg_attrdef'::regclass AND a.oid = r.objid
       JOIN pg_attribute att ON att.attrelid = a.adrelid AND att.attnum = a.adnum
       JOIN pg_class t ON t.oid = a.adrelid
      WHERE t.relnamespace NOT IN (SELECT oid FROM s) AND att.attgenerated = ''
     UNION ALL
     SELECT 'check constraint', format('%s %I', c.conrelid::regclass, c.conname),
            format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname), r.used
       FROM refs r JOIN pg_constraint c ON r.classid = 'pg_constraint'::regclass AND c.oid = r.objid
      WHERE c.conrelid <> 0 AND c.connamespace NOT IN (SELECT oid FROM s)
     ORDER BY 2"
}

fn choose_named(
    entries: &[TocEntry],
    sel: &Selection,
    new_database: bool,
) -> Result<Chosen, String> {
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
    // Identity columns' sequences (no OWNED BY entry: the table's identity owns them).
    for e in entries.iter().filter(|e| e.desc == "SEQUENCE") {
        if e.deps
            .iter()
            .any(|d| chosen.contains(d) && by_id.get(d).is_some_and(|x| x.desc == "TABLE"))
        {
            chosen.insert(e.dump_id);
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
    out.needs = needs.into_iter().collect();
    Ok(out)
}

/// What a new project of the backup's own provider already has, read from the target.
#[derive(Debug, Clone, Default)]
pub struct Project {
    pub profile: Option<&'static crate::platform::Profile>,
    /// Extensions installed in the target database.
    pub extensions: Vec<String>,
    /// Publications the target database has.
    pub publications: Vec<String>,
}

/// The entries of a restore into a new project of the backup's own provider (the disaster path,
/// done as the provider's restore guide does it): the application's schemas whole; of the
/// provider's schemas only the rows (the project has their structure, owned by roles the
/// restoring user is not), minus the tables that record the provider's own version; no event
/// triggers, extensions or publications the project already has, no grants on the platform's
/// own objects. A trigger the user put on a provider table (calling a function of the
/// application) is the user's and is restored. Every table whose rows are restored is checked.
pub fn for_new_project(entries: &[TocEntry], project: &Project) -> Chosen {
    let Some(p) = project.profile else {
        return Chosen {
            ids: entries.iter().map(|e| e.dump_id).collect(),
            ..Default::default()
        };
    };
    let by_id: BTreeMap<i64, &TocEntry> = entries.iter().map(|e| (e.dump_id, e)).collect();
    let provider_function = |d: &i64| {
        by_id
            .get(d)
            .is_some_and(|x| x.desc == "FUNCTION" && p.manages_schema(&x.namespace))
    };
    let mut out = Chosen::default();
    let (mut structure, mut triggers, mut extensions, mut versions) = (0, vec![], vec![], vec![]);
    let mut skip = BTreeSet::new();
    for e in entries {
        let in_provider = p.manages_schema(&e.namespace)
            || (e.desc == "SCHEMA" && p.manages_schema(&e.tag))
            || (e.namespace.is_empty()
                && e.tag.starts_with("SCHEMA ")
                && p.manages_schema(&e.tag[7..]));
        let data = matches!(e.desc.as_str(), "TABLE DATA" | "SEQUENCE SET");
        let users_trigger = e.desc == "TRIGGER"
            && e.deps.iter().any(|d| {
                by_id.get(d).is_some_and(|x| x.desc == "FUNCTION") && !provider_function(d)
            });
        let skipped = if e.desc == "EXTENSION" {
            // What the project has stays its own; what it lacks is created.
            let there = project.extensions.contains(&e.tag);
            if there {
                extensions.push(e.tag.clone());
            }
            there
        } else if in_provider && data {
            if p.is_version_table(&e.namespace, &e.tag) {
                versions.push(format!("{}.{}", e.namespace, e.tag));
                true
            } else {
                false
            }
        } else if in_provider && !users_trigger {
            if e.desc == "POLICY" {
                out.skipped.push(format!(
                    "POLICY {}.{}: a policy on a table of the provider's schema {} is not recreated (the new project has its own; add yours in the project if it is missing)",
                    e.namespace, e.tag, e.namespace
                ));
            } else {
                structure += 1;
            }
            true
        } else if e.desc == "EVENT TRIGGER" {
            triggers.push(e.tag.clone());
            true
        } else if e.desc == "PUBLICATION" && project.publications.contains(&e.tag) {
            true
        } else {
            (e.desc == "DEFAULT ACL" && p.roles.contains(&e.owner.as_str()))
                || (e.namespace == "pg_catalog" && e.desc == "ACL")
        };
        if skipped {
            skip.insert(e.dump_id);
        }
    }
    // Comments, grants and labels of what is not recreated go with it.
    for e in entries {
        if matches!(e.desc.as_str(), "COMMENT" | "ACL" | "SECURITY LABEL")
            && !e.deps.is_empty()
            && e.deps.iter().all(|d| skip.contains(d))
        {
            skip.insert(e.dump_id);
        }
    }
    out.ids = entries
        .iter()
        .map(|e| e.dump_id)
        .filter(|i| !skip.contains(i))
        .collect();
    for e in entries.iter().filter(|e| out.ids.contains(&e.dump_id)) {
        let provider_data = p.manages_schema(&e.namespace)
            && matches!(e.desc.as_str(), "TABLE DATA" | "SEQUENCE SET");
        if (is_relation(&e.desc) && !p.manages_schema(&e.namespace)) || provider_data {
            out.relations.insert((e.namespace.clone(), e.tag.clone()));
        }
        if (e.desc == "TABLE" && !p.manages_schema(&e.namespace))
            || (e.desc == "TABLE DATA" && p.manages_schema(&e.namespace))
        {
            out.tables.push(format!("{}.{}", e.namespace, e.tag));
        }
    }
    out.tables.sort();
    out.tables.dedup();
    if structure > 0 {
        out.notes.push(format!(
            "{structure} objects of {}'s own schemas were not recreated: the new project has them; their tables' rows are restored",
            p.title
        ));
    }
    if !triggers.is_empty() {
        out.notes.push(format!(
            "event triggers {} are the project's own: not recreated",
            triggers.join(", ")
        ));
    }
    if !extensions.is_empty() {
        out.notes.push(format!(
            "extensions {} are the project's: not recreated",
            extensions.join(", ")
        ));
    }
    if !versions.is_empty() {
        out.notes.push(format!(
            "rows of {} not restored: they record {}'s own version, and the new project has its own",
            versions.join(", "),
            p.title
        ));
    }
    out
}

/// The roles a restore of `ids` (every entry when `None`) would need on the target: the owners
/// of its objects, and the roles its `GRANT`/`REVOKE` statements name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Roles {
    pub owners: BTreeSet<String>,
    pub grantees: BTreeSet<String>,
    /// Roles row-level-security policies apply to (`CREATE POLICY … TO role`): no flag of
    /// pg_restore skips a policy, so the target must have them.
    pub policies: BTreeSet<String>,
}

pub fn roles(entries: &[TocEntry], ids: Option<&BTreeSet<i64>>) -> Roles {
    let mut r = Roles::default();
    for e in entries
        .iter()
        .filter(|e| ids.is_none_or(|ids| ids.contains(&e.dump_id)))
    {
        if !e.owner.is_empty() {
            r.owners.insert(e.owner.clone());
        }
        if e.desc == "POLICY" {
            r.policies.extend(policy_roles(&e.defn));
        }
        if matches!(e.desc.as_str(), "ACL" | "DEFAULT ACL") {
            for stmt in e.defn.split(";\n") {
                r.grantees.extend(statement_roles(stmt.trim()));
            }
        }
    }
    r
}

/// `CREATE POLICY name ON table [AS …] [FOR …] [TO role, …] [USING (…)] [WITH CHECK (…)];`:
/// the roles after `TO` (none: the policy applies to `PUBLIC`).
fn policy_roles(defn: &str) -> Vec<String> {
    let end = [" USING (", " WITH CHECK ("]
        .iter()
        .filter_map(|p| defn.find(p))
        .min()
        .unwrap_or(defn.len());
    let head = &defn[..end];
    let Some(i) = head.rfind(" TO ") else {
        return vec![];
    };
    head[i + 4..]
        .trim()
        .trim_end_matches(';')
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty() && *w != "PUBLIC")
        .filter_map(|w| split_ident(w).ok().and_then(|v| v.into_iter().next()))
        .collect()
}

/// The roles one `GRANT`, `REVOKE` or `ALTER DEFAULT PRIVILEGES` statement names (`PUBLIC` is
/// not a role).
fn statement_roles(stmt: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = stmt;
    if let Some(r) = rest.strip_prefix("ALTER DEFAULT PRIVILEGES FOR ROLE ") {
        let n = r.find(' ').unwrap_or(r.len());
        out.extend(split_ident(&r[..n]).ok().and_then(|v| v.into_iter().next()));
        rest = r
            .find(" GRANT ")
            .or(r.find(" REVOKE "))
            .map_or("", |i| r[i + 1..].trim());
    }
    let list = if rest.starts_with("GRANT ") {
        rest.rfind(" TO ").map(|i| &rest[i + 4..])
    } else if rest.starts_with("REVOKE ") {
        rest.rfind(" FROM ").map(|i| &rest[i + 6..])
    } else {
        None
    };
    let Some(list) = list else { return out };
    let list = list
        .split(" WITH GRANT OPTION")
        .next()
        .unwrap_or("")
        .split(" GRANTED BY ")
        .next()
        .unwrap_or("")
        .trim_end_matches(';');
    for who in list.split(',') {
        let who = who.trim();
        if who.is_empty() || who == "PUBLIC" {
            continue;
        }
        if let Ok(v) = split_ident(who) {
            out.extend(v.into_iter().next());
        }
    }
    out
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
            owner: "postgres".into(),
        }
    }

    #[test]
    fn roles_are_owners_and_grantees() {
        let mut acl = e(3, "ACL", "public", "TABLE guests", &[]);
        acl.defn = "GRANT SELECT ON TABLE public.guests TO anon;\nGRANT ALL ON TABLE public.guests TO \"Service Role\" WITH GRANT OPTION;\nREVOKE ALL ON TABLE public.guests FROM PUBLIC;\n".into();
        let mut dacl = e(
            4,
            "DEFAULT ACL",
            "public",
            "DEFAULT PRIVILEGES FOR TABLES",
            &[],
        );
        dacl.defn = "ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public GRANT SELECT ON TABLES TO authenticated;\n".into();
        let mut t = e(2, "TABLE", "auth", "users", &[]);
        t.owner = "supabase_admin".into();
        let toc = vec![e(1, "TABLE", "public", "guests", &[]), t, acl, dacl];
        let r = roles(&toc, None);
        assert_eq!(
            r.owners.into_iter().collect::<Vec<_>>(),
            ["postgres", "supabase_admin"]
        );
        assert_eq!(
            r.grantees.into_iter().collect::<Vec<_>>(),
            ["Service Role", "anon", "authenticated", "supabase_admin"]
        );
        let only: BTreeSet<i64> = [1].into_iter().collect();
        assert!(roles(&toc, Some(&only)).grantees.is_empty());
        assert_eq!(
            policy_roles("CREATE POLICY \"own rows\" ON public.guests FOR SELECT TO authenticated, \"Service Role\" USING ((profile_id = auth.uid()));"),
            ["authenticated", "Service Role"]
        );
        assert!(policy_roles("CREATE POLICY p ON public.guests USING (true);").is_empty());
    }

    #[test]
    fn an_excluded_schema_takes_what_depends_on_it_and_names_it() {
        let toc = vec![
            e(1, "SCHEMA", "", "auth", &[]),
            e(2, "TABLE", "auth", "users", &[1]),
            e(3, "CONSTRAINT", "auth", "users_pkey", &[2]),
            e(4, "TABLE", "public", "profiles", &[]),
            e(
                5,
                "FK CONSTRAINT",
                "public",
                "profiles profiles_user_fk",
                &[4, 3],
            ),
            e(6, "TABLE DATA", "public", "profiles", &[4]),
            e(7, "TABLE DATA", "auth", "users", &[2]),
            e(8, "ACL", "", "SCHEMA auth", &[1]),
        ];
        let sel = Selection {
            exclude_schemas: vec!["auth".into(), "realtime".into()],
            ..Default::default()
        };
        let c = choose(&toc, &sel, true).unwrap();
        assert_eq!(c.ids.iter().copied().collect::<Vec<_>>(), vec![4, 6]);
        assert_eq!(c.tables, ["public.profiles"]);
        assert_eq!(
            c.skipped,
            ["FK CONSTRAINT public.profiles profiles_user_fk (uses auth.users_pkey, excluded)"]
        );
        assert_eq!(
            c.notes,
            ["the backup has no schema realtime: nothing to exclude there"]
        );
        // Into a side schema: only entries of a schema, and two tables of one name refuse.
        let side = Selection {
            tables: vec![("public".into(), "profiles".into())],
            into_schema: Some("side".into()),
            ..Default::default()
        };
        let c = choose(&toc, &side, false).unwrap();
        assert_eq!(c.ids.iter().copied().collect::<Vec<_>>(), vec![4, 6]);
        let clash = Selection {
            schemas: vec!["auth".into(), "public".into()],
            into_schema: Some("side".into()),
            ..Default::default()
        };
        let mut toc2 = toc.clone();
        toc2.push(e(9, "TABLE", "public", "users", &[]));
        let err = choose(&toc2, &clash, false).unwrap_err();
        assert!(err.contains("would both become side.users"), "{err}");
    }

    /// Issue 24: excluding a schema never drops a kept table. A table whose default calls a
    /// function of the excluded schema is kept, with that function (and its schema) as
    /// scaffolding; a column whose type lives there refuses, naming the column.
    #[test]
    fn an_excluded_schema_never_takes_a_kept_table() {
        let mut weddings = e(4, "TABLE", "public", "weddings", &[2]);
        weddings.defn = "CREATE TABLE public.weddings (\n    id integer NOT NULL,\n    owner_id uuid DEFAULT auth.uid()\n);".into();
        let toc = vec![
            e(1, "SCHEMA", "", "auth", &[]),
            e(2, "FUNCTION", "auth", "uid()", &[1]),
            e(3, "TABLE", "auth", "users", &[1]),
            weddings,
            e(5, "TABLE DATA", "public", "weddings", &[4]),
            e(6, "POLICY", "public", "weddings own", &[4, 2]),
            e(7, "ACL", "auth", "FUNCTION uid()", &[2]),
        ];
        let sel = Selection {
            exclude_schemas: vec!["auth".into()],
            ..Default::default()
        };
        let c = choose(&toc, &sel, true).unwrap();
        assert_eq!(c.ids.iter().copied().collect::<Vec<_>>(), vec![1, 2, 4, 5]);
        assert_eq!(c.tables, ["public.weddings"]);
        assert_eq!(c.scaffold_schemas, ["auth"]);
        assert_eq!(
            c.skipped,
            [
                "POLICY public.weddings own (uses public.weddings, auth.uid(), excluded)"
                    .replace("public.weddings, ", "")
            ]
        );
        // A column of a type from the excluded schema cannot be kept without it.
        let mut typed = e(8, "TABLE", "public", "plans", &[9]);
        typed.defn =
            "CREATE TABLE public.plans (\n    id integer,\n    level auth.aal_level NOT NULL\n);"
                .into();
        let mut toc2 = toc.clone();
        toc2.push(e(9, "TYPE", "auth", "aal_level", &[1]));
        toc2.push(typed);
        let err = choose(&toc2, &sel, true).unwrap_err();
        assert!(
            err.contains("public.plans has column level of TYPE auth.aal_level"),
            "{err}"
        );
    }

    /// Into a new project of the same provider: the provider's structure is left to the
    /// project, its rows come back (not its migration records), a user's trigger on a provider
    /// table comes back, event triggers and extensions the project has do not.
    #[test]
    fn a_new_project_gets_the_rows_of_the_provider_schemas_not_their_structure() {
        let mut users_trigger = e(9, "TRIGGER", "auth", "users on_signup", &[2, 8]);
        users_trigger.section = 4;
        let mut event_trigger = e(10, "EVENT TRIGGER", "", "issue_pg_net_access", &[]);
        event_trigger.owner = "supabase_admin".into();
        let toc = vec![
            e(1, "SCHEMA", "", "auth", &[]),
            e(2, "TABLE", "auth", "users", &[1]),
            e(3, "TABLE DATA", "auth", "users", &[2]),
            e(4, "TABLE", "auth", "schema_migrations", &[1]),
            e(5, "TABLE DATA", "auth", "schema_migrations", &[4]),
            e(6, "TABLE", "public", "weddings", &[]),
            e(7, "TABLE DATA", "public", "weddings", &[6]),
            e(8, "FUNCTION", "public", "handle_signup()", &[]),
            users_trigger,
            event_trigger,
            e(11, "EXTENSION", "", "pgcrypto", &[]),
            e(12, "EXTENSION", "", "pg_trgm", &[]),
            e(13, "ACL", "", "SCHEMA auth", &[1]),
            e(14, "POLICY", "auth", "users own", &[2]),
        ];
        let project = Project {
            profile: Some(&crate::platform::SUPABASE),
            extensions: vec!["pgcrypto".into()],
            publications: vec![],
        };
        let c = for_new_project(&toc, &project);
        assert_eq!(
            c.ids.iter().copied().collect::<Vec<_>>(),
            vec![3, 6, 7, 8, 9, 12]
        );
        assert_eq!(c.tables, ["auth.users", "public.weddings"]);
        assert!(c.relations.contains(&("auth".into(), "users".into())));
        assert!(!c
            .relations
            .contains(&("auth".into(), "schema_migrations".into())));
        assert!(
            c.skipped[0].starts_with("POLICY auth.users own"),
            "{:?}",
            c.skipped
        );
        let notes = c.notes.join("\n");
        assert!(
            notes.contains("issue_pg_net_access") && notes.contains("pgcrypto"),
            "{notes}"
        );
        assert!(notes.contains("auth.schema_migrations"), "{notes}");
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
