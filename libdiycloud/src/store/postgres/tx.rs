//! A write transaction on PostgreSQL.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;

use super::{user_from_row, wait_on, SELECT_USER};
use crate::model::history::{Counter, Sample};
use crate::model::lockout::FailureState;
use crate::model::time::Timestamp;
use crate::model::user::{Pending, User};
use crate::store::records::Field;
use crate::store::{NewUser, StoreError, Transaction, UserChanges};

type Param<'p> = &'p (dyn ToSql + Sync);

/// Rolls back when dropped uncommitted (the client sends the ROLLBACK with
/// the next call, or the server does it when the connection closes).
pub struct PgTx<'a> {
    tx: tokio_postgres::Transaction<'a>,
    rt: &'a Runtime,
    target: &'a str,
    timeout: Duration,
    node: &'a str,
}

fn stored(value: Option<u64>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl<'a> PgTx<'a> {
    pub(super) fn new(
        tx: tokio_postgres::Transaction<'a>,
        rt: &'a Runtime,
        target: &'a str,
        timeout: Duration,
        node: &'a str,
    ) -> Self {
        Self {
            tx,
            rt,
            target,
            timeout,
            node,
        }
    }

    fn wait<T>(
        &self,
        f: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        wait_on(self.rt, self.target, self.timeout, f)
    }

    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        self.wait(self.tx.execute(sql, params))
    }

    /// An UPDATE or DELETE of one user's row: none is `UserNotFound`.
    fn update_one(&self, sql: &str, params: &[Param<'_>], name: &str) -> Result<(), StoreError> {
        match self.execute(sql, params)? {
            0 => Err(StoreError::UserNotFound(name.into())),
            _ => Ok(()),
        }
    }

    fn user_id(&self, name: &str) -> Result<i64, StoreError> {
        self.wait(
            self.tx
                .query_opt("SELECT id FROM users WHERE username = $1", &[&name]),
        )?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::UserNotFound(name.into()))
    }
}

