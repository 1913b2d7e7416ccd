//! What a source server allows the backup role, read from its catalogs in one session: the
//! facts behind `keepsake source check` (docs/restore.md, "Checking a source: `source check`").
//! Reads only; a handful of catalog queries, so the whole check stays well under two seconds
//! on a hosted server.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::client::describe;

/// The facts, as read.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    pub user: String,
    pub superuser: bool,
    pub bypassrls: bool,
    pub replication: bool,
    pub createrole: bool,
    pub server_version: String,
    pub server_version_num: i32,
    pub wal_level: String,
    pub tls: bool,
    /// Every role of the server (platform detection).
    #[serde(skip, default)]
    pub roles: Vec<String>,
    /// Tables, sequences and views the role cannot read (`schema.name`): pg_dump stops there.
    pub unreadable: Vec<String>,
    /// Tables whose row-level security applies to this role: pg_dump (which turns row security
    /// off and refuses to be filtered) stops there instead of silently missing rows.
    pub row_security: Vec<String>,
    /// Tables with row-level security that this role reads in full (owner, BYPASSRLS).
    pub row_security_read: usize,
    pub tables: usize,
    /// Owners of objects in this database other than the role itself.
    pub other_owners: Vec<String>,
    /// Roles that row-level-security policies apply to.
    pub policy_roles: Vec<String>,
    /// Event triggers: (name, owner).
    pub event_triggers: Vec<(String, String)>,
    pub extensions: Vec<String>,
    /// Tables a logical replication stream could not identify rows of (no primary key and
    /// replica identity default, or identity nothing).
    pub no_replica_identity: Vec<String>,
}

fn err(what: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| Error::Postgres(format!("{what}: {}", describe(&e)))
}

fn names(rows: &[tokio_postgres::Row]) -> Vec<String> {
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Read the facts (one session, catalog queries only).
pub async fn read(c: &Client) -> Result<Facts> {
    let r = c
        .query_one(
            "SELECT current_user::text, r.rolsuper, r.rolbypassrls, r.rolreplication, r.rolcreaterole,
                    current_setting('server_version'), current_setting('server_version_num')::int,
                    current_setting('wal_level'),
                    coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)
               FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(err("reading the role"))?;
    let mut f = Facts {
        user: r.get(0),
        superuser: r.get(1),
        bypassrls: r.get(2),
        replication: r.get(3),
        createrole: r.get(4),
        server_version: r.get(5),
        server_version_num: r.get(6),
        wal_level: r.get(7),
        tls: r.get(8),
        ..Facts::default()
    };
    const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";
    f.roles = crate::pg::client::role_names(c).await?;
    f.unreadable = names(
        &c.query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p', 'm', 'S', 'v') AND {USER_SCHEMAS}
                    AND NOT (has_schema_privilege(n.oid, 'USAGE')
                             AND has_table_privilege(c.oid, 'SELECT'))
                  ORDER BY 1"
            ),
            &[],
        )
        .await
        .map_err(err("checking table privileges"))?,
    );
    // Row security applies unless the role is a superuser or has BYPASSRLS, or owns the table
    // and the table does not FORCE it.
    let rls = c
        .query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname),
                        NOT ($1 OR $2 OR (pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity))
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND {USER_SCHEMAS}
                  ORDER BY 1"
            ),
            &[&f.superuser, &f.bypassrls],
        )
        .await
        .map_err(err("checking row-level security"))?;
    for row in &rls {
        if row.get::<_, bool>(1) {
            f.row_security.push(row.get(0));
        } else {
            f.row_security_read += 1;
        }
    }
    f.tables = c
        .query_one(
            &format!(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS}"
            ),
            &[],
        )
        .await
        .map_err(err("counting tables"))?
        .get::<_, i64>(0) as usize;
    f.other_owners = names(
        &c.query(
            &format!(
                "SELECT DISTINCT pg_get_userbyid(o)::text FROM (
                    SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS}
                    UNION SELECT n.nspowner FROM pg_namespace n WHERE {USER_SCHEMAS}
                    UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMAS}
                 ) AS x(o)
                 WHERE o <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
                   AND pg_get_userbyid(o) <> 'pg_database_owner'
                 ORDER BY 1"
            ),
            &[],
        )
        .await
        .map_err(err("listing owners"))?,
    );
    f.policy_roles = names(
        &c.query(
            "SELECT DISTINCT r::regrole::text FROM pg_policy, unnest(polroles) AS r
              WHERE r <> 0 ORDER BY 1",
            &[],
        )
        .await
        .map_err(err("listing policies"))?,
    );
    f.event_triggers = c
        .query(
            "SELECT evtname::text, pg_get_userbyid(evtowner)::text FROM pg_event_trigger ORDER BY 1",
            &[],
        )
        .await
        .map_err(err("listing event triggers"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    f.extensions = names(
        &c.query(
            "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
            &[],
        )
        .await
        .map_err(err("listing extensions"))?,
    );
    f.no_replica_identity = names(
        &c.query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS}
                    AND (c.relreplident = 'n'
                         OR (c.relreplident = 'd' AND NOT EXISTS (
                               SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
                  ORDER BY 1"
            ),
            &[],
        )
        .await
        .map_err(err("checking replica identities"))?,
    );
    Ok(f)
}
