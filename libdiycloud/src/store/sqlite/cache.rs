//! What an SQLite file needs to serve as a node's cache of the PostgreSQL
//! store: copies of user records, the time of the last full refresh, and
//! the login events counted while the server was unreachable.

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::super::records::limits_text;
use super::{SqliteStore, SqliteTx};
use crate::model::time::Timestamp;
use crate::model::user::{Pending, User};
use crate::store::StoreError;

/// The cache's own tables, beside the ordinary schema (made on every open:
/// a cache is disposable, so it has no migrations of its own).
const CACHE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS cache_meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offline_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    username TEXT    NOT NULL,
    kind     TEXT    NOT NULL CHECK (kind IN ('failure', 'login', 'logout', 'audit', 'count')),
    detail   TEXT    NOT NULL DEFAULT '{}'
);";

/// A login event counted on this node while the server was unreachable,
/// to be replayed there.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineEvent {
    pub id: i64,
    pub at: Timestamp,
    pub username: String,
    pub kind: String,
    pub detail: Value,
}

/// What the cache holds, for `slicectl doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheState {
    pub users: u64,
    /// The last full refresh from the server.
    pub refreshed_at: Option<Timestamp>,
    /// The last time a login's lookup brought a changed record.
    pub copied_at: Option<Timestamp>,
    /// Events waiting to be merged into the server.
    pub pending_events: u64,
    /// Since when this node's probe (`slicectl cache refresh`, run by root
    /// from a timer) has found the server unreachable. Only then may a
    /// login fall back on the cache: no login decides alone that the
    /// server is gone.
    pub outage_since: Option<Timestamp>,
}

impl SqliteStore {
    /// Makes the cache's own tables where they are missing.
    pub fn ensure_cache_tables(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(CACHE_TABLES)
            .map_err(|e| self.sqlite(e))
    }

    /// The events still to be merged, oldest first.
    pub fn offline_events(&self) -> Result<Vec<OfflineEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, at, username, kind, detail FROM offline_events ORDER BY id")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                let detail: String = r.get("detail")?;
                Ok(OfflineEvent {
                    id: r.get("id")?,
                    at: Timestamp(r.get("at")?),
                    username: r.get("username")?,
                    kind: r.get("kind")?,
                    detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    pub fn cache_state(&self) -> Result<CacheState, StoreError> {
        let one = |sql: &str| -> Result<Option<i64>, StoreError> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .optional()
                .map(Option::flatten)
                .map_err(|e| self.sqlite(e))
        };
        let count = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        Ok(CacheState {
            users: count(one("SELECT count(*) FROM users")?),
            refreshed_at: one("SELECT value FROM cache_meta WHERE key = 'refreshed_at'")?
                .map(Timestamp),
            copied_at: one("SELECT value FROM cache_meta WHERE key = 'copied_at'")?.map(Timestamp),
            pending_events: count(one("SELECT count(*) FROM offline_events")?),
            outage_since: one("SELECT value FROM cache_meta WHERE key = 'outage_since'")?
                .map(Timestamp),
        })
    }
}

impl SqliteTx<'_> {
    /// Stores a copy of `user`'s record and hash as the server has it.
    pub fn put_user(&self, user: &User, hash: &str) -> Result<(), StoreError> {
        let f = &user.failures;
        self.tx
            .execute(
                "INSERT INTO users (username, password_hash, email, full_name, uid, \
                 owns_system_account, created_at, updated_at, last_login, last_logout, \
                 password_changed_at, role, is_active, expires_on, failed_logins, \
                 failure_window_start, locked_at, pending) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
                 ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, \
                 email = excluded.email, full_name = excluded.full_name, uid = excluded.uid, \
                 owns_system_account = excluded.owns_system_account, \
                 created_at = excluded.created_at, updated_at = excluded.updated_at, \
                 last_login = excluded.last_login, last_logout = excluded.last_logout, \
                 password_changed_at = excluded.password_changed_at, role = excluded.role, \
                 is_active = excluded.is_active, expires_on = excluded.expires_on, \
                 failed_logins = excluded.failed_logins, \
                 failure_window_start = excluded.failure_window_start, \
                 locked_at = excluded.locked_at, pending = excluded.pending",
                params![
                    user.username.as_str(),
                    hash,
                    user.email,
                    user.full_name,
                    user.uid,
                    user.owns_system_account,
                    user.created_at.0,
                    user.updated_at.0,
                    user.last_login.map(|t| t.0),
                    user.last_logout.map(|t| t.0),
                    user.password_changed_at.map(|t| t.0),
                    user.role.to_string(),
                    user.active,
                    user.expires.map(|d| d.to_string()),
                    f.count,
                    f.window_start.map(|t| t.0),
                    f.locked_at.map(|t| t.0),
                    user.pending.map(Pending::as_str),
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        self.tx
            .execute(
                "INSERT INTO resource_allocations (user_id, limits) \
                 SELECT id, ?2 FROM users WHERE username = ?1 \
                 ON CONFLICT (user_id) DO UPDATE SET limits = excluded.limits",
                params![user.username.as_str(), limits_text(&user.allocation)],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Forgets `name` (the server has no such user); no error if absent.
    pub fn forget_user(&self, name: &str) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM users WHERE username = ?1", [name])
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Forgets every user not in `keep` (a full refresh).
    pub fn forget_users_except(&self, keep: &[&str]) -> Result<u64, StoreError> {
        let names = serde_json::to_string(keep).unwrap_or_else(|_| "[]".into());
        self.tx
            .execute(
                "DELETE FROM users WHERE username NOT IN (SELECT value FROM json_each(?1))",
                [names],
            )
            .map(|n| n as u64)
            .map_err(|e| self.sqlite(e))
    }

    pub fn set_cache_time(&self, key: &str, at: Timestamp) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO cache_meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, at.0],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Forgets a time of [`CacheState`] (the end of an outage).
    pub fn clear_cache_time(&self, key: &str) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM cache_meta WHERE key = ?1", params![key])
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Records a login event for the server.
    pub fn add_offline_event(
        &self,
        at: Timestamp,
        username: &str,
        kind: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO offline_events (at, username, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                params![at.0, username, kind, detail.to_string()],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Forgets the events up to `id` (merged into the server).
    pub fn delete_offline_events(&self, up_to: i64) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM offline_events WHERE id <= ?1", [up_to])
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }
}
