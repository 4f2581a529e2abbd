//! A write transaction on PostgreSQL.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use serde_json::Value;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::{prepared, user_from_row, wait_on, Statements, SELECT_USER};
use crate::model::events::{LimitEvent, MERGE_WINDOW_SECS};
use crate::model::history::{Counter, Sample};
use crate::model::lockout::FailureState;
use crate::model::time::Timestamp;
use crate::model::user::{Pending, User};
use crate::store::records::{limits_text, processes_text, Field};
use crate::store::{GpuUseUpdate, NewUser, StoreError, Transaction, UserChanges};

type Param<'p> = &'p (dyn ToSql + Sync);
/// A parameter the queue owns until it sends it.
type Owned = Box<dyn ToSql + Sync + Send>;

/// A write waiting in the queue: sent with the next read or the commit.
struct Queued {
    statement: Statement,
    params: Vec<Owned>,
    /// The user an UPDATE or DELETE must find (no row: `UserNotFound`).
    must_find: Option<String>,
}

/// One statement of a pipeline, running.
type Running<'f> = Pin<Box<dyn Future<Output = Result<Answer, tokio_postgres::Error>> + 'f>>;

/// What one statement of a pipeline answered.
enum Answer {
    Count(u64),
    Rows(Vec<Row>),
}

/// A transaction that spends as few round trips as it can: `BEGIN` and the
/// writes whose only answer is a row count wait in a queue, and go out
/// together with the next read or with the `COMMIT` (PostgreSQL answers a
/// pipeline in order). A login's bookkeeping takes two round trips, not
/// five. Rolls back when dropped uncommitted.
pub struct PgTx<'a> {
    client: &'a Client,
    rt: &'a Runtime,
    target: &'a str,
    timeout: Duration,
    node: &'a str,
    statements: &'a Statements,
    queue: RefCell<Vec<Queued>>,
    /// Whether `BEGIN` went out (then a drop must roll back).
    begun: Cell<bool>,
    finished: Cell<bool>,
}

/// An owned text parameter.
fn o(text: &str) -> Owned {
    Box::new(text.to_owned())
}