impl Transaction for PgTx<'_> {
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = self.wait(
            self.tx
                .query_opt(&format!("{SELECT_USER} WHERE u.username = $1"), &[&name]),
        )?;
        row.map(|r| user_from_row(&r, self.target)).transpose()
    }

    fn login_state(&self, name: &str) -> Result<Option<(FailureState, String)>, StoreError> {
        // FOR UPDATE: concurrent logins of one user (on any node) count
        // their failures one after another, never over each other.
        let row = self.wait(self.tx.query_opt(
            "SELECT failed_logins, failure_window_start, locked_at, password_hash \
             FROM users WHERE username = $1 FOR UPDATE",
            &[&name],
        ))?;
        Ok(row.map(|r| {
            (
                FailureState {
                    count: u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX),
                    window_start: r.get::<_, Option<i64>>(1).map(Timestamp),
                    locked_at: r.get::<_, Option<i64>>(2).map(Timestamp),
                },
                r.get(3),
            )
        }))
    }

    fn insert_user(&self, new: &NewUser, now: Timestamp) -> Result<User, StoreError> {
        let name = new.username.as_str();
        let uid = new.uid.map(i64::from);
        let role = new.role.to_string();
        let expires = new.expires.map(|d| d.to_string());
        let pending = new.pending.map(Pending::as_str);
        let row = self.wait(self.tx.query_opt(
            "INSERT INTO users (username, password_hash, email, full_name, uid, \
             owns_system_account, created_at, updated_at, password_changed_at, role, expires_on, pending) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, $8, $9, $10) \
             ON CONFLICT (username) DO NOTHING RETURNING id",
            &[
                &name,
                &new.password_hash,
                &new.email,
                &new.full_name,
                &uid,
                &new.owns_system_account,
                &now.0,
                &role,
                &expires,
                &pending,
            ],
        ))?;
        let Some(row) = row else {
            return Err(StoreError::UserExists(name.into()));
        };
        let id: i64 = row.get(0);
        let a = &new.allocation;
        self.execute(
            "INSERT INTO resource_allocations (user_id, cpu_limit, mem_limit, disk_quota, tasks_limit, gpus) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &a.cpu.cores(),
                &a.memory.to_string(),
                &a.disk.to_string(),
                &a.tasks.to_string(),
                &a.gpus.to_string(),
            ],
        )?;
        Transaction::user(self, name)
    }

    fn update_user(
        &self,
        name: &str,
        changes: &UserChanges,
        now: Timestamp,
    ) -> Result<Value, StoreError> {
        let plan = changes.plan();
        if plan.ends_sessions {
            // Disabled: their API sessions end now, not at expiry.
            self.delete_api_sessions_of(name)?;
        }
        let user_id = self.user_id(name)?;
        let boxed = |field: Field| -> Box<dyn ToSql + Sync> {
            match field {
                Field::Text(text) => Box::new(text),
                Field::Bool(b) => Box::new(b),
                Field::Real(real) => Box::new(real),
            }
        };
        let mut user_sets: Vec<(&str, Box<dyn ToSql + Sync>)> =
            plan.user.into_iter().map(|(c, f)| (c, boxed(f))).collect();
        user_sets.push(("updated_at", Box::new(now.0)));
        let alloc_sets: Vec<(&str, Box<dyn ToSql + Sync>)> = plan
            .allocation
            .into_iter()
            .map(|(c, f)| (c, boxed(f)))
            .collect();
        for (table, key, sets) in [
            ("users", "id", user_sets),
            ("resource_allocations", "user_id", alloc_sets),
        ] {
            if sets.is_empty() {
                continue;
            }
            let assignments: Vec<String> = sets
                .iter()
                .enumerate()
                .map(|(i, (col, _))| format!("{col} = ${}", i + 2))
                .collect();
            let sql = format!(
                "UPDATE {table} SET {} WHERE {key} = $1",
                assignments.join(", ")
            );
            let mut params: Vec<Param<'_>> = vec![&user_id];
            params.extend(sets.iter().map(|(_, v)| &**v as Param<'_>));
            self.execute(&sql, &params)?;
        }
        Ok(Value::Object(plan.detail))
    }

    fn set_password_hash(&self, name: &str, hash: &str, now: Timestamp) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE username = $1",
            &[&name, &hash, &now.0],
            name,
        )?;
        self.delete_api_sessions_of(name).map(|_| ())
    }

    fn replace_hash(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET password_hash = $2 WHERE username = $1",
            &[&name, &hash],
            name,
        )
    }

    fn set_pending(&self, name: &str, pending: Option<Pending>) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET pending = $2 WHERE username = $1",
            &[&name, &pending.map(Pending::as_str)],
            name,
        )
    }

    fn set_system_account(&self, name: &str, uid: u32, owned: bool) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET uid = $2, owns_system_account = $3 WHERE username = $1",
            &[&name, &i64::from(uid), &owned],
            name,
        )
    }

    fn set_failures(
        &self,
        name: &str,
        state: &FailureState,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET failed_logins = $2, failure_window_start = $3, locked_at = $4 WHERE username = $1",
            &[
                &name,
                &i64::from(state.count),
                &state.window_start.map(|t| t.0),
                &state.locked_at.map(|t| t.0),
            ],
            name,
        )
    }

    fn record_login(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET last_login = $2, failed_logins = 0, failure_window_start = NULL, \
             locked_at = NULL WHERE username = $1",
            &[&name, &now.0],
            name,
        )
    }

    fn record_logout(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET last_logout = $2 WHERE username = $1",
            &[&name, &now.0],
            name,
        )
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.update_one("DELETE FROM users WHERE username = $1", &[&name], name)
    }

    fn audit(
        &self,
        now: Timestamp,
        actor: &str,
        action: &str,
        username: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO audit_log (at, actor, action, username, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&now.0, &actor, &action, &username, &detail.to_string()],
        )
        .map(drop)
    }

    fn insert_api_session(
        &self,
        token_hash: &str,
        name: &str,
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        match self.execute(
            "INSERT INTO api_sessions (token_hash, user_id, created_at, expires_at) \
             SELECT $1, id, $3, $4 FROM users WHERE username = $2",
            &[&token_hash, &name, &now.0, &expires.0],
        )? {
            1 => Ok(()),
            _ => Err(StoreError::UserNotFound(name.into())),
        }
    }

    fn delete_api_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        self.execute(
            "DELETE FROM api_sessions WHERE token_hash = $1",
            &[&token_hash],
        )
        .map(|n| n > 0)
    }

    fn delete_api_sessions_of(&self, name: &str) -> Result<usize, StoreError> {
        self.execute(
            "DELETE FROM api_sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)",
            &[&name],
        )
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn prune_api_sessions(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.execute("DELETE FROM api_sessions WHERE expires_at <= $1", &[&now.0])
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn insert_samples(&self, samples: &[Sample]) -> Result<usize, StoreError> {
        let insert = self.wait(self.tx.prepare(
            "INSERT INTO usage_samples \
             (node, user_id, at, cpu_nsec, memory_bytes, tasks, disk_bytes, gpu_memory_bytes) \
             SELECT $8, id, $2, $3, $4, $5, $6, $7 FROM users WHERE username = $1",
        ))?;
        let mut inserted = 0;
        for s in samples {
            inserted += self.wait(self.tx.execute(
                &insert,
                &[
                    &s.username,
                    &s.at.0,
                    &stored(s.cpu_nsec),
                    &stored(s.memory_bytes),
                    &stored(s.tasks),
                    &stored(s.disk_bytes),
                    &stored(s.gpu_memory_bytes),
                    &self.node,
                ],
            ))?;
        }
        Ok(usize::try_from(inserted).unwrap_or(usize::MAX))
    }

    fn prune_samples(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        let by_age = self.execute(
            "DELETE FROM usage_samples WHERE node = $1 AND at < $2",
            &[&self.node, &oldest.0],
        )?;
        let count: i64 = self
            .wait(self.tx.query_one(
                "SELECT count(*) FROM usage_samples WHERE node = $1",
                &[&self.node],
            ))?
            .get(0);
        let over = u64::try_from(count).unwrap_or(0).saturating_sub(max_rows);
        let by_count = if over > 0 {
            self.execute(
                "DELETE FROM usage_samples WHERE id IN \
                 (SELECT id FROM usage_samples WHERE node = $1 ORDER BY at, id LIMIT $2)",
                &[&self.node, &i64::try_from(over).unwrap_or(i64::MAX)],
            )?
        } else {
            0
        };
        Ok(by_age + by_count)
    }

    fn count(&self, counter: Counter) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO counters (node, name, value) VALUES ($1, $2, 1) \
             ON CONFLICT (node, name) DO UPDATE SET value = counters.value + 1",
            &[&self.node, &counter.name()],
        )
        .map(drop)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let Self {
            tx,
            rt,
            target,
            timeout,
            ..
        } = *self;
        wait_on(rt, target, timeout, tx.commit())
    }
}
