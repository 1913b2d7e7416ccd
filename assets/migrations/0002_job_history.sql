-- keepsake catalog, migration 0002: mirror the whole job history, not only backups.
--   * verify, restore and prune jobs have no backup type;
--   * jobs end as cancelled (daemon stopped) or interrupted (process died) too;
--   * which job, source, backup and host, and both sizes (file_size stays the stored size).
ALTER TABLE backup_jobs ALTER COLUMN backup_type DROP NOT NULL;

ALTER TABLE backup_jobs DROP CONSTRAINT IF EXISTS backup_jobs_status_check;
ALTER TABLE backup_jobs ADD CONSTRAINT backup_jobs_status_check
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'interrupted'));

ALTER TABLE backup_jobs ADD COLUMN IF NOT EXISTS job_kind text NOT NULL DEFAULT 'backup'
    CHECK (job_kind IN ('backup', 'verify', 'restore', 'prune'));
ALTER TABLE backup_jobs ADD COLUMN IF NOT EXISTS keepsake_job_id text UNIQUE;
ALTER TABLE backup_jobs ADD COLUMN IF NOT EXISTS source text;
ALTER TABLE backup_jobs ADD COLUMN IF NOT EXISTS backup_id text;
ALTER TABLE backup_jobs ADD COLUMN IF NOT EXISTS logical_bytes bigint;
ALTER TABLE backup_jobs ADD COLUMN IF NOT EXISTS stored_bytes bigint;
ALTER TABLE backup_jobs ADD COLUMN IF NOT EXISTS host text;

CREATE INDEX IF NOT EXISTS backup_jobs_source_started_idx ON backup_jobs (source, started_at);
