//! API sessions: the REST API's bearer tokens, stored by their hash.

use rusqlite::params;

use super::{SqliteStore, SqliteTx};
use crate::model::time::Timestamp;
use crate::model::user::User;
use crate::store::StoreError;

impl SqliteTx<'_> {
    /// A new session of `name` until `expires`.
    pub fn insert_api_session(
        &self,
        token_hash: &str,
        name: &str,
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO api_sessions (token_hash, user_id, created_at, expires_at) \
                 SELECT ?1, id, ?3, ?4 FROM users WHERE username = ?2",
                params![token_hash, name, now.0, expires.0],
            )
            .map_err(|e| self.sqlite(e))
            .and_then(|n| match n {
                1 => Ok(()),
                _ => Err(StoreError::UserNotFound(name.into())),
            })
    }

    /// Ends one session (logout); false if there was none.
    pub fn delete_api_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        self.tx
            .execute(
                "DELETE FROM api_sessions WHERE token_hash = ?1",
                [token_hash],
            )
            .map(|n| n > 0)
            .map_err(|e| self.sqlite(e))
    }

    /// Ends every session of `name` (password changed, account disabled).
    pub fn delete_api_sessions_of(&self, name: &str) -> Result<usize, StoreError> {
        self.tx
            .execute(
                "DELETE FROM api_sessions WHERE user_id = \
                 (SELECT id FROM users WHERE username = ?1)",
                [name],
            )
            .map_err(|e| self.sqlite(e))
    }

    /// Forgets sessions that have expired, so the table cannot grow
    /// without bound.
    pub fn prune_api_sessions(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.tx
            .execute("DELETE FROM api_sessions WHERE expires_at <= ?1", [now.0])
            .map_err(|e| self.sqlite(e))
    }
}

impl SqliteStore {
    /// The user whose session `token_hash` is, while it has not expired:
    /// one query, as every authenticated request asks.
    pub fn api_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let found = super::users::find_where(
            &self.conn,
            &self.path,
            "JOIN api_sessions s ON s.user_id = u.id WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            params![token_hash, now.0],
        )?;
        Ok(found.map(|(user, _)| user))
    }
}
