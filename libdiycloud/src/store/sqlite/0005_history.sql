-- Version 5: usage history and login counters, for the portal's charts and
-- `/metrics` (`slicectl serve`).
--
-- One row per user whose slice was active at a sample, every `[history]
-- interval`; `[history] keep` and `max_rows` bound the table. Figures the
-- node could not read are NULL. Deleting the user deletes their history.
CREATE TABLE usage_samples (
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,  -- unix seconds
    cpu_nsec     INTEGER,           -- CPU time of the slice since it started (a counter)
    memory_bytes INTEGER,
    tasks        INTEGER,
    disk_bytes   INTEGER,           -- summed over the quota filesystems
    gpu_memory_bytes INTEGER        -- summed over the GPUs their processes use
);
CREATE INDEX usage_samples_user_at ON usage_samples(user_id, at);
CREATE INDEX usage_samples_at ON usage_samples(at);

-- Counters that only ever grow (Prometheus counters): logins by result,
-- lockouts. Counted in the login's own write transaction.
CREATE TABLE counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
