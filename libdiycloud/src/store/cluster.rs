//! The cluster store: PostgreSQL shared by the nodes, and this node's SQLite
//! cache of the records logins need, so logins survive a network cut.
//!
//! Online (the server answered within `connect_timeout`):
//! - everything reads and writes the server;
//! - every lookup of one user refreshes (or, for a user the server no
//!   longer has, removes) that user's copy in the cache, and
//!   [`ClusterStore::refresh_cache`] copies the whole user base;
//! - login events the node counted while offline are replayed into the
//!   server first (see [`ClusterStore::merge_offline`]).
//!
//! Offline (the network says the server is not there, within
//! `connect_timeout`, AND this node's probe has found it so):
//! - a login never decides alone that the server is gone: a setuid client
//!   runs under its caller's limits and signals (`ulimit -n`, SIGSTOP),
//!   which can fail or stall its own connect. The cache answers only while
//!   the probe (`slicectl cache refresh`, root's timer) has recorded an
//!   outage that no later probe ended, and only while its last full
//!   refresh is younger than `cache_max_age`; otherwise the login is
//!   refused. Local failures (descriptors, memory, TLS verification, the
//!   server's refusal) are never an outage;
//! - reads of users come from the cache;
//! - a login's bookkeeping (failures and lockout, the login and logout
//!   times, counters, its audit lines) is written to the cache and queued;
//! - every other write fails with [`StoreError::Offline`] before it
//!   changes anything, so no admin change is half made.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::postgres::PgStore;
use super::sqlite::{CacheState, SqliteStore, SqliteTx};
use super::{
    AuditEntry, Backend, GpuUseUpdate, InitReport, NewUser, PostgresSettings, StoreError,
    Transaction, UserChanges,
};
use crate::model::events::LimitEvent;
use crate::model::gpu::GpuUse;
use crate::model::history::{Counter, Sample};
use crate::model::lockout::{FailureState, LockoutPolicy};
use crate::model::time::Timestamp;
use crate::model::user::{Pending, User};

/// How long a process keeps using a store that lost its server before it
/// tries the server again: the hooks of one login (auth, account, session)
/// wait for an unreachable server once, not once each, and a long-lived
/// process (a JupyterHub) does not wait at every login of an outage.
const RETRY_SERVER_AFTER: Duration = Duration::from_secs(30);

/// What [`ClusterStore::merge_offline`] replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeReport {
    pub events: usize,
    pub failures: usize,
}

/// What [`ClusterStore::refresh_cache`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshReport {
    pub users: usize,
    pub removed: u64,
}

pub struct ClusterStore {
    /// `None` when the server could not be reached at open.
    server: Option<PgStore>,
    /// Why the server is not used: it could not be reached at open, or a
    /// call on it broke off (then the cache answers from there on).
    offline_why: RefCell<Option<String>>,
    /// When the server was found unreachable.
    offline_since: Cell<Option<Instant>>,
    /// `None` when the cache file cannot be used (then online only).
    cache: RefCell<Option<SqliteStore>>,
    cache_error: Option<String>,
    target: String,
    lockout: LockoutPolicy,
    cache_max_age: Duration,
    /// What opening merged (offline events of this node).
    merged_at_open: MergeReport,
}

/// Opens the cache, creating it (0600 in a 0700 directory) if need be.
fn open_cache(path: &Path) -> Result<SqliteStore, StoreError> {
    let store = match SqliteStore::open(path) {
        Ok(store) => store,
        Err(
            StoreError::Missing(_) | StoreError::NotInitialised(_) | StoreError::Outdated { .. },
        ) => SqliteStore::init(path)?.0,
        Err(e) => return Err(e),
    };
    store.ensure_cache_tables()?;
    Ok(store)
}

