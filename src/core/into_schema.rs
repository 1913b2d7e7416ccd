//! `restore --into-schema NAME`: the chosen tables land in a new schema of an existing
//! database, beside the originals, so rows can be compared and copied back with SQL.
//!
//! PostgreSQL has no "restore under another schema name", so keepsake has pg_restore write the
//! chosen entries as a SQL script and renames, on the way to psql, every schema-qualified name
//! of a restored relation (pg_dump writes every name qualified: it runs with an empty
//! `search_path`). The rows of `COPY … FROM stdin` blocks pass through untouched.
//!
//! Invariants:
//! - The script runs in one transaction that begins with `CREATE SCHEMA` of the new name and
//!   ends with `COMMIT` only after the whole backup was read and authenticated and pg_restore
//!   succeeded; anything else (a bad chunk, an SQL error, a cancel, keepsake killed) ends psql
//!   without `COMMIT`, so the database is left as it was.
//! - Only entries that live in a schema are restored (`core::select`), so no statement is about
//!   the database, an extension or the original schema itself.
//! - psql reads the script in `\restrict` mode where pg_restore writes it (PostgreSQL 13.22,
//!   14.19, 15.14, 16.10, 17.6 and later): a hostile source's names or comments cannot smuggle
//!   psql meta-commands into the restoring host (CVE-2025-8714). Older clients lack it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::core::feed::RestoreOptions;
use crate::core::format::Manifest;
use crate::core::progress::{Phase, Tracker};
use crate::core::repo::Repository;
use crate::error::{Error, Result};
use crate::pg::client::quote_ident;
use crate::pg::process::{self, PassFile, StderrLog};
use crate::pg::tools::Tool;

/// Renames schema-qualified references to restored objects.
#[derive(Debug, Clone)]
pub struct Renamer {
    /// Every object of these schemas moves (`--schema NAME --into-schema …`).
    pub schemas: BTreeSet<String>,
    /// These relations move (`--table …`).
    pub relations: BTreeSet<(String, String)>,
    /// The new schema, quoted for SQL.
    to: String,
}

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// An identifier at the start of `s`: its length in bytes and its name (quotes removed).
fn ident(s: &[u8]) -> Option<(usize, String)> {
    match s.first()? {
        b'"' => {
            let mut name = Vec::new();
            let mut i = 1;
            while i < s.len() {
                if s[i] == b'"' {
                    if s.get(i + 1) == Some(&b'"') {
                        name.push(b'"');
                        i += 2;
                        continue;
                    }
                    return Some((i + 1, String::from_utf8_lossy(&name).into_owned()));
                }
                name.push(s[i]);
                i += 1;
            }
            None
        }
        b if b.is_ascii_alphabetic() || *b == b'_' || *b >= 0x80 => {
            let n = s.iter().take_while(|b| ident_byte(**b)).count();
            Some((n, String::from_utf8_lossy(&s[..n]).into_owned()))
        }
        _ => None,
    }
}

impl Renamer {
    pub fn new(
        into: &str,
        schemas: BTreeSet<String>,
        relations: BTreeSet<(String, String)>,
    ) -> Self {
        Renamer {
            schemas,
            relations,
            to: quote_ident(into),
        }
    }

    fn moves(&self, schema: &str, name: &str) -> bool {
        self.schemas.contains(schema)
            || self
                .relations
                .contains(&(schema.to_string(), name.to_string()))
    }

    /// One line of SQL with every `schema.name` of a moved object renamed.
    pub fn rewrite(&self, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(line.len() + 16);
        let mut i = 0;
        while i < line.len() {
            let prev = if i == 0 { b' ' } else { line[i - 1] };
            let starts = !ident_byte(prev) && prev != b'.' && prev != b'"';
            if starts {
                if let Some((n1, schema)) = ident(&line[i..]) {
                    if line.get(i + n1) == Some(&b'.') {
                        if let Some((n2, name)) = ident(&line[i + n1 + 1..]) {
                            if self.moves(&schema, &name) {
                                out.extend_from_slice(self.to.as_bytes());
                                out.push(b'.');
                                out.extend_from_slice(&line[i + n1 + 1..i + n1 + 1 + n2]);
                                i += n1 + 1 + n2;
                                continue;
                            }
                        }
                    }
                    out.extend_from_slice(&line[i..i + n1]);
                    i += n1;
                    continue;
                }
            }
            out.push(line[i]);
            i += 1;
        }
        out
    }
}

