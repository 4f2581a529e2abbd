//! The SQLite backend: one database file on the node (the default), and
//! the node-local cache of the PostgreSQL backend.
//!
//! WAL mode, a generous busy timeout and short `BEGIN IMMEDIATE` write
//! transactions let many logins and admin commands share the file without
//! `SQLITE_BUSY`; every write happens in one transaction that rolls back on
//! any error (a dropped [`Tx`] rolls back), so no command leaves half a record.

// The cluster store's cache (feature postgres).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
mod cache;
mod events;
mod gpu_use;
mod history;
mod sessions;
mod users;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::trust::{self, Presence};

#[cfg_attr(not(feature = "postgres"), allow(unused_imports))]
pub use cache::{CacheState, OfflineEvent};

use super::{Backend, InitReport, StoreError, Transaction};
use crate::model::events::LimitEvent;
use crate::model::gpu::GpuUse;
use crate::model::history::{Counter, Sample};
use crate::model::lockout::FailureState;
use crate::model::time::Timestamp;
use crate::model::user::{Pending, User};
use crate::store::{AuditEntry, GpuUseUpdate, NewUser, UserChanges};

/// Numbered migrations; migration N brings the schema to `PRAGMA user_version = N`.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("0001_initial.sql"),
    include_str!("0002_logout.sql"),
    include_str!("0003_intents.sql"),
    include_str!("0004_api_sessions.sql"),
    include_str!("0005_history.sql"),
    include_str!("0006_limit_events.sql"),
    include_str!("0007_gpu_use.sql"),
    include_str!("0008_fair_share.sql"),
    include_str!("0009_limits.sql"),
];

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `PRAGMA application_id` of a diycloud database ("DIYC"), set by migration 3.
pub const APPLICATION_ID: i32 = 0x4449_5943;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The WAL size past which a writer checkpoints and truncates it (64 pages).
const WAL_TRIM_BYTES: u64 = 64 * 4096;

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// An open SQLite database.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Device and inode of the file when opened: a restored backup is
    /// another file, which a kept connection must not go on serving.
    file: Option<(u64, u64)>,
    checkpoint_on_close: bool,
    wrote: bool,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if self.checkpoint_on_close && self.wrote {
            // Best effort: a busy checkpoint is done by a later writer.
            let _ = self.checkpoint();
        }
    }
}

/// `path` made absolute against the working directory (no file access).
fn absolute(path: &Path) -> Result<PathBuf, StoreError> {
    std::path::absolute(path).map_err(|source| StoreError::Create {
        path: path.into(),
        source,
    })
}

