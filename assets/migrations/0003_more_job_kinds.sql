-- keepsake catalog, migration 0003: the job history also holds delete and drill jobs; the
-- job_kind check of 0002 refused them, and the mirror stopped at the first one.
ALTER TABLE backup_jobs DROP CONSTRAINT IF EXISTS backup_jobs_job_kind_check;
ALTER TABLE backup_jobs ADD CONSTRAINT backup_jobs_job_kind_check
    CHECK (job_kind IN ('backup', 'verify', 'restore', 'prune', 'delete', 'drill'));
