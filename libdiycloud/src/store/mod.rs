//! The SQLite store: the one place that talks to the database file.
//!
//! WAL mode, a generous busy timeout and short `BEGIN IMMEDIATE` write
//! transactions let many logins and admin commands share the file without
//! `SQLITE_BUSY`; every write happens in one transaction that rolls back on
//! any error (a dropped [`Tx`] rolls back), so no command leaves half a record.

mod users;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use users::{AuditEntry, NewUser, UserChanges};

/// Numbered migrations; migration N brings the schema to `PRAGMA user_version = N`.
const MIGRATIONS: &[&str] = &[
    include_str!("0001_initial.sql"),
    include_str!("0002_logout.sql"),
];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The WAL size past which a writer checkpoints and truncates it (64 pages).
const WAL_TRIM_BYTES: u64 = 64 * 4096;

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

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
    #[error("database {path}: the record of user {username} has an invalid {field}: {message}")]
    Corrupt {
        path: PathBuf,
        username: String,
        field: &'static str,
        message: String,
    },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no such user: {0}")]
    UserNotFound(String),
}

/// What `slicectl init` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitReport {
    pub created: bool,
    pub from_version: u32,
    pub to_version: u32,
}

/// An open database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens an existing database whose schema is current. Never creates a
    /// file: a login must not conjure up an empty user database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(path.into()));
            }
            _ => {}
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
    /// older one up to date. Safe to run any number of times.
    pub fn init(path: &Path) -> Result<(Self, InitReport), StoreError> {
        let create_err = |source| StoreError::Create {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
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
        let mut store = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let from_version = store.user_version()?;
        if from_version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.into(),
                found: from_version,
            });
        }
        store
            .conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| store.sqlite(e))?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(from_version as usize) {
            let version = index as u32 + 1;
            store.write(|tx| {
                tx.tx
                    .execute_batch(sql)
                    .and_then(|()| tx.tx.pragma_update(None, "user_version", version))
                    .map_err(|e| tx.sqlite(e))
            })?;
        }
        Ok((
            store,
            InitReport {
                created,
                from_version,
                to_version: SCHEMA_VERSION,
            },
        ))
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
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
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
        })
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

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction: committed when `f`
    /// returns `Ok`, rolled back on `Err` (or a panic).
    pub fn write<T, E>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let value = {
            let path = self.path.clone();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|source| StoreError::Sqlite {
                    path: path.clone(),
                    source,
                })?;
            let tx = Tx { tx, path };
            let value = f(&tx)?;
            let Tx { tx, path } = tx;
            tx.commit()
                .map_err(|source| StoreError::Sqlite { path, source })?;
            value
        };
        self.trim_wal();
        Ok(value)
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

/// A write transaction; see [`Store::write`].
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    path: PathBuf,
}

impl Tx<'_> {
    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
