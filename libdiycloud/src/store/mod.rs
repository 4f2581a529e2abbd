//! The store: users, allocations, lockout, audit, API sessions and usage
//! history, behind one interface with two backends.
//!
//! - [`sqlite`]: one database file on the node (the default, embedded).
//! - [`cluster`]: one PostgreSQL database for many nodes ([`postgres`]),
//!   with a node-local SQLite cache that keeps logins working while the
//!   server cannot be reached.
//!
//! Reads go through [`Backend`], writes through [`Store::write`]: one
//! transaction ([`Transaction`]) that commits when the closure returns `Ok`
//! and rolls back otherwise (a dropped transaction rolls back), so no
//! command leaves half a record on either backend.

#[cfg(feature = "postgres")]
pub mod cluster;
#[cfg(feature = "postgres")]
pub mod postgres;
mod records;
pub mod sqlite;

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::model::events::LimitEvent;
use crate::model::gpu::GpuUse;
use crate::model::history::{Counter, Sample};
use crate::model::lockout::{FailureState, LockoutPolicy};
use crate::model::time::Timestamp;
use crate::model::user::{Pending, User};

pub use crate::model::user::UserChanges;
pub use records::{AuditEntry, GpuUseUpdate, NewUser};
pub use sqlite::{APPLICATION_ID, SCHEMA_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {0} does not exist: run `slicectl init` first")]
    Missing(PathBuf),
    #[error("database {0} is not initialised: run `slicectl init` first")]
    NotInitialised(PathBuf),
    #[error("database {path} has schema version {found}, newer than this build's {SCHEMA_VERSION}: upgrade diycloud")]
    TooNew { path: PathBuf, found: u32 },
    #[error("database {path} has schema version {found}, older than this build's {SCHEMA_VERSION}: run `slicectl init` to migrate it")]
    Outdated { path: PathBuf, found: u32 },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create database {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {db}: the record of user {username} has an invalid {field}: {message}")]
    Corrupt {
        db: String,
        username: String,
        field: &'static str,
        message: String,
    },
    #[error("database refused: {0}")]
    Untrusted(#[from] crate::trust::TrustError),
    #[error("{path} is not a diycloud database ({why}); `slicectl init` leaves it alone: if it is a diycloud database whose -wal file was lost, restore a backup (see `slicectl backup`); otherwise move it away or name another path")]
    Foreign { path: PathBuf, why: String },
    #[error("cannot write the backup {path}: {source}")]
    Backup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no such user: {0}")]
    UserNotFound(String),
    /// PostgreSQL answered with an error, or the connection broke.
    #[error("PostgreSQL {target}: {message}")]
    Postgres { target: String, message: String },
    /// PostgreSQL could not be reached; what the node's cache cannot do.
    #[error("PostgreSQL {target} is unreachable ({why}); {what} needs it: try again when it is back (`slicectl doctor` shows the backend)")]
    Offline {
        target: String,
        why: String,
        what: &'static str,
    },
    /// The PostgreSQL schema is missing or of another version.
    #[error("PostgreSQL {target}: {message}")]
    Schema { target: String, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("PostgreSQL password file {path}: {message}")]
    Credentials { path: PathBuf, message: String },
}

impl StoreError {
    /// Whether this is the backend being unreachable (not a refusal or a
    /// broken record): what a caller may fall back on the cache for.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Offline { .. })
    }
}

/// What `slicectl init` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitReport {
    pub created: bool,
    pub from_version: u32,
    pub to_version: u32,
}

/// Where the users live: the config's `db` (or `--db`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file on this node.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by the nodes, with this node's cache.
    Postgres(Box<PostgresSettings>),
}

/// The `[postgres]` settings that go with a `postgresql://` `db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgresql://USER@HOST:PORT/DBNAME[?sslmode=...]`, never a password.
    pub url: String,
    /// A root-only file with the password, if the server asks for one.
    pub password_file: Option<PathBuf>,
    /// The node's SQLite cache of the records logins need.
    pub cache: PathBuf,
    /// How long any one wait on the network may take (connect, each query).
    pub connect_timeout: Duration,
    /// The CA certificates (PEM) a TLS server certificate must chain to.
    pub ca_file: PathBuf,
    /// Replays the failed logins a node counted while offline.
    pub lockout: LockoutPolicy,
    /// The oldest full refresh of the cache that may still log anyone in
    /// during an outage (`[postgres] cache_max_age`).
    pub cache_max_age: Duration,
}