impl SqliteStore {
    /// Opens an existing database whose schema is current. Never creates a
    /// file: a login must not conjure up an empty user database.
    /// The file and every directory above it must pass
    /// [`crate::trust::check_database`]: whoever can write the database
    /// decides who logs in.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let path = &absolute(path)?;
        if trust::check_database(path)? == Presence::Absent {
            return Err(StoreError::Missing(path.into()));
        }
        let store = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        match store.user_version()? {
            SCHEMA_VERSION => Ok(store),
            0 => Err(StoreError::NotInitialised(path.into())),
            found if found > SCHEMA_VERSION => Err(StoreError::TooNew {
                path: path.into(),
                found,
            }),
            found => Err(StoreError::Outdated {
                path: path.into(),
                found,
            }),
        }
    }

    /// Creates the database (file 0600 in a 0700 directory) or brings an
    /// older one up to date. Safe to run any number of times, also after an
    /// interrupted run. Refuses a directory others could write to, and an
    /// existing file that is not a diycloud database.
    pub fn init(path: &Path) -> Result<(Self, InitReport), StoreError> {
        let path = &absolute(path)?;
        let create_err = |source| StoreError::Create {
            path: path.into(),
            source,
        };
        // Before creating anything: no untrusted user may be able to create
        // or replace what follows.
        trust::check_database(path)?;
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(create_err)?;
            }
        }
        let created = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(create_err(e)),
        };
        trust::check_database(path)?;
        let not_sqlite = |e| match e {
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(f, _),
                ..
            } if f.code == rusqlite::ErrorCode::NotADatabase => StoreError::Foreign {
                path: path.into(),
                why: "not an SQLite file".into(),
            },
            e => e,
        };
        let mut store =
            Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(not_sqlite)?;
        store.checkpoint_on_close = true;
        let from_version = store.user_version().map_err(not_sqlite)?;
        store.check_is_ours(from_version)?;
        if from_version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.into(),
                found: from_version,
            });
        }
        // Migration 1 runs in rollback-journal mode: a new file goes from 0
        // bytes to a complete schema in one step (a crash leaves 0 bytes,
        // which the next `init` takes as new). WAL comes after.
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(from_version as usize) {
            let version = index as u32 + 1;
            store.write(|tx: &SqliteTx<'_>| {
                tx.tx
                    .execute_batch(sql)
                    .and_then(|()| tx.tx.pragma_update(None, "user_version", version))
                    .map_err(|e| tx.sqlite(e))
            })?;
        }
        store
            .conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| store.sqlite(e))?;
        Ok((
            store,
            InitReport {
                created,
                from_version,
                to_version: SCHEMA_VERSION,
            },
        ))
    }

    /// Whether an existing file is a diycloud database (or empty, as `init`
    /// creates it): `init` must never adopt someone else's SQLite file, nor
    /// silently start over on a database whose contents were lost.
    fn check_is_ours(&self, version: u32) -> Result<(), StoreError> {
        let foreign = |why: &str| StoreError::Foreign {
            path: self.path.clone(),
            why: why.into(),
        };
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let application_id: i32 = self
            .conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    foreign("not an SQLite file")
                }
                e => self.sqlite(e),
            })?;
        let tables: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'users'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sqlite(e))?;
        match (version, application_id) {
            (0, 0) if size == 0 => Ok(()),
            (0, _) => Err(foreign("an SQLite file without the diycloud schema")),
            (_, id) if id != 0 && id != APPLICATION_ID => Err(foreign(&format!(
                "an SQLite file of another application (application_id {id:#x})"
            ))),
            _ if tables == 0 => Err(foreign("no users table")),
            _ => Ok(()),
        }
    }

    /// Checkpoints the WAL into the database file, so the file alone holds
    /// everything (a plain copy is then complete).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| self.sqlite(e))
    }

    /// Makes the store checkpoint when it is dropped after a write: what an
    /// admin command wants (the PAM module does not: it would cost an fsync
    /// per login; its writers trim the WAL instead).
    pub fn checkpoint_on_close(&mut self) {
        self.checkpoint_on_close = true;
    }

    /// A consistent copy of the database in `dest` (mode 0600), made with
    /// SQLite's online backup while others may be writing. Written to a
    /// temporary file beside `dest` and renamed, so `dest` is never half a
    /// database; an existing `dest` is an error. Returns the copy's user count.
    pub fn backup(&self, dest: &Path) -> Result<i64, StoreError> {
        let err = |source| StoreError::Backup {
            path: dest.into(),
            source,
        };
        if std::fs::symlink_metadata(dest).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it already exists",
            )));
        }
        let mut temp_name = dest.as_os_str().to_os_string();
        temp_name.push(format!(".partial-{}", std::process::id()));
        let temp = PathBuf::from(temp_name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(err)?;
        let result = (|| {
            let mut copy = Connection::open(&temp).map_err(|e| StoreError::Sqlite {
                path: temp.clone(),
                source: e,
            })?;
            {
                let backup = rusqlite::backup::Backup::new(&self.conn, &mut copy)
                    .map_err(|e| self.sqlite(e))?;
                backup
                    .run_to_completion(256, Duration::from_millis(10), None)
                    .map_err(|e| self.sqlite(e))?;
            }
            // The copy stands alone: one file, no WAL beside it.
            let copy_err = |e| StoreError::Sqlite {
                path: temp.clone(),
                source: e,
            };
            copy.pragma_update(None, "journal_mode", "DELETE")
                .map_err(copy_err)?;
            let users: i64 = copy
                .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
                .map_err(copy_err)?;
            drop(copy);
            std::fs::File::open(&temp)
                .and_then(|f| f.sync_all())
                .map_err(err)?;
            // Never replace a file that appeared meanwhile.
            std::fs::hard_link(&temp, dest).map_err(err)?;
            Ok(users)
        })();
        let _ = std::fs::remove_file(&temp);
        result
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<Self, StoreError> {
        let sqlite = |source| StoreError::Sqlite {
            path: path.into(),
            source,
        };
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        // NORMAL is durable enough in WAL mode (a power cut may lose the last
        // commits, never consistency) and keeps fsync off the login path.
        // temp_store = MEMORY: SQLite would otherwise pick a directory for
        // temporary files from TMPDIR or SQLITE_TMPDIR, which under su
        // belong to the caller.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;",
        )
        .map_err(sqlite)?;
        // Each login opens and closes its own connection. SQLite's default
        // checkpoint on close costs an fsync per login; without it, every
        // opener rebuilds the WAL index from the whole WAL, which then only
        // grows. So: no checkpoint on close, and writers truncate the WAL
        // once it passes WAL_TRIM_BYTES (see `write`).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(sqlite)?;
        Ok(Self {
            conn,
            path: path.into(),
            file: file_identity(path),
            checkpoint_on_close: false,
            wrote: false,
        })
    }

    /// Whether the file still has the schema this build knows (another
    /// version's `slicectl init` may have migrated it since it was opened).
    /// Whether this connection, kept idle, may serve its path again: the
    /// file still passes the trust rules, is still the same file (a restored
    /// backup is a new one) and has the schema this build knows. Otherwise
    /// it is to be closed and the path opened afresh. (For processes that
    /// keep connections: the PAM module inside a JupyterHub, the API server.)
    pub fn is_reusable(&self) -> bool {
        matches!(trust::check_database(&self.path), Ok(Presence::Present))
            && self.file.is_some()
            && file_identity(&self.path) == self.file
            && self.schema_is_current()
    }

    pub fn schema_is_current(&self) -> bool {
        matches!(self.user_version(), Ok(SCHEMA_VERSION))
    }

    fn user_version(&self) -> Result<u32, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| self.sqlite(e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Starts a `BEGIN IMMEDIATE` transaction: it rolls back when dropped
    /// uncommitted.
    pub fn begin_tx(&mut self) -> Result<SqliteTx<'_>, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        Ok(SqliteTx { tx, path })
    }

    /// Runs `f` inside one transaction: committed when `f` returns `Ok`,
    /// rolled back on `Err` (or a panic).
    pub fn write<T, E>(&mut self, f: impl FnOnce(&SqliteTx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let value = {
            let tx = self.begin_tx()?;
            let value = f(&tx)?;
            tx.commit_tx()?;
            value
        };
        self.after_commit();
        Ok(value)
    }

    fn after_commit(&mut self) {
        self.wrote = true;
        self.trim_wal();
    }

    /// Checkpoints and truncates the WAL once it passes `WAL_TRIM_BYTES`:
    /// one fsync every few dozen writes keeps every open cheap. Best effort:
    /// a busy or failed checkpoint is simply tried again by a later write.
    fn trim_wal(&self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if size > WAL_TRIM_BYTES {
            let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        }
    }
}

