//! Users, their allocations and the audit log.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use super::super::records::{limits_text, sample_start, Field, RawUser};
use super::{SqliteStore, SqliteTx};
use crate::model::lockout::FailureState;
use crate::model::time::Timestamp;
use crate::model::user::{Pending, User};
use crate::store::StoreError;
use crate::store::{AuditEntry, NewUser, UserChanges};

const SELECT_USER: &str = "SELECT u.username, u.uid, u.owns_system_account, u.role, u.email, \
     u.full_name, u.is_active, u.expires_on, u.created_at, u.updated_at, u.last_login, \
     u.password_changed_at, u.failed_logins, u.failure_window_start, u.locked_at, \
     u.password_hash, u.last_logout, u.pending, a.limits \
     FROM users u JOIN resource_allocations a ON a.user_id = u.id";

/// Reads one row of `SELECT_USER`, each column by its name.
fn raw_user(row: &Row<'_>) -> rusqlite::Result<RawUser> {
    Ok(RawUser {
        username: row.get("username")?,
        uid: row.get("uid")?,
        owns_system_account: row.get("owns_system_account")?,
        role: row.get("role")?,
        email: row.get("email")?,
        full_name: row.get("full_name")?,
        active: row.get("is_active")?,
        expires: row.get("expires_on")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        last_login: row.get("last_login")?,
        password_changed_at: row.get("password_changed_at")?,
        failed_logins: row.get("failed_logins")?,
        failure_window_start: row.get("failure_window_start")?,
        locked_at: row.get("locked_at")?,
        limits: row.get("limits")?,
        password_hash: row.get("password_hash")?,
        last_logout: row.get("last_logout")?,
        pending: row.get("pending")?,
    })
}

fn find(conn: &Connection, path: &Path, name: &str) -> Result<Option<(User, String)>, StoreError> {
    find_where(conn, path, "WHERE u.username = ?1", [name])
}

/// The one user (and their hash) that `rest` (joins and a WHERE clause on
/// the users `u`) selects, if any.
pub(super) fn find_where(
    conn: &Connection,
    path: &Path,
    rest: &str,
    params: impl rusqlite::Params,
) -> Result<Option<(User, String)>, StoreError> {
    let sqlite = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let raw = conn
        .prepare_cached(&format!("{SELECT_USER} {rest}"))
        .and_then(|mut stmt| stmt.query_row(params, raw_user).optional())
        .map_err(sqlite)?;
    raw.map(|r| r.into_user(&path.display().to_string()))
        .transpose()
}