/// Whether the schema exists in the target.
pub async fn schema_exists(pg: &tokio_postgres::Client, name: &str) -> Result<bool> {
    pg.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&name])
        .await
        .map(|r| r.is_some())
        .map_err(|e| Error::Postgres(crate::pg::client::describe(&e)))
}

/// psql beside `pg_restore` (the same installation reads the same script syntax), else any
/// psql at least as new.
fn find_psql(pg_restore: &Tool, o: &RestoreOptions) -> Result<Tool> {
    crate::pg::tools::find(
        "psql",
        pg_restore.major,
        pg_restore.path.parent().or(o.bin_dir.as_deref()),
    )
    .or_else(|_| crate::pg::tools::find("psql", pg_restore.major, o.bin_dir.as_deref()))
}

/// Stream the backup through `pg_restore --file=-` (only the entries of `list`), rename, and
/// run the result with psql in one transaction. Returns the archive bytes read.
pub async fn stream(
    repo: Arc<Repository>,
    m: Arc<Manifest>,
    o: &RestoreOptions,
    tool: &Tool,
    tracker: &Tracker<'_>,
    list: &std::path::Path,
    renamer: &Renamer,
) -> Result<u64> {
    let psql = find_psql(tool, o)?;
    let mut script = process::tool_command(&tool.path);
    script
        .arg("--file=-")
        .arg(format!("--use-list={}", list.display()))
        .arg("--exit-on-error");
    if o.no_owner {
        script.arg("--no-owner");
    }
    if o.no_owner || o.no_privileges {
        script.arg("--no-privileges");
    }
    script
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut script = tokio::process::Command::from(script);
    script.kill_on_drop(true);
    let mut script = script
        .spawn()
        .map_err(|e| Error::Postgres(format!("cannot start {}: {e}", tool.path.display())))?;

    let pass = PassFile::new(&o.target)?;
    let mut run = process::psql_command(&psql, &o.target, pass.as_ref());
    let mut run = run
        .spawn()
        .map_err(|e| Error::Postgres(format!("cannot start {}: {e}", psql.path.display())))?;

    let script_log = Arc::new(Mutex::new(StderrLog::default()));
    let run_log = Arc::new(Mutex::new(StderrLog::default()));
    let collect = |s: Option<tokio::process::ChildStderr>, log: Arc<Mutex<StderrLog>>| {
        s.map(|s| {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(s).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if let Ok(mut g) = log.lock() {
                        g.push_line(&l);
                    }
                }
            })
        })
    };
    let t1 = collect(script.stderr.take(), script_log.clone());
    let t2 = collect(run.stderr.take(), run_log.clone());
    let (Some(script_in), Some(script_out), Some(mut run_in)) =
        (script.stdin.take(), script.stdout.take(), run.stdin.take())
    else {
        return Err(Error::Other("pg_restore or psql pipes missing".into()));
    };
    tracker.phase(Phase::Restoring);

    // The archive into pg_restore; the whole backup is read and authenticated, even after
    // pg_restore has what it needs.
    let (repo, fm) = (repo.clone(), m.clone());
    let feed = async move {
        let mut stdin = script_in;
        crate::core::feed::feed_archive(&repo, &fm, o.read_ahead, &mut stdin, true, |done| {
            tracker.update(|p| p.bytes_done = done)
        })
        .await
    };
    // The script, renamed, into psql.
    let pump = async {
        run_in
            .write_all(
                format!(
                    "\\set ON_ERROR_STOP on\nBEGIN;\nCREATE SCHEMA {};\n",
                    renamer.to
                )
                .as_bytes(),
            )
            .await?;
        let mut r = tokio::io::BufReader::new(script_out);
        let mut line = Vec::new();
        let mut rows = false;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).await? == 0 {
                break;
            }
            if rows {
                rows = line.as_slice() != b"\\.\n";
                run_in.write_all(&line).await?;
                continue;
            }
            rows = line.starts_with(b"COPY ") && line.ends_with(b" FROM stdin;\n");
            run_in.write_all(&renamer.rewrite(&line)).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (fed, pumped) = tokio::join!(feed, pump);
    let explain = |log: &Arc<Mutex<StderrLog>>| log.lock().map(|l| l.explain()).unwrap_or_default();
    let fail = |what: String| {
        Error::Postgres(format!(
            "restore of backup {} into schema {} of {} failed: {what}; the transaction was rolled back, nothing changed",
            m.id,
            renamer.to,
            o.target.display()
        ))
    };
    let status = script
        .wait()
        .await
        .map_err(|e| Error::io("waiting for pg_restore", e))?;
    let done = match (fed, pumped) {
        (Err(e), _) => {
            let _ = run.kill().await;
            return Err(e);
        }
        (Ok(_), Err(_)) | (Ok(_), Ok(())) if !status.success() => {
            let _ = run.kill().await;
            if let Some(t) = t1 {
                let _ = t.await;
            }
            if let Some(t) = t2 {
                let _ = t.await;
            }
            let mut why = explain(&run_log);
            if why.is_empty() {
                why = explain(&script_log);
            }
            return Err(fail(format!(
                "pg_restore {}.\n  {why}",
                process::describe_exit(status)
            )));
        }
        (Ok(_), Err(e)) => {
            let _ = run.kill().await;
            if let Some(t) = t2 {
                let _ = t.await;
            }
            return Err(fail(format!(
                "psql stopped ({e}).\n  {}",
                explain(&run_log)
            )));
        }
        (Ok(d), Ok(())) => d,
    };
    if run_in.write_all(b"COMMIT;\n").await.is_err() {
        let _ = run.kill().await;
    }
    drop(run_in);
    let st = run
        .wait()
        .await
        .map_err(|e| Error::io("waiting for psql", e))?;
    if let Some(t) = t2 {
        let _ = t.await;
    }
    if let Some(t) = t1 {
        let _ = t.await;
    }
    drop(pass);
    if !st.success() {
        return Err(fail(format!(
            "psql {}.\n  {}",
            process::describe_exit(st),
            explain(&run_log)
        )));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(rel: &[(&str, &str)], schemas: &[&str]) -> Renamer {
        Renamer::new(
            "recovered",
            schemas.iter().map(|s| s.to_string()).collect(),
            rel.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    fn w(r: &Renamer, s: &str) -> String {
        String::from_utf8(r.rewrite(s.as_bytes())).expect("utf8")
    }

    #[test]
    fn only_the_moved_relations_are_renamed() {
        let x = r(&[("public", "guests"), ("public", "guests_id_seq")], &[]);
        assert_eq!(
            w(&x, "CREATE TABLE public.guests (\n"),
            "CREATE TABLE \"recovered\".guests (\n"
        );
        assert_eq!(
            w(&x, "    couple_id integer REFERENCES public.couples,\n"),
            "    couple_id integer REFERENCES public.couples,\n"
        );
        assert_eq!(
            w(&x, "    kind public.vendor_category NOT NULL,\n"),
            "    kind public.vendor_category NOT NULL,\n"
        );
        assert_eq!(
            w(
                &x,
                "ALTER SEQUENCE public.guests_id_seq OWNED BY public.guests.id;\n"
            ),
            "ALTER SEQUENCE \"recovered\".guests_id_seq OWNED BY \"recovered\".guests.id;\n"
        );
        assert_eq!(
            w(&x, "ALTER TABLE ONLY public.guests ALTER COLUMN id SET DEFAULT nextval('public.guests_id_seq'::regclass);\n"),
            "ALTER TABLE ONLY \"recovered\".guests ALTER COLUMN id SET DEFAULT nextval('\"recovered\".guests_id_seq'::regclass);\n"
        );
        // A longer name that starts like a moved one, and a column reference, stay.
        assert_eq!(
            w(
                &x,
                "SELECT public.guests_archive, g.public.guests, public.guestsx;\n"
            ),
            "SELECT public.guests_archive, g.public.guests, public.guestsx;\n"
        );
    }

    #[test]
    fn quoted_names_keep_case_and_the_new_schema_is_quoted() {
        let x = Renamer::new(
            "Side Copy",
            BTreeSet::new(),
            [("Wedding Plans".to_string(), "Guest List".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            w(
                &x,
                "COPY \"Wedding Plans\".\"Guest List\" (id, name) FROM stdin;\n"
            ),
            "COPY \"Side Copy\".\"Guest List\" (id, name) FROM stdin;\n"
        );
        assert_eq!(
            w(&x, "CREATE TABLE \"Wedding Plans\".\"Other\" ();\n"),
            "CREATE TABLE \"Wedding Plans\".\"Other\" ();\n"
        );
    }

    #[test]
    fn a_whole_schema_moves_with_its_types_and_functions() {
        let x = r(&[], &["app"]);
        assert_eq!(
            w(&x, "CREATE TABLE app.t (k app.kind DEFAULT app.f());\n"),
            "CREATE TABLE \"recovered\".t (k \"recovered\".kind DEFAULT \"recovered\".f());\n"
        );
        assert_eq!(w(&x, "SELECT public.app;\n"), "SELECT public.app;\n");
    }
}