/// A write transaction; see [`super::Store::write`].
pub struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
    path: PathBuf,
}

impl SqliteTx<'_> {
    pub fn commit_tx(self) -> Result<(), StoreError> {
        let Self { tx, path } = self;
        tx.commit()
            .map_err(|source| StoreError::Sqlite { path, source })
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

impl Backend for SqliteStore {
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        SqliteStore::credentials(self, name)
    }
    fn users(&self) -> Result<Vec<User>, StoreError> {
        SqliteStore::users(self)
    }
    fn sample_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        SqliteStore::sample_hash(self, name)
    }
    fn audit_log(&self, name: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        SqliteStore::audit_log(self, name, limit)
    }
    fn api_session(&self, token_hash: &str, now: Timestamp) -> Result<Option<User>, StoreError> {
        SqliteStore::api_session(self, token_hash, now)
    }
    fn samples(
        &self,
        user: Option<&str>,
        from: Timestamp,
        to: Timestamp,
        bucket: u64,
    ) -> Result<Vec<Sample>, StoreError> {
        SqliteStore::samples(self, user, from, to, bucket)
    }
    fn sample_count(&self) -> Result<u64, StoreError> {
        SqliteStore::sample_count(self)
    }
    fn counter(&self, counter: Counter) -> Result<u64, StoreError> {
        SqliteStore::counter(self, counter)
    }
    fn limit_events(&self, user: Option<&str>, limit: u32) -> Result<Vec<LimitEvent>, StoreError> {
        SqliteStore::limit_events(self, user, limit)
    }
    fn gpu_use(&self, user: Option<&str>) -> Result<Vec<GpuUse>, StoreError> {
        SqliteStore::gpu_use(self, user)
    }
    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(self.begin_tx()?))
    }
    fn after_write(&mut self) {
        self.after_commit();
    }
    fn is_reusable(&self) -> bool {
        SqliteStore::is_reusable(self)
    }
    fn schema_is_current(&self) -> bool {
        SqliteStore::schema_is_current(self)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
    fn checkpoint_on_close(&mut self) {
        SqliteStore::checkpoint_on_close(self);
    }
    fn backup(&self, dest: &Path) -> Result<i64, StoreError> {
        SqliteStore::backup(self, dest)
    }
}

