//! Limit events: what `slicectl serve` saw the kernel enforce, and what a
//! user's next login shows.

use rusqlite::{params, Row};

use super::{SqliteStore, SqliteTx};
use crate::model::events::{EventKind, LimitEvent, MERGE_WINDOW_SECS};
use crate::model::time::Timestamp;
use crate::store::records::{event_processes, processes_text};
use crate::store::StoreError;

const SELECT_EVENT: &str = "SELECT u.username, e.node, e.first_at, e.at, e.kind, e.count, \
     e.throttled_usec, e.lim, e.processes, e.shown \
     FROM limit_events e JOIN users u ON u.id = e.user_id";

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<LimitEvent> {
    let kind: String = row.get("kind")?;
    let processes: String = row.get("processes")?;
    Ok(LimitEvent {
        username: row.get("username")?,
        node: row.get("node")?,
        first_at: Timestamp(row.get("first_at")?),
        at: Timestamp(row.get("at")?),
        // The table's CHECK keeps the kinds to the three.
        kind: EventKind::parse(&kind).unwrap_or(EventKind::OomKill),
        count: u64::try_from(row.get::<_, i64>("count")?).unwrap_or(0),
        throttled_usec: u64::try_from(row.get::<_, i64>("throttled_usec")?).unwrap_or(0),
        limit: row.get("lim")?,
        processes: event_processes(&processes),
        shown: row.get("shown")?,
    })
}

fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqliteTx<'_> {
    /// Records `events`. Throttling and reclaim add to the user's latest
    /// unshown row of the kind on the node where it is recent enough, so a
    /// busy day is a few rows; each kill is a row. An event of a user no
    /// longer in the database is left out. Returns how many were recorded.
    pub fn record_limit_events(&self, events: &[LimitEvent]) -> Result<usize, StoreError> {
        let mut merge = self
            .tx
            .prepare_cached(
                "UPDATE limit_events SET at = max(at, ?4), count = count + ?5, \
                 throttled_usec = throttled_usec + ?6, lim = ?7 \
                 WHERE id = (SELECT e.id FROM limit_events e JOIN users u ON u.id = e.user_id \
                   WHERE u.username = ?1 AND e.node = ?2 AND e.kind = ?3 AND e.shown = 0 \
                   ORDER BY e.at DESC, e.id DESC LIMIT 1) \
                 AND at >= ?8",
            )
            .map_err(|e| self.sqlite(e))?;
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO limit_events \
                 (user_id, node, first_at, at, kind, count, throttled_usec, lim, processes) \
                 SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM users WHERE username = ?1",
            )
            .map_err(|e| self.sqlite(e))?;
        let mut recorded = 0;
        for e in events {
            if e.kind.merges() {
                let merged = merge
                    .execute(params![
                        e.username,
                        e.node,
                        e.kind.name(),
                        e.at.0,
                        stored(e.count),
                        stored(e.throttled_usec),
                        e.limit,
                        e.first_at.0.saturating_sub(MERGE_WINDOW_SECS),
                    ])
                    .map_err(|err| self.sqlite(err))?;
                if merged > 0 {
                    recorded += 1;
                    continue;
                }
            }
            recorded += insert
                .execute(params![
                    e.username,
                    e.node,
                    e.first_at.0,
                    e.at.0,
                    e.kind.name(),
                    stored(e.count),
                    stored(e.throttled_usec),
                    e.limit,
                    processes_text(&e.processes),
                ])
                .map_err(|err| self.sqlite(err))?;
        }
        Ok(recorded)
    }

    /// Deletes the events last seen before `oldest`, then the oldest past
    /// `max_rows`. Returns how many went.
    pub fn prune_limit_events(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        // `id` is the rowid: the samples' pruning serves.
        self.prune("limit_events", oldest, max_rows)
    }

    /// `name`'s events not shown yet, oldest first, now marked shown.
    pub fn take_unshown_events(&self, name: &str) -> Result<Vec<LimitEvent>, StoreError> {
        let mut query = self
            .tx
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE u.username = ?1 AND e.shown = 0 ORDER BY e.at, e.id"
            ))
            .map_err(|e| self.sqlite(e))?;
        let events = query
            .query_map(params![name], event_from_row)
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))?;
        if !events.is_empty() {
            self.tx
                .execute(
                    "UPDATE limit_events SET shown = 1 WHERE shown = 0 \
                     AND user_id = (SELECT id FROM users WHERE username = ?1)",
                    params![name],
                )
                .map_err(|e| self.sqlite(e))?;
        }
        Ok(events)
    }
}

impl SqliteStore {
    /// The latest `limit` events of `user` (everyone's where `None`), newest
    /// first.
    pub fn limit_events(
        &self,
        user: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LimitEvent>, StoreError> {
        let mut query = self
            .conn
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE ?1 IS NULL OR u.username = ?1 \
                 ORDER BY e.at DESC, e.id DESC LIMIT ?2"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = query
            .query_map(params![user, limit], event_from_row)
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }
}