/// Whether a cache may stand in for a server this process cannot reach:
/// the node's probe found the server unreachable too, and the cache's last
/// full refresh is no older than `max_age`. Otherwise, why not (the login
/// is refused).
fn cache_may_answer(
    cache: Option<&SqliteStore>,
    cache_error: Option<&str>,
    max_age: Duration,
) -> Result<(), String> {
    let state = match cache {
        Some(cache) => cache.cache_state().map_err(|e| e.to_string()),
        None => Err(cache_error.unwrap_or_default().to_owned()),
    }
    .map_err(|e| format!("the node's cache cannot be used: {e}"))?;
    if state.outage_since.is_none() {
        return Err("this node's probe has not found the server unreachable \
             (the cache answers only during an outage that `slicectl cache refresh`, \
             run by diycloud-cache-refresh.timer, has seen)"
            .into());
    }
    let max = max_age.as_secs();
    match state.refreshed_at.map(|at| now().0.saturating_sub(at.0)) {
        Some(age) if u64::try_from(age).is_ok_and(|age| age <= max) => Ok(()),
        Some(age) => Err(format!(
            "the cache's last full refresh is {age}s old, older than \
             [postgres] cache_max_age ({max}s)"
        )),
        None => Err("the cache was never refreshed whole (`slicectl cache refresh`)".into()),
    }
}

/// `e` (the server unreachable), with why the cache may not answer.
fn refused_cache(e: StoreError, refusal: &str) -> StoreError {
    match e {
        StoreError::Offline { target, why, what } => StoreError::Offline {
            target,
            why: format!("{why}; and {refusal}"),
            what,
        },
        e => e,
    }
}

/// Whether the copy holds what the server has, but for the login and
/// logout times (which every login changes, and no offline login needs).
fn same_but_login_times(server: &User, copy: &User) -> bool {
    let mut copy = copy.clone();
    copy.last_login = server.last_login;
    copy.last_logout = server.last_logout;
    copy == *server
}

// The adapter's own clock, like the network timeouts it already keeps: the
// cache's age and when to try the server again are facts of the cache, not
// of the model, and no caller has a time to hand in at a lookup.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

#[allow(clippy::disallowed_methods)]
fn monotonic_now() -> Instant {
    Instant::now()
}