impl Transaction for SqliteTx<'_> {
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        SqliteTx::credentials(self, name)
    }
    fn login_state(&self, name: &str) -> Result<Option<(FailureState, String)>, StoreError> {
        SqliteTx::login_state(self, name)
    }
    fn insert_user(&self, new: &NewUser, now: Timestamp) -> Result<User, StoreError> {
        SqliteTx::insert_user(self, new, now)
    }
    fn update_user(
        &self,
        name: &str,
        changes: &UserChanges,
        now: Timestamp,
    ) -> Result<serde_json::Value, StoreError> {
        SqliteTx::update_user(self, name, changes, now)
    }
    fn set_password_hash(&self, name: &str, hash: &str, now: Timestamp) -> Result<(), StoreError> {
        SqliteTx::set_password_hash(self, name, hash, now)
    }
    fn replace_hash(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        SqliteTx::replace_hash(self, name, hash)
    }
    fn set_pending(&self, name: &str, pending: Option<Pending>) -> Result<(), StoreError> {
        SqliteTx::set_pending(self, name, pending)
    }
    fn set_system_account(&self, name: &str, uid: u32, owned: bool) -> Result<(), StoreError> {
        SqliteTx::set_system_account(self, name, uid, owned)
    }
    fn set_failures(
        &self,
        name: &str,
        state: &FailureState,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        SqliteTx::set_failures(self, name, state)
    }
    fn record_login(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        SqliteTx::record_login(self, name, now)
    }
    fn record_logout(&self, name: &str, now: Timestamp) -> Result<(), StoreError> {
        SqliteTx::record_logout(self, name, now)
    }
    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        SqliteTx::delete_user(self, name)
    }
    fn audit(
        &self,
        now: Timestamp,
        actor: &str,
        action: &str,
        username: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        SqliteTx::audit(self, now, actor, action, username, detail)
    }
    fn prune_audit_log(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        SqliteTx::prune_audit_log(self, oldest, max_rows)
    }
    fn insert_api_session(
        &self,
        token_hash: &str,
        name: &str,
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        SqliteTx::insert_api_session(self, token_hash, name, now, expires)
    }
    fn delete_api_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        SqliteTx::delete_api_session(self, token_hash)
    }
    fn delete_api_sessions_of(&self, name: &str) -> Result<usize, StoreError> {
        SqliteTx::delete_api_sessions_of(self, name)
    }
    fn prune_api_sessions(&self, now: Timestamp) -> Result<usize, StoreError> {
        SqliteTx::prune_api_sessions(self, now)
    }
    fn insert_samples(&self, samples: &[Sample]) -> Result<usize, StoreError> {
        SqliteTx::insert_samples(self, samples)
    }
    fn prune_samples(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        SqliteTx::prune_samples(self, oldest, max_rows)
    }
    fn count(&self, counter: Counter) -> Result<(), StoreError> {
        SqliteTx::count(self, counter)
    }
    fn record_limit_events(&self, events: &[LimitEvent]) -> Result<usize, StoreError> {
        SqliteTx::record_limit_events(self, events)
    }
    fn prune_limit_events(&self, oldest: Timestamp, max_rows: u64) -> Result<u64, StoreError> {
        SqliteTx::prune_limit_events(self, oldest, max_rows)
    }
    fn take_unshown_events(&self, name: &str) -> Result<Vec<LimitEvent>, StoreError> {
        SqliteTx::take_unshown_events(self, name)
    }
    fn record_gpu_use(
        &self,
        node: &str,
        now: Timestamp,
        updates: &[GpuUseUpdate],
    ) -> Result<(), StoreError> {
        SqliteTx::record_gpu_use(self, node, now, updates)
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        (*self).commit_tx()
    }
}

#[cfg(test)]
mod tests;