impl Database {
    /// Parses a `db` value: a `postgresql://` (or `postgres://`) URL, or an
    /// absolute path. `postgres` supplies the rest of a URL's settings.
    pub fn parse(text: &str, postgres: &PostgresSettings) -> Result<Self, String> {
        if text.starts_with("postgresql://") || text.starts_with("postgres://") {
            // (A build without the store takes the URL and fails to open it.)
            #[cfg(feature = "postgres")]
            postgres::check_url(text)?;
            return Ok(Database::Postgres(Box::new(PostgresSettings {
                url: text.to_owned(),
                ..postgres.clone()
            })));
        }
        if text.contains("://") {
            return Err(format!("{text}: not a postgresql:// URL nor a file path"));
        }
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            return Err(format!("{text} is not an absolute path"));
        }
        Ok(Database::Sqlite(path))
    }

    /// How the database is named in messages (a URL never holds a secret).
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(settings) => settings.url.clone(),
        }
    }

    /// The SQLite file, for what only a file has (backups).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Database::Sqlite(path)
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Reads, and the start of a write. One implementation per backend.
pub trait Backend: Send {
    /// The user and their password hash: for the login path only.
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError>;
    /// Every user, by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;
    /// The password hash of one user, picked by `name`: the same user for
    /// the same name every time, users spread evenly over names. An unknown
    /// name's dummy verify takes this hash's cost, so unknown names cost
    /// what the user base costs. `None` for an empty database.
    fn sample_hash(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// The newest `limit` audit entries about `name`, oldest first.
    fn audit_log(&self, name: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
    /// The user whose session `token_hash` is, while it has not expired.
    fn api_session(&self, token_hash: &str, now: Timestamp) -> Result<Option<User>, StoreError>;
    /// The samples of `user` (everyone's where `None`) taken from `from` to
    /// `to` (inclusive), one per user and `bucket` seconds: the bucket's
    /// start, its highest CPU counter, tasks and disk, and its mean memory
    /// and GPU memory. Ordered by user, then time.
    fn samples(
        &self,
        user: Option<&str>,
        from: Timestamp,
        to: Timestamp,
        bucket: u64,
    ) -> Result<Vec<Sample>, StoreError>;
    /// How many samples the history holds.
    fn sample_count(&self) -> Result<u64, StoreError>;
    /// The value of `counter` (0 before it was first counted).
    fn counter(&self, counter: Counter) -> Result<u64, StoreError>;
    /// The latest `limit` limit events of `user` (everyone's where `None`),
    /// newest first, from every node.
    fn limit_events(&self, user: Option<&str>, limit: u32) -> Result<Vec<LimitEvent>, StoreError>;
    /// What the usage sampler recorded of `user`'s GPUs granted by name
    /// (everyone's where `None`), on every node.
    fn gpu_use(&self, user: Option<&str>) -> Result<Vec<GpuUse>, StoreError>;

    /// Starts a write transaction.
    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError>;
    /// Called after each committed write (SQLite trims its WAL here).
    fn after_write(&mut self) {}
    /// Whether this connection, kept idle, may serve its database again.
    fn is_reusable(&self) -> bool;
    /// Whether the database still has the schema this build knows.
    fn schema_is_current(&self) -> bool;
    /// Where the data lives, for messages.
    fn describe(&self) -> String;
    /// Makes the store flush everything to its file when dropped after a
    /// write (SQLite: checkpoint the WAL; others: nothing to do).
    fn checkpoint_on_close(&mut self) {}
    /// A consistent copy in `dest`; returns the copy's user count.
    fn backup(&self, _dest: &Path) -> Result<i64, StoreError> {
        Err(StoreError::Unsupported(format!(
            "{} is not a file: back it up with the server's own tools (pg_dump)",
            self.describe()
        )))
    }

    /// The cluster store behind this backend, if it is one.
    #[cfg(feature = "postgres")]
    fn as_cluster(&self) -> Option<&cluster::ClusterStore> {
        None
    }
    #[cfg(feature = "postgres")]
    fn as_cluster_mut(&mut self) -> Option<&mut cluster::ClusterStore> {
        None
    }

    /// The user named `name`, if the database has one.
    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self.credentials(name)?.map(|(user, _)| user))
    }
}

