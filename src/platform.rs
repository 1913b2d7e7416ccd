//! Hosted PostgreSQL platforms as data (docs/restore.md, its sections on hosted databases;
//! docs/architecture.md, "Where each rule lives"): what a provider owns in a database it
//! hosts — its roles, its schemas, extensions only it ships, tables whose rows describe its own
//! version — so that restore, verify and `source check` treat a provider without special code
//! paths. A profile is chosen by `[[sources]] provider = "…"` or detected at backup time from the
//! roles present, and recorded in the manifest (`source.platform`), so that restoring needs no
//! configuration.
//!
//! Plain values only: the configuration validates `provider` against [`PROFILES`], the engine
//! and core read them.

/// One provider's footprint.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    /// The `provider` key's value and the manifest's `source.platform`.
    pub name: &'static str,
    /// For people.
    pub title: &'static str,
    /// Roles whose presence (all of them) identifies the platform on a server.
    pub markers: &'static [&'static str],
    /// Roles the provider creates and owns (a plain server lacks them).
    pub roles: &'static [&'static str],
    /// Schemas the provider creates and manages: a new project already has their structure.
    pub schemas: &'static [&'static str],
    /// Extensions only the provider ships.
    pub extensions: &'static [&'static str],
    /// Tables of provider schemas whose rows record the provider's own version (its
    /// migrations): a new project has its own, and restoring the old ones would lie to it.
    pub version_tables: &'static [&'static str],
    /// How the provider's pooler is reached, for the transaction-pooler refusal.
    pub pooler_hint: Option<&'static str>,
}

impl Profile {
    /// Whether `schema` is managed by the provider.
    pub fn manages_schema(&self, schema: &str) -> bool {
        self.schemas.contains(&schema)
    }

    /// Whether `schema.table` is a provider table whose rows describe the provider's version.
    pub fn is_version_table(&self, schema: &str, table: &str) -> bool {
        self.version_tables
            .iter()
            .any(|t| t.split_once('.') == Some((schema, table)))
    }
}

/// Supabase: facts from its published init scripts (`supabase/postgres`,
/// `migrations/db/init-scripts` and the migrations after them).
pub const SUPABASE: Profile = Profile {
    name: "supabase",
    title: "Supabase",
    markers: &["supabase_admin", "authenticator", "service_role"],
    roles: &[
        "supabase_admin",
        "supabase_auth_admin",
        "supabase_storage_admin",
        "supabase_functions_admin",
        "supabase_replication_admin",
        "supabase_read_only_user",
        "supabase_realtime_admin",
        "authenticator",
        "anon",
        "authenticated",
        "service_role",
        "dashboard_user",
        "pgbouncer",
        "pgsodium_keyholder",
        "pgsodium_keyiduser",
        "pgsodium_keymaker",
    ],
    schemas: &[
        "auth",
        "storage",
        "realtime",
        "_realtime",
        "graphql",
        "graphql_public",
        "vault",
        "pgsodium",
        "pgsodium_masks",
        "pgbouncer",
        "extensions",
        "supabase_functions",
        "net",
        "cron",
    ],
    extensions: &[
        "pg_net",
        "pgsodium",
        "pg_graphql",
        "supabase_vault",
        "pgjwt",
        "pg_cron",
        "supautils",
    ],
    version_tables: &[
        "auth.schema_migrations",
        "storage.migrations",
        "supabase_functions.migrations",
        "realtime.schema_migrations",
    ],
    pooler_hint: Some(
        "Supabase: port 6543 is the transaction pooler; use the direct connection (db.<project>.supabase.co:5432) or the session pooler (port 5432 of <region>.pooler.supabase.com)",
    ),
};

/// Amazon RDS and Aurora PostgreSQL.
pub const RDS: Profile = Profile {
    name: "rds",
    title: "Amazon RDS",
    markers: &["rds_superuser", "rdsadmin"],
    roles: &[
        "rds_superuser",
        "rdsadmin",
        "rds_replication",
        "rds_iam",
        "rds_password",
        "rdstopmgr",
    ],
    schemas: &[],
    extensions: &["aws_commons", "aws_s3", "aws_lambda", "rds_tools"],
    version_tables: &[],
    pooler_hint: Some(
        "RDS Proxy pins sessions only in some cases: point the source at the instance endpoint",
    ),
};

/// Google Cloud SQL for PostgreSQL.
pub const CLOUD_SQL: Profile = Profile {
    name: "cloudsql",
    title: "Google Cloud SQL",
    markers: &["cloudsqlsuperuser"],
    roles: &[
        "cloudsqlsuperuser",
        "cloudsqladmin",
        "cloudsqlagent",
        "cloudsqliamuser",
        "cloudsqliamserviceaccount",
        "cloudsqlreplica",
        "cloudsqlimportexport",
    ],
    schemas: &[],
    extensions: &["google_columnar_engine", "google_ml_integration"],
    version_tables: &[],
    pooler_hint: None,
};

/// Azure Database for PostgreSQL (flexible server).
pub const AZURE: Profile = Profile {
    name: "azure",
    title: "Azure Database for PostgreSQL",
    markers: &["azure_pg_admin"],
    roles: &[
        "azure_pg_admin",
        "azuresu",
        "azure_superuser",
        "replication",
    ],
    schemas: &[],
    extensions: &["azure", "pgaadauth", "azure_storage", "azure_ai"],
    version_tables: &[],
    pooler_hint: Some("Azure: the built-in PgBouncer listens on port 6432; use port 5432"),
};

/// Neon.
pub const NEON: Profile = Profile {
    name: "neon",
    title: "Neon",
    markers: &["neon_superuser"],
    roles: &["neon_superuser", "cloud_admin"],
    schemas: &["neon"],
    extensions: &["neon", "neon_utils"],
    version_tables: &[],
    pooler_hint: Some(
        "Neon: a host name with -pooler is the transaction pooler; use the host without it",
    ),
};

/// Every known platform.
pub const PROFILES: &[&Profile] = &[&SUPABASE, &RDS, &CLOUD_SQL, &AZURE, &NEON];

/// The profile called `name`.
pub fn by_name(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().copied().find(|p| p.name == name)
}

/// The known names, for an error message.
pub fn names() -> String {
    PROFILES
        .iter()
        .map(|p| format!("\"{}\"", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The platform whose marker roles are all among `roles` (a server's `pg_roles`).
pub fn detect<S: AsRef<str>>(roles: &[S]) -> Option<&'static Profile> {
    PROFILES.iter().copied().find(|p| {
        p.markers
            .iter()
            .all(|m| roles.iter().any(|r| r.as_ref() == *m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_detected_by_all_their_marker_roles() {
        let supa = [
            "postgres",
            "supabase_admin",
            "authenticator",
            "service_role",
            "anon",
        ];
        assert_eq!(detect(&supa).map(|p| p.name), Some("supabase"));
        // One marker is not enough: a self-hosted server with a role called authenticator.
        assert_eq!(detect(&["postgres", "authenticator"]), None);
        assert_eq!(
            detect(&["rds_superuser", "rdsadmin"]).map(|p| p.name),
            Some("rds")
        );
        assert_eq!(detect::<&str>(&[]), None);
        assert!(SUPABASE.is_version_table("auth", "schema_migrations"));
        assert!(!SUPABASE.is_version_table("auth", "users"));
        assert!(names().contains("\"supabase\"") && names().contains("\"neon\""));
        for p in PROFILES {
            assert!(!p.markers.is_empty(), "{}", p.name);
            assert!(
                p.markers.iter().all(|m| p.roles.contains(m)),
                "{}: markers are provider roles",
                p.name
            );
        }
    }
}