fn stored(value: Option<u64>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Polls every future in turn until all are done: their requests go out in
/// order in one write, their answers come back in order.
async fn in_order<'f>(futures: Vec<Running<'f>>) -> Vec<Result<Answer, tokio_postgres::Error>> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut answers: Vec<Option<Result<Answer, tokio_postgres::Error>>> =
        futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, answer) in futures.iter_mut().zip(answers.iter_mut()) {
            if let Some(f) = future {
                match f.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        *answer = Some(result);
                        *future = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    answers.into_iter().flatten().collect()
}

impl<'a> PgTx<'a> {
    pub(super) fn new(
        client: &'a Client,
        rt: &'a Runtime,
        target: &'a str,
        timeout: Duration,
        node: &'a str,
        statements: &'a Statements,
    ) -> Result<Self, StoreError> {
        let tx = Self {
            client,
            rt,
            target,
            timeout,
            node,
            statements,
            queue: RefCell::new(Vec::new()),
            begun: Cell::new(false),
            finished: Cell::new(false),
        };
        tx.queue("BEGIN", Vec::new(), None)?;
        Ok(tx)
    }

    fn wait<T>(
        &self,
        f: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        wait_on(self.rt, self.target, self.timeout, f)
    }

    /// `sql` prepared on this connection (once; see `PgStore::statements`).
    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        prepared(self.statements, sql, || self.wait(self.client.prepare(sql)))
    }

    /// Queues a write whose answer is only a row count.
    fn queue(
        &self,
        sql: &str,
        params: Vec<Owned>,
        must_find: Option<&str>,
    ) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        self.queue.borrow_mut().push(Queued {
            statement,
            params,
            must_find: must_find.map(str::to_owned),
        });
        Ok(())
    }

    /// Sends the queue and then `last` (if any) in one pipeline; the answer
    /// to `last`. The first failure of the pipeline is the error.
    fn flush(
        &self,
        last: Option<(&Statement, &[Param<'_>], bool)>,
    ) -> Result<Option<Answer>, StoreError> {
        let queued = std::mem::take(&mut *self.queue.borrow_mut());
        if queued.is_empty() && last.is_none() {
            return Ok(None);
        }
        let client = self.client;
        let refs: Vec<Vec<Param<'_>>> = queued
            .iter()
            .map(|q| q.params.iter().map(|b| &**b as Param<'_>).collect())
            .collect();
        let mut futures: Vec<Running<'_>> = Vec::new();
        for (q, params) in queued.iter().zip(&refs) {
            futures.push(Box::pin(async move {
                client
                    .execute(&q.statement, params)
                    .await
                    .map(Answer::Count)
            }));
        }
        if let Some((statement, params, rows)) = last {
            futures.push(Box::pin(async move {
                if rows {
                    client.query(statement, params).await.map(Answer::Rows)
                } else {
                    client.execute(statement, params).await.map(Answer::Count)
                }
            }));
        }
        // BEGIN heads the first flush.
        self.begun.set(true);
        let target = self.target;
        let mut answers = match self
            .rt
            .block_on(async { tokio::time::timeout(self.timeout, in_order(futures)).await })
        {
            Err(_) => return Err(super::timed_out(target, self.timeout)),
            Ok(answers) => answers,
        };
        let last_answer = if last.is_some() { answers.pop() } else { None };
        for (q, answer) in queued.iter().zip(answers) {
            match answer {
                Err(e) => return Err(super::pg(target, &e)),
                Ok(Answer::Count(0)) if q.must_find.is_some() => {
                    return Err(StoreError::UserNotFound(
                        q.must_find.clone().unwrap_or_default(),
                    ))
                }
                Ok(_) => {}
            }
        }
        last_answer.transpose().map_err(|e| super::pg(target, &e))
    }

    /// A read, sent after what is queued.
    fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        match self.flush(Some((&statement, params, true)))? {
            Some(Answer::Rows(rows)) => Ok(rows),
            _ => Ok(Vec::new()),
        }
    }

    fn query_opt(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// A write whose row count is needed now.
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        match self.flush(Some((&statement, params, false)))? {
            Some(Answer::Count(n)) => Ok(n),
            _ => Ok(0),
        }
    }

    /// Deletes this node's rows of `table` (with `node`, `at` and `id`)
    /// from before `oldest`, then its oldest past `max_rows`. Returns how
    /// many went.
    fn prune(
        &self,
        table: &'static str,
        oldest: Timestamp,
        max_rows: u64,
    ) -> Result<u64, StoreError> {
        let by_age = self.execute(
            &format!("DELETE FROM {table} WHERE node = $1 AND at < $2"),
            &[&self.node, &oldest.0],
        )?;
        let count: i64 = self
            .query_opt(
                &format!("SELECT count(*) FROM {table} WHERE node = $1"),
                &[&self.node],
            )?
            .map_or(0, |r| r.get(0));
        let over = u64::try_from(count).unwrap_or(0).saturating_sub(max_rows);
        let by_count = if over > 0 {
            self.execute(
                &format!(
                    "DELETE FROM {table} WHERE id IN \
                     (SELECT id FROM {table} WHERE node = $1 ORDER BY at, id LIMIT $2)"
                ),
                &[&self.node, &i64::try_from(over).unwrap_or(i64::MAX)],
            )?
        } else {
            0
        };
        Ok(by_age + by_count)
    }

    /// An UPDATE or DELETE of one user's row, queued: none is `UserNotFound`
    /// (reported by the flush that sends it).
    fn update_one(&self, sql: &str, params: Vec<Owned>, name: &str) -> Result<(), StoreError> {
        self.queue(sql, params, Some(name))
    }

    fn user_id(&self, name: &str) -> Result<i64, StoreError> {
        self.query_opt("SELECT id FROM users WHERE username = $1", &[&name])?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::UserNotFound(name.into()))
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.begun.get() && !self.finished.get() {
            // Bounded, like every wait: a server gone closes the
            // connection, which rolls back on its side anyway.
            let _ = self.wait(self.client.batch_execute("ROLLBACK"));
        }
    }
}

impl Transaction for PgTx<'_> {
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = self.query_opt(&format!("{SELECT_USER} WHERE u.username = $1"), &[&name])?;
        row.map(|r| user_from_row(&r, self.target)).transpose()
    }

    fn login_state(&self, name: &str) -> Result<Option<(FailureState, String)>, StoreError> {
        // FOR UPDATE: concurrent logins of one user (on any node) count
        // their failures one after another, never over each other.
        let row = self.query_opt(
            "SELECT failed_logins, failure_window_start, locked_at, password_hash \
             FROM users WHERE username = $1 FOR UPDATE",
            &[&name],
        )?;
        Ok(row.map(|r| {
            (
                FailureState {
                    count: u32::try_from(r.get::<_, i64>("failed_logins")).unwrap_or(u32::MAX),
                    window_start: r.get::<_, Option<i64>>(1).map(Timestamp),
                    locked_at: r.get::<_, Option<i64>>(2).map(Timestamp),
                },
                r.get("password_hash"),
            )
        }))
    }

    fn insert_user(&self, new: &NewUser, now: Timestamp) -> Result<User, StoreError> {
        let name = new.username.as_str();
        let uid = new.uid.map(i64::from);
        let role = new.role.to_string();
        let expires = new.expires.map(|d| d.to_string());
        let pending = new.pending.map(Pending::as_str);
        let row = self.query_opt(
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
        )?;
        let Some(row) = row else {
            return Err(StoreError::UserExists(name.into()));
        };
        let id: i64 = row.get(0);
        self.execute(
            "INSERT INTO resource_allocations (user_id, limits) VALUES ($1, $2::text::jsonb)",
            &[&id, &limits_text(&new.allocation)],
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
            }
        };
        let mut user_sets: Vec<(&str, Box<dyn ToSql + Sync>)> =
            plan.user.into_iter().map(|(c, f)| (c, boxed(f))).collect();
        user_sets.push(("updated_at", Box::new(now.0)));
        let assignments: Vec<String> = user_sets
            .iter()
            .enumerate()
            .map(|(i, (col, _))| format!("{col} = ${}", i + 2))
            .collect();
        let sql = format!("UPDATE users SET {} WHERE id = $1", assignments.join(", "));
        let mut params: Vec<Param<'_>> = vec![&user_id];
        params.extend(user_sets.iter().map(|(_, v)| &**v as Param<'_>));
        self.execute(&sql, &params)?;
        // The changed limits are merged into the stored ones, in the
        // database: a limit changed meanwhile by someone else stays theirs.
        if let Some(limits) = &plan.limits {
            self.execute(
                "UPDATE resource_allocations SET limits = limits || $2::text::jsonb WHERE user_id = $1",
                &[&user_id, limits],
            )?;
        }
        Ok(Value::Object(plan.detail))
    }

    fn set_password_hash(&self, name: &str, hash: &str, now: Timestamp) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE username = $1",
            vec![o(name), o(hash), Box::new(now.0)],
            name,
        )?;
        self.delete_api_sessions_of(name).map(|_| ())
    }

    fn replace_hash(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET password_hash = $2 WHERE username = $1",
            vec![o(name), o(hash)],
            name,
        )
    }

    fn set_pending(&self, name: &str, pending: Option<Pending>) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET pending = $2 WHERE username = $1",
            vec![o(name), Box::new(pending.map(|p| p.as_str().to_owned()))],
            name,
        )
    }

    fn set_system_account(&self, name: &str, uid: u32, owned: bool) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET uid = $2, owns_system_account = $3 WHERE username = $1",
            vec![o(name), Box::new(i64::from(uid)), Box::new(owned)],
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
            vec![
                o(name),
                Box::new(i64::from(state.count)),
                Box::new(state.window_start.map(|t| t.0)),
                Box::new(state.locked_at.map(|t| t.0)),
            ],
            name,
        )
    }

    fn record_login(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET last_login = $2, failed_logins = 0, failure_window_start = NULL, \
             locked_at = NULL WHERE username = $1",
            vec![o(name), Box::new(now.0)],
            name,
        )
    }

    fn record_logout(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.update_one(
            "UPDATE users SET last_logout = $2 WHERE username = $1",
            vec![o(name), Box::new(now.0)],
            name,
        )
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.update_one("DELETE FROM users WHERE username = $1", vec![o(name)], name)
    }

    fn audit(
        &self,
        now: Timestamp,
        actor: &str,
        action: &str,
        username: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        self.queue(
            "INSERT INTO audit_log (at, actor, action, username, detail) VALUES ($1, $2, $3, $4, $5)",
            vec![Box::new(now.0), o(actor), o(action), o(username), Box::new(detail.to_string())],
            None,
        )
    }

    fn prune_audit_log(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        // One log for every node, each of whose servers prunes it: by age,
        // then all but the newest `max_rows` in one statement, so two nodes
        // pruning at once delete no more than one would.
        let by_age = self.execute("DELETE FROM audit_log WHERE at < $1", &[&oldest.0])?;
        let by_count = self.execute(
            "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log ORDER BY at DESC, id DESC OFFSET $1)",
            &[&i64::try_from(max_rows).unwrap_or(i64::MAX)],
        )?;
        Ok(by_age + by_count)
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
        let mut inserted = 0;
        for s in samples {
            inserted += self.execute(
                "INSERT INTO usage_samples \
                 (node, user_id, at, cpu_nsec, memory_bytes, tasks, disk_bytes, gpu_memory_bytes) \
                 SELECT $8, id, $2, $3, $4, $5, $6, $7 FROM users WHERE username = $1",
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
            )?;
        }
        Ok(usize::try_from(inserted).unwrap_or(usize::MAX))
    }

    fn prune_samples(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        self.prune("usage_samples", oldest, max_rows)
    }

    fn count(&self, counter: Counter) -> Result<(), StoreError> {
        self.queue(
            "INSERT INTO counters (node, name, value) VALUES ($1, $2, 1) \
             ON CONFLICT (node, name) DO UPDATE SET value = counters.value + 1",
            vec![o(self.node), o(counter.name())],
            None,
        )
    }

    fn record_limit_events(&self, events: &[LimitEvent]) -> Result<usize, StoreError> {
        let mut recorded = 0;
        for e in events {
            let count = stored(Some(e.count));
            let usec = stored(Some(e.throttled_usec));
            if e.kind.merges() {
                let merged = self.execute(
                    "UPDATE limit_events SET at = greatest(at, $4), count = count + $5, \
                     throttled_usec = throttled_usec + $6, lim = $7 \
                     WHERE id = (SELECT e.id FROM limit_events e JOIN users u ON u.id = e.user_id \
                       WHERE u.username = $1 AND e.node = $2 AND e.kind = $3 AND NOT e.shown \
                       ORDER BY e.at DESC, e.id DESC LIMIT 1) \
                     AND at >= $8",
                    &[
                        &e.username,
                        &e.node,
                        &e.kind.name(),
                        &e.at.0,
                        &count,
                        &usec,
                        &e.limit,
                        &e.first_at.0.saturating_sub(MERGE_WINDOW_SECS),
                    ],
                )?;
                if merged > 0 {
                    recorded += 1;
                    continue;
                }
            }
            let inserted = self.execute(
                "INSERT INTO limit_events \
                 (user_id, node, first_at, at, kind, count, throttled_usec, lim, processes) \
                 SELECT id, $2, $3, $4, $5, $6, $7, $8, $9 FROM users WHERE username = $1",
                &[
                    &e.username,
                    &e.node,
                    &e.first_at.0,
                    &e.at.0,
                    &e.kind.name(),
                    &count,
                    &usec,
                    &e.limit,
                    &processes_text(&e.processes),
                ],
            )?;
            recorded += usize::try_from(inserted).unwrap_or(0);
        }
        Ok(recorded)
    }

    fn prune_limit_events(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        self.prune("limit_events", oldest, max_rows)
    }

    fn take_unshown_events(&self, name: &str) -> Result<Vec<LimitEvent>, StoreError> {
        // One statement: the rows it marks are the rows it returns, even
        // with a watcher writing meanwhile.
        let rows = self.query(
            "WITH taken AS (UPDATE limit_events SET shown = true \
               WHERE NOT shown AND user_id = (SELECT id FROM users WHERE username = $1) \
               RETURNING *) \
             SELECT u.username, e.node, e.first_at, e.at, e.kind, e.count, \
               e.throttled_usec, e.lim, e.processes, false AS shown \
             FROM taken e JOIN users u ON u.id = e.user_id ORDER BY e.at, e.id",
            &[&name],
        )?;
        Ok(rows.iter().map(super::event_from_row).collect())
    }

    fn record_gpu_use(
        &self,
        node: &str,
        now: Timestamp,
        updates: &[GpuUseUpdate],
    ) -> Result<(), StoreError> {
        for u in updates {
            self.execute(
                "INSERT INTO gpu_use (user_id, node, gpu, granted_since, last_used) \
                 SELECT id, $2, $3, $4::bigint, CASE WHEN $5::boolean THEN $4::bigint END \
                 FROM users WHERE username = $1 \
                 ON CONFLICT (user_id, node, gpu) DO UPDATE SET \
                 last_used = CASE WHEN $5::boolean THEN $4::bigint ELSE gpu_use.last_used END",
                &[&u.username, &node, &u.gpu, &now.0, &u.used],
            )?;
        }
        let existing = self.query(
            "SELECT u.username, g.gpu FROM gpu_use g JOIN users u ON u.id = g.user_id \
             WHERE g.node = $1",
            &[&node],
        )?;
        for row in existing {
            let (username, gpu): (String, String) = (row.get(0), row.get(1));
            if !updates
                .iter()
                .any(|u| u.username == username && u.gpu == gpu)
            {
                self.execute(
                    "DELETE FROM gpu_use WHERE node = $1 AND gpu = $2 \
                     AND user_id = (SELECT id FROM users WHERE username = $3)",
                    &[&node, &gpu, &username],
                )?;
            }
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.queue("COMMIT", Vec::new(), None)?;
        self.flush(None)?;
        self.finished.set(true);
        Ok(())
    }
}