/// One write transaction; see [`Store::write`].
pub trait Transaction {
    /// The user and their hash, read inside this transaction.
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError>;
    /// Only what the login bookkeeping re-checks inside its transaction: the
    /// failure state and the password hash. Backends that can lock the row
    /// for the rest of the transaction do, so concurrent logins count every
    /// failure.
    fn login_state(&self, name: &str) -> Result<Option<(FailureState, String)>, StoreError>;
    fn insert_user(&self, new: &NewUser, now: Timestamp) -> Result<User, StoreError>;
    /// Applies `changes`, touching only the columns they name (so concurrent
    /// updates of other fields, or a login's failure count, are never lost).
    /// Returns the changed fields and their new values, for the audit log.
    fn update_user(
        &self,
        name: &str,
        changes: &UserChanges,
        now: Timestamp,
    ) -> Result<Value, StoreError>;
    /// A new password: every API session of the user ends with the old one.
    fn set_password_hash(&self, name: &str, hash: &str, now: Timestamp) -> Result<(), StoreError>;
    /// The same password at another cost: `password_changed_at` stays.
    fn replace_hash(&self, name: &str, hash: &str) -> Result<(), StoreError>;
    /// Records (or, with `None`, clears) an unfinished add or delete.
    fn set_pending(&self, name: &str, pending: Option<Pending>) -> Result<(), StoreError>;
    /// Links the record to a system account: its uid, and whether
    /// diycloud created it (and so removes it).
    fn set_system_account(&self, name: &str, uid: u32, owned: bool) -> Result<(), StoreError>;
    /// Stores the failure bookkeeping the lockout policy computed for a
    /// wrong password at `now`.
    fn set_failures(
        &self,
        name: &str,
        state: &FailureState,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// A successful login: the failure count starts over.
    fn record_login(&self, name: &str, now: Timestamp) -> Result<(), StoreError>;
    /// A session closed.
    fn record_logout(&self, name: &str, now: Timestamp) -> Result<(), StoreError>;
    fn delete_user(&self, name: &str) -> Result<(), StoreError>;
    fn audit(
        &self,
        now: Timestamp,
        actor: &str,
        action: &str,
        username: &str,
        detail: &Value,
    ) -> Result<(), StoreError>;
    /// Deletes the audit entries from before `oldest`, then the oldest past
    /// `max_rows` (the whole log: on a shared database, every node's).
    /// Returns how many went.
    fn prune_audit_log(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError>;
    /// A new API session of `name` until `expires`.
    fn insert_api_session(
        &self,
        token_hash: &str,
        name: &str,
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<(), StoreError>;
    /// Ends one session (logout); false if there was none.
    fn delete_api_session(&self, token_hash: &str) -> Result<bool, StoreError>;
    /// Ends every session of `name` (password changed, account disabled).
    fn delete_api_sessions_of(&self, name: &str) -> Result<usize, StoreError>;
    /// Forgets sessions that have expired.
    fn prune_api_sessions(&self, now: Timestamp) -> Result<usize, StoreError>;
    /// Records `samples`; a sample of a user no longer in the database is
    /// left out. Returns how many went in.
    fn insert_samples(&self, samples: &[Sample]) -> Result<usize, StoreError>;
    /// Deletes the samples taken before `oldest`, then the oldest ones past
    /// `max_rows`. Returns how many went.
    fn prune_samples(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError>;
    /// Adds one to `counter`.
    fn count(&self, counter: Counter) -> Result<(), StoreError>;
    /// Records limit events (a run of throttling or reclaim adds to the
    /// user's latest unshown row of its kind on its node, where that is
    /// recent); events of users no longer there are left out. Returns how
    /// many were recorded.
    fn record_limit_events(&self, events: &[LimitEvent]) -> Result<usize, StoreError>;
    /// Deletes the limit events last seen before `oldest` (this node's, on
    /// a shared database), then the oldest past `max_rows`.
    fn prune_limit_events(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError>;
    /// `name`'s events not shown yet (every node's), oldest first, now
    /// marked shown: what their login tells them.
    fn take_unshown_events(&self, name: &str) -> Result<Vec<LimitEvent>, StoreError>;
    /// Records, at `now`, the GPUs granted by name on `node` and whether
    /// their users have a process on them; the node's rows of grants not
    /// among `updates` go.
    fn record_gpu_use(
        &self,
        node: &str,
        now: Timestamp,
        updates: &[GpuUseUpdate],
    ) -> Result<(), StoreError>;

    /// Makes the transaction's writes durable and visible.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// The user named `name`; an error if there is none.
    fn user(&self, name: &str) -> Result<User, StoreError> {
        self.credentials(name)?
            .map(|(user, _)| user)
            .ok_or_else(|| StoreError::UserNotFound(name.into()))
    }
}

/// What a write closure receives.
pub type Tx<'a> = dyn Transaction + 'a;

/// An open database, of either backend.
pub struct Store {
    backend: Box<dyn Backend>,
    database: Database,
}

impl Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl DerefMut for Store {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.backend
    }
}

impl Store {
    /// Opens an existing SQLite database whose schema is current (see
    /// [`sqlite::SqliteStore::open`]).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::from(sqlite::SqliteStore::open(path)?))
    }

    /// What this store was opened on.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Creates or migrates an SQLite database (see [`sqlite::SqliteStore::init`]).
    pub fn init(path: &Path) -> Result<(Self, InitReport), StoreError> {
        let (store, report) = sqlite::SqliteStore::init(path)?;
        Ok((Self::from(store), report))
    }

    /// Opens `db`, whose schema must be current. For PostgreSQL: the
    /// server when it answers within the timeout, else the node's cache
    /// (logins only; see [`cluster`]).
    pub fn open_database(db: &Database) -> Result<Self, StoreError> {
        match db {
            Database::Sqlite(path) => Self::open(path),
            #[cfg(feature = "postgres")]
            Database::Postgres(settings) => Ok(Self {
                backend: Box::new(cluster::ClusterStore::open(settings)?),
                database: db.clone(),
            }),
            #[cfg(not(feature = "postgres"))]
            Database::Postgres(_) => Err(no_postgres()),
        }
    }

    /// Creates or migrates `db`'s schema (`slicectl init`).
    pub fn init_database(db: &Database) -> Result<(Self, InitReport), StoreError> {
        match db {
            Database::Sqlite(path) => Self::init(path),
            #[cfg(not(feature = "postgres"))]
            Database::Postgres(_) => Err(no_postgres()),
            #[cfg(feature = "postgres")]
            Database::Postgres(settings) => {
                let (store, report) = cluster::ClusterStore::init(settings)?;
                Ok((
                    Self {
                        backend: Box::new(store),
                        database: db.clone(),
                    },
                    report,
                ))
            }
        }
    }

    /// Runs `f` inside one write transaction: committed when `f` returns
    /// `Ok`, rolled back on `Err` (or a panic).
    pub fn write<T, E>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let value = {
            let tx = self.backend.begin()?;
            let value = f(&*tx)?;
            tx.commit()?;
            value
        };
        self.backend.after_write();
        Ok(value)
    }
}

#[cfg(not(feature = "postgres"))]
fn no_postgres() -> StoreError {
    StoreError::Unsupported("this build has no PostgreSQL support".into())
}

impl From<sqlite::SqliteStore> for Store {
    fn from(store: sqlite::SqliteStore) -> Self {
        Self {
            database: Database::Sqlite(store.path().to_path_buf()),
            backend: Box::new(store),
        }
    }
}

/// This node's name (its host name): usage history, counters and limit
/// events are kept per node.
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests;
