//! Usage history and counters: what the portal's charts and `/metrics` read.

use rusqlite::{params, OptionalExtension};

use super::{SqliteStore, SqliteTx};
use crate::model::history::{Counter, Sample};
use crate::model::time::Timestamp;
use crate::store::StoreError;

/// SQLite keeps integers signed: figures above `i64::MAX` (none real) are
/// stored as that.
fn stored(value: Option<u64>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn read(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok())
}

impl SqliteTx<'_> {
    /// Records `samples`; a sample of a user no longer in the database (
    /// deleted while the node was read) is left out. Returns how many went in.
    pub fn insert_samples(&self, samples: &[Sample]) -> Result<usize, StoreError> {
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO usage_samples \
                 (user_id, at, cpu_nsec, memory_bytes, tasks, disk_bytes, gpu_memory_bytes) \
                 SELECT id, ?2, ?3, ?4, ?5, ?6, ?7 FROM users WHERE username = ?1",
            )
            .map_err(|e| self.sqlite(e))?;
        let mut inserted = 0;
        for s in samples {
            inserted += insert
                .execute(params![
                    s.username,
                    s.at.0,
                    stored(s.cpu_nsec),
                    stored(s.memory_bytes),
                    stored(s.tasks),
                    stored(s.disk_bytes),
                    stored(s.gpu_memory_bytes),
                ])
                .map_err(|e| self.sqlite(e))?;
        }
        Ok(inserted)
    }

    /// Deletes the samples taken before `oldest`, then the oldest ones past
    /// `max_rows`. Returns how many went.
    pub fn prune_samples(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        self.prune("usage_samples", oldest, max_rows)
    }

    /// Deletes the rows of `table` (a table with an `at` column) from before
    /// `oldest`, then its oldest rows past `max_rows`. Returns how many went.
    pub(super) fn prune(
        &self,
        table: &'static str,
        oldest: Timestamp,
        max_rows: u64,
    ) -> Result<u64, StoreError> {
        let by_age = self
            .tx
            .execute(
                &format!("DELETE FROM {table} WHERE at < ?1"),
                params![oldest.0],
            )
            .map_err(|e| self.sqlite(e))?;
        let count: i64 = self
            .tx
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .map_err(|e| self.sqlite(e))?;
        let over = u64::try_from(count).unwrap_or(0).saturating_sub(max_rows);
        let by_count = if over > 0 {
            self.tx
                .execute(
                    &format!(
                        "DELETE FROM {table} WHERE rowid IN \
                         (SELECT rowid FROM {table} ORDER BY at, rowid LIMIT ?1)"
                    ),
                    params![i64::try_from(over).unwrap_or(i64::MAX)],
                )
                .map_err(|e| self.sqlite(e))?
        } else {
            0
        };
        Ok((by_age + by_count) as u64)
    }

    /// Adds one to `counter`.
    pub fn count(&self, counter: Counter) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO counters (name, value) VALUES (?1, 1) \
                 ON CONFLICT (name) DO UPDATE SET value = value + 1",
                params![counter.name()],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }
}

impl SqliteStore {
    /// The samples of `user` (everyone's where `None`) taken from `from` to
    /// `to` (inclusive), one per user and `bucket` seconds: the bucket's
    /// start, its highest CPU counter, tasks and disk, and its mean memory
    /// and GPU memory. Ordered by user, then time.
    pub fn samples(
        &self,
        user: Option<&str>,
        from: Timestamp,
        to: Timestamp,
        bucket: u64,
    ) -> Result<Vec<Sample>, StoreError> {
        let bucket = i64::try_from(bucket.max(1)).unwrap_or(i64::MAX);
        // One user: by the (user_id, at) index. Everyone: grouped by user
        // id first (the names are joined to the few buckets, not the rows).
        let sql = match user {
            Some(_) => {
                "SELECT ?1 AS username, (at / ?4) * ?4 AS t, max(cpu_nsec) AS cpu, \
                 CAST(avg(memory_bytes) AS INTEGER) AS memory, max(tasks) AS tasks, \
                 max(disk_bytes) AS disk, CAST(avg(gpu_memory_bytes) AS INTEGER) AS gpu \
                 FROM usage_samples \
                 WHERE user_id = (SELECT id FROM users WHERE username = ?1) \
                 AND at BETWEEN ?2 AND ?3 \
                 GROUP BY t ORDER BY t"
            }
            None => {
                "SELECT u.username, b.t, b.cpu, b.memory, b.tasks, b.disk, b.gpu FROM \
                 (SELECT user_id, (at / ?4) * ?4 AS t, max(cpu_nsec) AS cpu, \
                  CAST(avg(memory_bytes) AS INTEGER) AS memory, max(tasks) AS tasks, \
                  max(disk_bytes) AS disk, CAST(avg(gpu_memory_bytes) AS INTEGER) AS gpu \
                  FROM usage_samples WHERE at BETWEEN ?2 AND ?3 AND ?1 IS NULL \
                  GROUP BY user_id, t) b \
                 JOIN users u ON u.id = b.user_id ORDER BY u.username, b.t"
            }
        };
        let mut query = self.conn.prepare_cached(sql).map_err(|e| self.sqlite(e))?;
        let rows = query
            .query_map(params![user, from.0, to.0, bucket], |row| {
                Ok(Sample {
                    username: row.get("username")?,
                    at: Timestamp(row.get("t")?),
                    cpu_nsec: read(row.get("cpu")?),
                    memory_bytes: read(row.get("memory")?),
                    tasks: read(row.get("tasks")?),
                    disk_bytes: read(row.get("disk")?),
                    gpu_memory_bytes: read(row.get("gpu")?),
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// How many samples the history holds.
    pub fn sample_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM usage_samples", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.sqlite(e))
    }

    /// The value of `counter` (0 before it was first counted).
    pub fn counter(&self, counter: Counter) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![counter.name()],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
            .map_err(|e| self.sqlite(e))
    }
}