impl SqliteStore {
    /// The user named `name`, if the database has one.
    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(find(&self.conn, &self.path, name)?.map(|(user, _)| user))
    }

    /// The user and their password hash: for the login path only.
    pub fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        find(&self.conn, &self.path, name)
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = self
            .conn
            .prepare(&format!("{SELECT_USER} ORDER BY u.username"))
            .and_then(|mut stmt| {
                stmt.query_map([], raw_user)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter()
            .map(|r| {
                r.into_user(&self.path.display().to_string())
                    .map(|(u, _)| u)
            })
            .collect()
    }

    /// The password hash of one user, picked by `name`: the same user for
    /// the same name every time, users spread evenly over names. An unknown
    /// name's dummy verify takes this hash's cost, so unknown names cost
    /// what the user base costs. `None` for an empty database.
    pub fn sample_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let max_id: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(id) FROM users")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
            .map_err(|e| self.sqlite(e))?;
        let Some(max_id) = max_id
            .and_then(|m| u64::try_from(m).ok())
            .filter(|m| *m > 0)
        else {
            return Ok(None);
        };
        let start = sample_start(name, max_id);
        self.conn
            .prepare_cached("SELECT password_hash FROM users WHERE id >= ?1 ORDER BY id LIMIT 1")
            .and_then(|mut stmt| stmt.query_row([start], |r| r.get(0)).optional())
            .map_err(|e| self.sqlite(e))
    }

    /// The newest `limit` audit entries about `name`, oldest first.
    pub fn audit_log(&self, name: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = self
            .conn
            .prepare(
                "SELECT at, actor, action, username, detail FROM audit_log \
                 WHERE username = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![name, limit], |row| {
                    let detail: String = row.get("detail")?;
                    Ok(AuditEntry {
                        at: Timestamp(row.get("at")?).to_string(),
                        actor: row.get("actor")?,
                        action: row.get("action")?,
                        username: row.get("username")?,
                        detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.sqlite(e))?;
        entries.reverse();
        Ok(entries)
    }
}

impl SqliteTx<'_> {
    /// The user and their hash, read inside this transaction.
    pub fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        find(&self.tx, &self.path, name)
    }

    /// Only what the login bookkeeping re-checks inside its transaction:
    /// the failure state and the password hash (no join, no full record:
    /// measured, this halves the login's write transaction).
    pub fn login_state(&self, name: &str) -> Result<Option<(FailureState, String)>, StoreError> {
        self.tx
            .prepare_cached(
                "SELECT failed_logins, failure_window_start, locked_at, password_hash \
                 FROM users WHERE username = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([name], |r| {
                    Ok((
                        FailureState {
                            count: r.get("failed_logins")?,
                            window_start: r.get::<_, Option<i64>>(1)?.map(Timestamp),
                            locked_at: r.get::<_, Option<i64>>(2)?.map(Timestamp),
                        },
                        r.get::<_, String>("password_hash")?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.sqlite(e))
    }

    pub fn user(&self, name: &str) -> Result<User, StoreError> {
        self.credentials(name)?
            .map(|(user, _)| user)
            .ok_or_else(|| StoreError::UserNotFound(name.into()))
    }

    pub fn insert_user(&self, new: &NewUser, now: Timestamp) -> Result<User, StoreError> {
        let name = new.username.as_str();
        let exists: bool = self
            .tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)",
                [name],
                |r| r.get(0),
            )
            .map_err(|e| self.sqlite(e))?;
        if exists {
            return Err(StoreError::UserExists(name.into()));
        }
        self.tx
            .execute(
                "INSERT INTO users (username, password_hash, email, full_name, uid, \
                 owns_system_account, created_at, updated_at, password_changed_at, role, expires_on, pending) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7, ?8, ?9, ?10)",
                params![
                    name,
                    new.password_hash,
                    new.email,
                    new.full_name,
                    new.uid,
                    new.owns_system_account,
                    now.0,
                    new.role.to_string(),
                    new.expires.map(|d| d.to_string()),
                    new.pending.map(Pending::as_str),
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        self.tx
            .execute(
                "INSERT INTO resource_allocations (user_id, limits) VALUES (last_insert_rowid(), ?1)",
                [limits_text(&new.allocation)],
            )
            .map_err(|e| self.sqlite(e))?;
        self.user(name)
    }

    /// Applies `changes`, touching only the columns they name (so concurrent
    /// updates of other fields, or a login's failure count, are never lost).
    /// Returns the changed fields and their new values, for the audit log.
    pub fn update_user(
        &self,
        name: &str,
        changes: &UserChanges,
        now: Timestamp,
    ) -> Result<Value, StoreError> {
        use rusqlite::types::Value as Sql;
        let plan = changes.plan();
        if plan.ends_sessions {
            // Disabled: their API sessions end now, not at expiry.
            self.delete_api_sessions_of(name)?;
        }
        let to_sql = |(column, field): (&'static str, Field)| {
            let value = match field {
                Field::Text(text) => text.map_or(Sql::Null, Sql::Text),
                Field::Bool(b) => Sql::Integer(i64::from(b)),
            };
            (column, value)
        };
        let mut user_sets: Vec<(&str, Sql)> = plan.user.into_iter().map(to_sql).collect();
        let detail = plan.detail;
        user_sets.push(("updated_at", Sql::Integer(now.0)));
        let user_id: i64 = self
            .tx
            .query_row("SELECT id FROM users WHERE username = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sqlite(e))?
            .ok_or_else(|| StoreError::UserNotFound(name.into()))?;
        let assignments: Vec<String> = user_sets
            .iter()
            .enumerate()
            .map(|(i, (col, _))| format!("{col} = ?{}", i + 2))
            .collect();
        let sql = format!("UPDATE users SET {} WHERE id = ?1", assignments.join(", "));
        let mut values: Vec<Sql> = vec![Sql::Integer(user_id)];
        values.extend(user_sets.into_iter().map(|(_, v)| v));
        self.tx
            .execute(&sql, rusqlite::params_from_iter(values))
            .map_err(|e| self.sqlite(e))?;
        // The changed limits are merged into the stored ones, in the
        // database: a limit changed meanwhile by someone else stays theirs.
        if let Some(limits) = plan.limits {
            self.tx
                .execute(
                    "UPDATE resource_allocations SET limits = json_patch(limits, ?2) WHERE user_id = ?1",
                    params![user_id, limits],
                )
                .map_err(|e| self.sqlite(e))?;
        }
        Ok(Value::Object(detail))
    }

    /// A new password: every API session of the user ends with the old one.
    pub fn set_password_hash(
        &self,
        name: &str,
        hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3, updated_at = ?3 WHERE username = ?1",
            params![name, hash, now.0],
            name,
        )?;
        self.delete_api_sessions_of(name).map(|_| ())
    }

    /// The same password at another cost: `password_changed_at` stays.
    pub fn replace_hash(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET password_hash = ?2 WHERE username = ?1",
            params![name, hash],
            name,
        )
    }

    /// Records (or, with `None`, clears) an unfinished add or delete.
    pub fn set_pending(&self, name: &str, pending: Option<Pending>) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET pending = ?2 WHERE username = ?1",
            params![name, pending.map(Pending::as_str)],
            name,
        )
    }

    /// Links the record to a system account: its uid, and whether
    /// diycloud created it (and so removes it).
    pub fn set_system_account(&self, name: &str, uid: u32, owned: bool) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET uid = ?2, owns_system_account = ?3 WHERE username = ?1",
            params![name, uid, owned],
            name,
        )
    }

    /// Stores the failure bookkeeping computed by the lockout policy.
    pub fn set_failures(&self, name: &str, state: &FailureState) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET failed_logins = ?2, failure_window_start = ?3, locked_at = ?4 WHERE username = ?1",
            params![name, state.count, state.window_start.map(|t| t.0), state.locked_at.map(|t| t.0)],
            name,
        )
    }

    /// A successful login: the failure count starts over.
    pub fn record_login(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET last_login = ?2, failed_logins = 0, failure_window_start = NULL, \
             locked_at = NULL WHERE username = ?1",
            params![name, now.0],
            name,
        )
    }

    /// A session closed.
    pub fn record_logout(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET last_logout = ?2 WHERE username = ?1",
            params![name, now.0],
            name,
        )
    }

    pub fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.update_one("DELETE FROM users WHERE username = ?1", params![name], name)
    }

    pub fn audit(
        &self,
        now: Timestamp,
        actor: &str,
        action: &str,
        username: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO audit_log (at, actor, action, username, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now.0, actor, action, username, detail.to_string()],
            )
            .map(|_| ())
            .map_err(|e| self.sqlite(e))
    }

    /// Deletes the audit entries from before `oldest`, then the oldest
    /// past `max_rows`. Returns how many went.
    pub fn prune_audit_log(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        self.prune("audit_log", oldest, max_rows)
    }

    fn update_one(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        name: &str,
    ) -> Result<(), StoreError> {
        match self.tx.execute(sql, params).map_err(|e| self.sqlite(e))? {
            0 => Err(StoreError::UserNotFound(name.into())),
            _ => Ok(()),
        }
    }
}
