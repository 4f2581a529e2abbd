//! Which granted GPUs their users use: the sampler's record, for the flag
//! on GPUs granted but idle.

use rusqlite::params;

use super::{SqliteStore, SqliteTx};
use crate::model::gpu::GpuUse;
use crate::model::time::Timestamp;
use crate::store::{GpuUseUpdate, StoreError};

impl SqliteTx<'_> {
    /// Records, at `now`, the GPUs granted by name on `node` and whether
    /// their users have a process on them; rows of `node` not among
    /// `updates` (grants taken away) go.
    pub fn record_gpu_use(
        &self,
        node: &str,
        now: Timestamp,
        updates: &[GpuUseUpdate],
    ) -> Result<(), StoreError> {
        let mut upsert = self
            .tx
            .prepare_cached(
                "INSERT INTO gpu_use (user_id, node, gpu, granted_since, last_used) \
                 SELECT id, ?2, ?3, ?4, CASE WHEN ?5 THEN ?4 END FROM users WHERE username = ?1 \
                 ON CONFLICT (user_id, node, gpu) DO UPDATE SET \
                 last_used = CASE WHEN ?5 THEN ?4 ELSE last_used END",
            )
            .map_err(|e| self.sqlite(e))?;
        for u in updates {
            upsert
                .execute(params![u.username, node, u.gpu, now.0, u.used])
                .map_err(|e| self.sqlite(e))?;
        }
        let mut rows = self
            .tx
            .prepare_cached(
                "SELECT u.username, g.gpu FROM gpu_use g JOIN users u ON u.id = g.user_id \
                 WHERE g.node = ?1",
            )
            .map_err(|e| self.sqlite(e))?;
        let existing: Vec<(String, String)> = rows
            .query_map(params![node], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.sqlite(e))?;
        for (username, gpu) in existing {
            if !updates
                .iter()
                .any(|u| u.username == username && u.gpu == gpu)
            {
                self.tx
                    .execute(
                        "DELETE FROM gpu_use WHERE node = ?1 AND gpu = ?2 \
                         AND user_id = (SELECT id FROM users WHERE username = ?3)",
                        params![node, gpu, username],
                    )
                    .map_err(|e| self.sqlite(e))?;
            }
        }
        Ok(())
    }
}

impl SqliteStore {
    /// What the sampler recorded of `user`'s granted GPUs (everyone's
    /// where `None`), by user, node and GPU.
    pub fn gpu_use(&self, user: Option<&str>) -> Result<Vec<GpuUse>, StoreError> {
        let mut query = self
            .conn
            .prepare_cached(
                "SELECT u.username, g.node, g.gpu, g.granted_since, g.last_used \
                 FROM gpu_use g JOIN users u ON u.id = g.user_id \
                 WHERE ?1 IS NULL OR u.username = ?1 ORDER BY u.username, g.node, g.gpu",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = query
            .query_map(params![user], |row| {
                Ok(GpuUse {
                    username: row.get("username")?,
                    node: row.get("node")?,
                    gpu: row.get("gpu")?,
                    granted_since: Timestamp(row.get("granted_since")?),
                    last_used: row.get::<_, Option<i64>>(4)?.map(Timestamp),
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }
}
