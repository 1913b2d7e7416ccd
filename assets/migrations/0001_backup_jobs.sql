-- keepsake catalog, migration 0001: the backup_jobs table of the original specification.
-- Applied by keepsake itself (once, recorded in keepsake_migrations); do not edit an applied
-- migration — add a new numbered file instead.
CREATE TABLE IF NOT EXISTS backup_jobs (
    id                  uuid PRIMARY KEY,
    backup_type         text NOT NULL CHECK (backup_type IN ('full', 'incremental', 'differential')),
    status              text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    file_size           bigint,
    backup_location     text,
    verification_status text,
    error_message       text,
    started_at          timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz
);

CREATE INDEX IF NOT EXISTS backup_jobs_status_idx ON backup_jobs (status);
CREATE INDEX IF NOT EXISTS backup_jobs_started_at_idx ON backup_jobs (started_at);