impl ClusterStore {
    /// Connects to the server (schema current) or, when it cannot be
    /// reached in time, opens the cache alone. A server that answers with a
    /// refusal (password, schema) is an error: the cache never hides it.
    pub fn open(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let (cache, cache_error) = match open_cache(&settings.cache) {
            Ok(cache) => (Some(cache), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut store = Self {
            server: None,
            offline_why: RefCell::new(None),
            offline_since: Cell::new(None),
            cache: RefCell::new(cache),
            cache_error,
            target: settings.url.clone(),
            lockout: settings.lockout,
            cache_max_age: settings.cache_max_age,
            merged_at_open: MergeReport::default(),
        };
        match PgStore::open(settings) {
            Ok(server) => {
                store.server = Some(server);
                // Best effort: a failed merge stays queued for the next open.
                store.merged_at_open = store.merge_offline().unwrap_or_default();
            }
            Err(StoreError::Offline { why, .. }) => {
                if let Err(refusal) = store.cache_may_answer() {
                    return Err(StoreError::Offline {
                        target: store.target,
                        why: format!("{why}; and {refusal}"),
                        what: "logging in",
                    });
                }
                *store.offline_why.get_mut() = Some(why);
                store.offline_since.set(Some(monotonic_now()));
            }
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    /// The probe of an outage (`slicectl cache refresh`, run by root from
    /// a timer): connects like [`ClusterStore::open`], and records in the
    /// cache what it found. The network's answer that the server is not
    /// there starts an outage (the cache may then answer logins); reaching
    /// the server ends it. Any other failure changes nothing.
    pub fn probe(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let mut cache = open_cache(&settings.cache)?;
        let found = PgStore::open(settings);
        match &found {
            Ok(_) => cache.write(|tx| tx.clear_cache_time("outage_since"))?,
            Err(StoreError::Offline { .. }) => {
                if cache.cache_state()?.outage_since.is_none() {
                    cache.write(|tx| tx.set_cache_time("outage_since", now()))?;
                }
            }
            Err(_) => {}
        }
        let mut store = Self::online(settings, found?, cache);
        store.merged_at_open = store.merge_offline().unwrap_or_default();
        Ok(store)
    }

    /// A store on a server it reached, with the node's cache.
    fn online(settings: &PostgresSettings, server: PgStore, cache: SqliteStore) -> Self {
        Self {
            server: Some(server),
            offline_why: RefCell::new(None),
            offline_since: Cell::new(None),
            cache: RefCell::new(Some(cache)),
            cache_error: None,
            target: settings.url.clone(),
            lockout: settings.lockout,
            cache_max_age: settings.cache_max_age,
            merged_at_open: MergeReport::default(),
        }
    }

    fn cache_may_answer(&self) -> Result<(), String> {
        cache_may_answer(
            self.cache.borrow().as_ref(),
            self.cache_error.as_deref(),
            self.cache_max_age,
        )
    }

    /// A call on the server broke off with `e` (unreachable): the cache
    /// answers from now on if it may; otherwise `e`, with the reason.
    fn fall_back(&self, e: StoreError) -> Result<(), StoreError> {
        match self.cache_may_answer() {
            Ok(()) => {
                self.lose_server(&e);
                Ok(())
            }
            Err(refusal) => Err(refused_cache(e, &refusal)),
        }
    }

    /// Creates or migrates the server's schema, and the node's cache.
    pub fn init(settings: &PostgresSettings) -> Result<(Self, InitReport), StoreError> {
        let (server, report) = PgStore::init(settings)?;
        let cache = open_cache(&settings.cache)?;
        Ok((Self::online(settings, server, cache), report))
    }

    /// What opening the store merged into the server.
    pub fn merged_at_open(&self) -> MergeReport {
        self.merged_at_open
    }

    /// Whether the server is in use.
    pub fn is_online(&self) -> bool {
        self.live().is_some()
    }

    /// Why the server is not used, when it is not.
    pub fn offline_reason(&self) -> Option<String> {
        self.offline_why.borrow().clone()
    }

    /// The server, unless it could not be reached or broke off.
    fn live(&self) -> Option<&PgStore> {
        self.server
            .as_ref()
            .filter(|_| self.offline_why.borrow().is_none())
    }

    /// A call on the server broke off (`e` is unreachable): the cache
    /// answers from now on.
    fn lose_server(&self, e: &StoreError) {
        if let StoreError::Offline { why, .. } = e {
            *self.offline_why.borrow_mut() = Some(why.clone());
            self.offline_since.set(Some(monotonic_now()));
        }
    }

    /// `on_server` where the server answers, else `on_cache`.
    fn read<T>(
        &self,
        on_server: impl FnOnce(&PgStore) -> Result<T, StoreError>,
        on_cache: impl FnOnce(&SqliteStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(server) = self.live() {
            match on_server(server) {
                Err(e) if e.is_unreachable() => self.fall_back(e)?,
                answer => return answer,
            }
        }
        self.cached(on_cache)
    }

    /// `f` on the server, which only it can answer.
    fn server_only<T>(
        &self,
        f: impl FnOnce(&PgStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let server = self.live().ok_or_else(|| self.offline("this"))?;
        f(server).inspect_err(|e| self.lose_server(e))
    }

    /// What the cache holds (or why it cannot be used).
    pub fn cache_state(&self) -> Result<CacheState, String> {
        match &*self.cache.borrow() {
            Some(cache) => cache.cache_state().map_err(|e| e.to_string()),
            None => Err(self.cache_error.clone().unwrap_or_default()),
        }
    }

    fn offline(&self, what: &'static str) -> StoreError {
        StoreError::Offline {
            target: self.target.clone(),
            why: self.offline_why.borrow().clone().unwrap_or_default(),
            what,
        }
    }

    /// Runs a write on the cache; best effort where the caller says so.
    fn with_cache_tx(
        &self,
        f: impl FnOnce(&SqliteTx<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut cache = self.cache.borrow_mut();
        let Some(cache) = cache.as_mut() else {
            return Ok(());
        };
        cache.write(f)
    }

    /// Copies a lookup's answer into the cache where it changed what the
    /// cache holds (best effort: a login never fails because its copy could
    /// not be kept). Most logins change nothing a login needs, and write
    /// nothing.
    fn remember(&self, name: &str, found: &Option<(User, String)>) {
        let cached = self.cached(|cache| cache.credentials(name)).ok().flatten();
        let unchanged = match (found, &cached) {
            (Some((user, hash)), Some((copy, copy_hash))) => {
                hash == copy_hash && same_but_login_times(user, copy)
            }
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return;
        }
        let _ = self.with_cache_tx(|tx| {
            match found {
                Some((user, hash)) => tx.put_user(user, hash)?,
                None => tx.forget_user(name)?,
            }
            tx.set_cache_time("copied_at", now())
        });
    }

    /// Copies the whole user base into the cache, and forgets the users the
    /// server no longer has (what `slicectl cache refresh` runs).
    pub fn refresh_cache(&mut self) -> Result<RefreshReport, StoreError> {
        let everyone = self.server_only(PgStore::all_credentials)?;
        let names: Vec<&str> = everyone.iter().map(|(u, _)| u.username.as_str()).collect();
        let mut removed = 0;
        let mut cache = self.cache.borrow_mut();
        let Some(cache) = cache.as_mut() else {
            return Err(StoreError::Unsupported(format!(
                "the node's cache cannot be used: {}",
                self.cache_error.clone().unwrap_or_default()
            )));
        };
        cache.write(|tx| {
            for (user, hash) in &everyone {
                tx.put_user(user, hash)?;
            }
            removed = tx.forget_users_except(&names)?;
            tx.set_cache_time("refreshed_at", now())
        })?;
        Ok(RefreshReport {
            users: everyone.len(),
            removed,
        })
    }

    /// Replays into the server what this node counted while offline: each
    /// wrong password through the lockout policy (so failures on this node
    /// add to those on the others, and may lock the account everywhere),
    /// logins and logouts, counters and audit lines. One transaction on the
    /// server; the events are forgotten once it committed.
    pub fn merge_offline(&mut self) -> Result<MergeReport, StoreError> {
        let events = match &*self.cache.borrow() {
            Some(cache) => cache.offline_events()?,
            None => return Ok(MergeReport::default()),
        };
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(MergeReport::default());
        };
        let lockout = self.lockout;
        if !self.is_online() {
            return Err(self.offline("merging"));
        }
        let Some(server) = self.server.as_mut() else {
            return Err(StoreError::Unsupported("no server".into()));
        };
        let node = server.node().to_owned();
        let mut report = MergeReport::default();
        {
            let tx = server.begin_tx()?;
            for event in &events {
                let name = event.username.as_str();
                let at = event.at;
                match event.kind.as_str() {
                    "failure" => {
                        if let Some((state, _)) = tx.login_state(name)? {
                            let after = lockout.after_failure(&state, at);
                            tx.set_failures(name, &after, at)?;
                            report.failures += 1;
                        }
                    }
                    "login" => {
                        // Not over failures counted elsewhere after it.
                        if let Some((state, _)) = tx.login_state(name)? {
                            if state.window_start.is_none_or(|w| w <= at) {
                                tx.record_login(name, at)?;
                            }
                        }
                    }
                    "logout" => match tx.record_logout(name, at) {
                        Err(StoreError::UserNotFound(_)) | Ok(()) => {}
                        Err(e) => return Err(e),
                    },
                    "count" => {
                        let wanted = event.detail.get("counter").and_then(Value::as_str);
                        if let Some(counter) =
                            Counter::ALL.into_iter().find(|c| Some(c.name()) == wanted)
                        {
                            tx.count(counter)?;
                        }
                    }
                    "audit" => {
                        let field = |key: &str| {
                            event
                                .detail
                                .get(key)
                                .and_then(Value::as_str)
                                .unwrap_or("?")
                                .to_owned()
                        };
                        let mut detail = event.detail.get("detail").cloned().unwrap_or(json!({}));
                        if let Value::Object(map) = &mut detail {
                            map.insert("offline_on".into(), json!(node));
                        }
                        tx.audit(at, &field("actor"), &field("action"), name, &detail)?;
                    }
                    _ => {}
                }
                report.events += 1;
            }
            Transaction::commit(Box::new(tx))?;
        }
        if let Some(cache) = self.cache.borrow_mut().as_mut() {
            cache.write(|tx| tx.delete_offline_events(last))?;
        }
        Ok(report)
    }
}

impl Backend for ClusterStore {
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let mut from_server = false;
        let found = self.read(
            |server| {
                from_server = true;
                server.credentials(name)
            },
            |cache| cache.credentials(name),
        )?;
        if from_server && self.is_online() {
            self.remember(name, &found);
        }
        Ok(found)
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|server| server.users(), |cache| cache.users())
    }

    fn sample_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.read(
            |server| server.sample_hash(name),
            |cache| cache.sample_hash(name),
        )
    }

    /// Offline: the lines this node wrote while it was (the rest is on
    /// the server).
    fn audit_log(&self, name: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(
            |server| server.audit_log(name, limit),
            |cache| cache.audit_log(name, limit),
        )
    }

    fn api_session(&self, token_hash: &str, now: Timestamp) -> Result<Option<User>, StoreError> {
        self.server_only(|server| server.api_session(token_hash, now))
    }

    fn samples(
        &self,
        user: Option<&str>,
        from: Timestamp,
        to: Timestamp,
        bucket: u64,
    ) -> Result<Vec<Sample>, StoreError> {
        self.server_only(|server| server.samples(user, from, to, bucket))
    }

    fn sample_count(&self) -> Result<u64, StoreError> {
        self.server_only(|server| server.sample_count())
    }

    fn counter(&self, counter: Counter) -> Result<u64, StoreError> {
        self.server_only(|server| server.counter(counter))
    }

    fn limit_events(&self, user: Option<&str>, limit: u32) -> Result<Vec<LimitEvent>, StoreError> {
        self.server_only(|server| server.limit_events(user, limit))
    }

    fn gpu_use(&self, user: Option<&str>) -> Result<Vec<GpuUse>, StoreError> {
        self.server_only(|server| server.gpu_use(user))
    }

    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        if self.is_online() {
            if let Some(server) = self.server.as_mut() {
                match server.begin_tx() {
                    Ok(tx) => return Ok(Box::new(tx)),
                    Err(e) if e.is_unreachable() => {
                        // (Field by field: `server` still holds `self`.)
                        let may = cache_may_answer(
                            self.cache.get_mut().as_ref(),
                            self.cache_error.as_deref(),
                            self.cache_max_age,
                        );
                        if let Err(refusal) = may {
                            return Err(refused_cache(e, &refusal));
                        }
                        if let StoreError::Offline { why, .. } = e {
                            *self.offline_why.get_mut() = Some(why);
                            self.offline_since.set(Some(monotonic_now()));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let target = self.target.as_str();
        let why = self.offline_why.get_mut().as_deref().unwrap_or_default();
        let cache = self
            .cache
            .get_mut()
            .as_mut()
            .ok_or_else(|| StoreError::Offline {
                target: target.into(),
                why: why.into(),
                what: "this",
            })?;
        Ok(Box::new(OfflineTx {
            tx: cache.begin_tx()?,
            target,
            why,
        }))
    }

    fn after_write(&mut self) {
        if !self.is_online() {
            if let Some(cache) = self.cache.get_mut().as_mut() {
                Backend::after_write(cache);
            }
        }
    }

    fn is_reusable(&self) -> bool {
        match self.live() {
            Some(server) => server.is_reusable(),
            // Offline: the cache serves this process a while, then the
            // server is tried again; at once when the probe ended the
            // outage (or the cache grew too old) meanwhile.
            None => {
                self.offline_since
                    .get()
                    .is_some_and(|since| since.elapsed() < RETRY_SERVER_AFTER)
                    && self.cache_may_answer().is_ok()
            }
        }
    }

    fn schema_is_current(&self) -> bool {
        self.live().is_some_and(Backend::schema_is_current)
    }

    fn describe(&self) -> String {
        self.target.clone()
    }

    fn as_cluster(&self) -> Option<&ClusterStore> {
        Some(self)
    }

    fn as_cluster_mut(&mut self) -> Option<&mut ClusterStore> {
        Some(self)
    }
}

impl ClusterStore {
    fn cached<T>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &*self.cache.borrow() {
            Some(cache) => f(cache),
            None => Err(self.offline("this")),
        }
    }
}

/// A write while the server is unreachable: a login's bookkeeping goes to
/// the cache and is queued for the server; anything else is refused.
struct OfflineTx<'a> {
    tx: SqliteTx<'a>,
    target: &'a str,
    why: &'a str,
}

impl OfflineTx<'_> {
    fn refused<T>(&self) -> Result<T, StoreError> {
        Err(StoreError::Offline {
            target: self.target.into(),
            why: self.why.into(),
            what: "a change to the user base",
        })
    }
}

impl Transaction for OfflineTx<'_> {
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        self.tx.credentials(name)
    }
    fn login_state(&self, name: &str) -> Result<Option<(FailureState, String)>, StoreError> {
        self.tx.login_state(name)
    }
    fn set_failures(
        &self,
        name: &str,
        state: &FailureState,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.tx.set_failures(name, state)?;
        self.tx.add_offline_event(now, name, "failure", &json!({}))
    }
    fn record_login(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.tx.record_login(name, now)?;
        self.tx.add_offline_event(now, name, "login", &json!({}))
    }
    fn record_logout(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        self.tx.record_logout(name, now)?;
        self.tx.add_offline_event(now, name, "logout", &json!({}))
    }
    fn audit(
        &self,
        now: Timestamp,
        actor: &str,
        action: &str,
        username: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        self.tx.audit(now, actor, action, username, detail)?;
        self.tx.add_offline_event(
            now,
            username,
            "audit",
            &json!({"actor": actor, "action": action, "detail": detail}),
        )
    }
    fn count(&self, counter: Counter) -> Result<(), StoreError> {
        self.tx.count(counter)?;
        self.tx.add_offline_event(
            Timestamp(0),
            "",
            "count",
            &json!({"counter": counter.name()}),
        )
    }
    fn replace_hash(&self, _name: &str, _hash: &str) -> Result<(), StoreError> {
        // A cost upgrade waits for the server: a hash written here could
        // overwrite a password changed there meanwhile.
        Ok(())
    }
    fn insert_user(&self, _new: &NewUser, _now: Timestamp) -> Result<User, StoreError> {
        self.refused()
    }
    fn update_user(
        &self,
        _name: &str,
        _changes: &UserChanges,
        _now: Timestamp,
    ) -> Result<Value, StoreError> {
        self.refused()
    }
    fn set_password_hash(&self, _: &str, _: &str, _: Timestamp) -> Result<(), StoreError> {
        self.refused()
    }
    fn set_pending(&self, _: &str, _: Option<Pending>) -> Result<(), StoreError> {
        self.refused()
    }
    fn set_system_account(&self, _: &str, _: u32, _: bool) -> Result<(), StoreError> {
        self.refused()
    }
    fn delete_user(&self, _: &str) -> Result<(), StoreError> {
        self.refused()
    }
    fn insert_api_session(
        &self,
        _: &str,
        _: &str,
        _: Timestamp,
        _: Timestamp,
    ) -> Result<(), StoreError> {
        self.refused()
    }
    fn delete_api_session(&self, _: &str) -> Result<bool, StoreError> {
        self.refused()
    }
    fn delete_api_sessions_of(&self, _: &str) -> Result<usize, StoreError> {
        self.refused()
    }
    fn prune_api_sessions(&self, _: Timestamp) -> Result<usize, StoreError> {
        self.refused()
    }
    fn insert_samples(&self, _: &[Sample]) -> Result<usize, StoreError> {
        self.refused()
    }
    fn prune_samples(&self, _: Timestamp, _: u64) -> Result<u64, StoreError> {
        self.refused()
    }
    fn record_limit_events(&self, _: &[LimitEvent]) -> Result<usize, StoreError> {
        self.refused()
    }
    fn prune_limit_events(&self, _: Timestamp, _: u64) -> Result<u64, StoreError> {
        self.refused()
    }
    fn prune_audit_log(&self, _: Timestamp, _: u64) -> Result<u64, StoreError> {
        self.refused()
    }
    fn record_gpu_use(&self, _: &str, _: Timestamp, _: &[GpuUseUpdate]) -> Result<(), StoreError> {
        self.refused()
    }
    fn take_unshown_events(&self, _: &str) -> Result<Vec<LimitEvent>, StoreError> {
        // The events are on the server: the notice waits for it.
        Ok(Vec::new())
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit_tx()
    }
}
