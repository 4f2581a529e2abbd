//! The PostgreSQL backend: one database that every node of a cluster
//! shares (see [`super::cluster`] for the node-local cache around it).
//!
//! The async client (tokio-postgres) runs on a current-thread runtime this
//! store owns: queries run only inside our own calls, no thread is ever
//! started (host names are resolved by the calling thread before the
//! connect), and dropping the store closes the connection. Every wait on
//! the network (the connect with its TLS and authentication, each query) is
//! bounded by `connect_timeout`.

mod tx;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, Row, Statement};

use super::records::{event_processes, sample_start, RawUser};
use super::{AuditEntry, Backend, InitReport, PostgresSettings, StoreError, Transaction};
use crate::model::events::{EventKind, LimitEvent};
use crate::model::gpu::GpuUse;
use crate::model::history::{Counter, Sample};
use crate::model::time::Timestamp;
use crate::model::user::User;
use crate::trust::{self, Presence};

pub(crate) use tx::PgTx;

/// Numbered migrations in PostgreSQL's dialect; migration N brings
/// `diycloud_schema.version` to N.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("0001_schema.sql"),
    include_str!("0002_limit_events.sql"),
    include_str!("0003_gpu_use.sql"),
    include_str!("0004_fair_share.sql"),
    include_str!("0005_limits.sql"),
];

/// The PostgreSQL schema version this build reads and writes.
pub const PG_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Serialises concurrent `slicectl init` runs (a `pg_advisory_xact_lock` key: "DIYC").
const MIGRATION_LOCK: i64 = 0x4449_5943;

pub(super) const SELECT_USER: &str = "SELECT u.username, u.uid, u.owns_system_account, u.role, \
     u.email, u.full_name, u.is_active, u.expires_on, u.created_at, u.updated_at, u.last_login, \
     u.password_changed_at, u.failed_logins, u.failure_window_start, u.locked_at, \
     u.password_hash, u.last_logout, u.pending, a.limits::text AS limits \
     FROM users u JOIN resource_allocations a ON a.user_id = u.id";

/// Checks a `db` URL before it is used: it must parse, name a user and a
/// database, and hold no password (that goes in `[postgres] password_file`).
pub fn check_url(url: &str) -> Result<(), String> {
    let config: Config = url
        .parse()
        .map_err(|e| format!("{url}: not a valid PostgreSQL URL: {e}"))?;
    if config.get_password().is_some() {
        return Err(
            "the db URL holds a password: put it in [postgres] password_file (a root-only file) instead"
                .into(),
        );
    }
    if config.get_user().is_none() {
        return Err(format!(
            "{url}: the URL names no user (postgresql://USER@HOST/DBNAME)"
        ));
    }
    if config.get_dbname().is_none() {
        return Err(format!(
            "{url}: the URL names no database (postgresql://USER@HOST/DBNAME)"
        ));
    }
    if config.get_hosts().is_empty() {
        return Err(format!("{url}: the URL names no host"));
    }
    Ok(())
}

/// The message of a client error: the server's own words where it sent some.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads the password from `path`: a regular file that passes the trust
/// rules (root's, in root's directories) and that nobody but its owner may
/// read. One line; a trailing newline is not part of it.
pub fn read_password_file(path: &Path) -> Result<String, StoreError> {
    let err = |message: String| StoreError::Credentials {
        path: path.into(),
        message,
    };
    match trust::check_file(path) {
        Ok(Presence::Present) => {}
        Ok(Presence::Absent) => return Err(err("it does not exist".into())),
        Err(e) => return Err(err(e.to_string())),
    }
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(err(format!(
            "it is readable by others (mode {:o}): make it 0600 (chmod 600)",
            meta.mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() || password.contains('\n') {
        return Err(err("it must hold the password on one line".into()));
    }
    Ok(password.to_owned())
}

/// The TLS connector: rustls with the roots of `ca_file` (read only when
/// the URL's `sslmode` may use TLS).
fn tls(
    settings: &PostgresSettings,
    mode: SslMode,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    if mode != SslMode::Disable {
        let path = &settings.ca_file;
        let err = |message: String| StoreError::Postgres {
            target: settings.url.clone(),
            message: format!("CA file {}: {message}", path.display()),
        };
        // Whoever writes the CA file decides which server is believed.
        match trust::check_file(path) {
            Ok(Presence::Present) => {}
            Ok(Presence::Absent) => {
                return Err(err(
                    "it does not exist: set [postgres] ca_file, or sslmode=disable in the URL"
                        .into(),
                ))
            }
            Err(e) => return Err(err(e.to_string())),
        }
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| err(e.to_string()))?;
            roots.add(cert).map_err(|e| err(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(err("it holds no certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Postgres {
            target: settings.url.clone(),
            message: format!("TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The columns [`event_from_row`] reads.
const SELECT_EVENT: &str = "SELECT u.username, e.node, e.first_at, e.at, e.kind, e.count, \
     e.throttled_usec, e.lim, e.processes, e.shown \
     FROM limit_events e JOIN users u ON u.id = e.user_id";

fn event_from_row(row: &tokio_postgres::Row) -> LimitEvent {
    let kind: String = row.get("kind");
    let processes: String = row.get("processes");
    LimitEvent {
        username: row.get("username"),
        node: row.get("node"),
        first_at: Timestamp(row.get("first_at")),
        at: Timestamp(row.get("at")),
        // The table's CHECK keeps the kinds to the three.
        kind: EventKind::parse(&kind).unwrap_or(EventKind::OomKill),
        count: to_u64(Some(row.get("count"))).unwrap_or(0),
        throttled_usec: to_u64(Some(row.get("throttled_usec"))).unwrap_or(0),
        limit: row.get("lim"),
        processes: event_processes(&processes),
        shown: row.get("shown"),
    }
}

/// A connection to the shared database.
pub struct PgStore {
    rt: Runtime,
    client: Client,
    target: String,
    timeout: Duration,
    node: String,
    /// Statements prepared on this connection, by their text: a login's
    /// queries then take one round trip each, not two (parse, then run).
    statements: Statements,
}

/// Prepared statements of one connection, by their SQL.
pub(super) type Statements = RefCell<HashMap<String, Statement>>;

/// `sql` from `statements`, or prepared by `prepare` and kept there.
pub(super) fn prepared(
    statements: &Statements,
    sql: &str,
    prepare: impl FnOnce() -> Result<Statement, StoreError>,
) -> Result<Statement, StoreError> {
    if let Some(statement) = statements.borrow().get(sql) {
        return Ok(statement.clone());
    }
    let statement = prepare()?;
    statements
        .borrow_mut()
        .insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

impl PgStore {
    /// Connects (no schema check). A server that cannot be reached in time
    /// is [`StoreError::Offline`]; one that refuses us is an error of its own.
    pub fn connect(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let target = settings.url.clone();
        let mut config: Config = settings.url.parse().map_err(|e| StoreError::Postgres {
            target: target.clone(),
            message: describe(&e),
        })?;
        let timeout = settings.connect_timeout;
        config
            .connect_timeout(timeout)
            .tcp_user_timeout(timeout)
            .keepalives(true)
            .application_name("diycloud");
        if let Some(file) = &settings.password_file {
            config.password(read_password_file(file)?);
        }
        let offline = |why: String| StoreError::Offline {
            target: target.clone(),
            why,
            what: "this",
        };
        // Only what the network answers is an outage. Whatever fails on
        // this side (descriptors, memory, the runtime, TLS verification,
        // the server's refusal) is an error: a setuid client inherits its
        // caller's limits, and no caller may send a login to the cache.
        let local = |message: String| StoreError::Postgres {
            target: target.clone(),
            message,
        };
        resolve_hosts(&mut config).map_err(|(why, cause)| {
            if is_local_failure(&cause) {
                local(why)
            } else {
                offline(why)
            }
        })?;
        let tls = tls(settings, config.get_ssl_mode())?;
        // Out of descriptors, tokio's signal driver (compiled in for the
        // server) panics instead of failing: that is this side's error too.
        let rt = std::panic::catch_unwind(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        })
        .map_err(|_| local("cannot start the client: it panicked (out of descriptors?)".into()))?
        .map_err(|e| local(format!("cannot start the client: {e}")))?;
        let connected =
            rt.block_on(async { tokio::time::timeout(timeout, config.connect(tls)).await });
        let (client, connection) = match connected {
            Err(_) => return Err(offline(format!("no answer within {}", show(timeout)))),
            Ok(Err(e)) => return Err(pg(&target, &e)),
            Ok(Ok(pair)) => pair,
        };
        // Driven only while one of our calls waits on the runtime.
        rt.spawn(connection);
        Ok(Self {
            rt,
            client,
            target,
            timeout,
            node: crate::store::node_name(),
            statements: RefCell::new(HashMap::new()),
        })
    }

    /// Connects to a database whose schema is current.
    pub fn open(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let store = Self::connect(settings)?;
        match store.schema_version()? {
            Some(PG_SCHEMA_VERSION) => Ok(store),
            None => Err(store.schema_error("is not initialised: run `slicectl init` first".into())),
            Some(found) if found > PG_SCHEMA_VERSION => Err(store.schema_error(format!(
                "has schema version {found}, newer than this build's {PG_SCHEMA_VERSION}: upgrade diycloud"
            ))),
            Some(found) => Err(store.schema_error(format!(
                "has schema version {found}, older than this build's {PG_SCHEMA_VERSION}: run `slicectl init` to migrate it"
            ))),
        }
    }

    /// Creates or migrates the schema; safe to run any number of times, on
    /// any number of nodes at once (an advisory lock serialises them).
    pub fn init(settings: &PostgresSettings) -> Result<(Self, InitReport), StoreError> {
        let mut store = Self::connect(settings)?;
        let from_version = store.schema_version()?.unwrap_or(0);
        let Self {
            rt,
            client,
            target,
            timeout,
            ..
        } = &mut store;
        let mut version = from_version;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(from_version as usize) {
            let to = index as i64 + 1;
            let tx = wait_on(rt, target, *timeout, client.transaction())?;
            wait_on(
                rt,
                target,
                *timeout,
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]),
            )?;
            wait_on(
                rt,
                target,
                *timeout,
                tx.batch_execute(
                    "CREATE TABLE IF NOT EXISTS diycloud_schema (version BIGINT NOT NULL); \
                     INSERT INTO diycloud_schema (version) SELECT 0 \
                     WHERE NOT EXISTS (SELECT 1 FROM diycloud_schema)",
                ),
            )?;
            // Another node may have migrated while we waited for the lock.
            let current: i64 = wait_on(
                rt,
                target,
                *timeout,
                tx.query_one("SELECT version FROM diycloud_schema", &[]),
            )?
            .get(0);
            if current >= to {
                version = u32::try_from(current).unwrap_or(u32::MAX);
                continue;
            }
            wait_on(rt, target, *timeout, tx.batch_execute(sql))?;
            wait_on(
                rt,
                target,
                *timeout,
                tx.execute("UPDATE diycloud_schema SET version = $1", &[&to]),
            )?;
            wait_on(rt, target, *timeout, tx.commit())?;
            version = to as u32;
        }
        if version > PG_SCHEMA_VERSION {
            return Err(store.schema_error(format!(
                "has schema version {version}, newer than this build's {PG_SCHEMA_VERSION}: upgrade diycloud"
            )));
        }
        Ok((
            store,
            InitReport {
                created: from_version == 0,
                from_version,
                to_version: PG_SCHEMA_VERSION,
            },
        ))
    }

    /// The schema's version; `None` where there is no diycloud schema.
    fn schema_version(&self) -> Result<Option<u32>, StoreError> {
        let exists: bool = self
            .wait(
                self.client
                    .query_one("SELECT to_regclass('diycloud_schema') IS NOT NULL", &[]),
            )?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = self.wait(
            self.client
                .query_opt("SELECT version FROM diycloud_schema", &[]),
        )?;
        Ok(row
            .map(|r| r.get::<_, i64>(0))
            .filter(|v| *v > 0)
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
    }

    fn schema_error(&self, message: String) -> StoreError {
        StoreError::Schema {
            target: self.target.clone(),
            message: format!("the database {message}"),
        }
    }

    fn wait<T>(
        &self,
        f: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        wait_on(&self.rt, &self.target, self.timeout, f)
    }

    /// `sql` prepared on this connection (once).
    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        prepared(&self.statements, sql, || {
            self.wait(self.client.prepare(sql))
        })
    }

    fn find(
        &self,
        rest: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<(User, String)>, StoreError> {
        let statement = self.statement(&format!("{SELECT_USER} {rest}"))?;
        let row = self.wait(self.client.query_opt(&statement, params))?;
        row.map(|r| user_from_row(&r, &self.target)).transpose()
    }

    /// Every user with their hash: what a full refresh of a cache copies.
    pub fn all_credentials(&self) -> Result<Vec<(User, String)>, StoreError> {
        let rows = self.wait(
            self.client
                .query(&format!("{SELECT_USER} ORDER BY u.username"), &[]),
        )?;
        rows.iter()
            .map(|r| user_from_row(r, &self.target))
            .collect()
    }

    /// Runs `sql` as it is (tests set up and inspect schemas with it).
    #[cfg(test)]
    pub(crate) fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        self.wait(self.client.batch_execute(sql))
    }

    /// The first column of the first row of `sql`, as a number (tests).
    #[cfg(test)]
    pub(crate) fn query_number(&self, sql: &str) -> Result<i64, StoreError> {
        Ok(self.wait(self.client.query_one(sql, &[]))?.get(0))
    }

    /// This node's name, as its history rows carry it.
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// Runs `f` on `rt`, for at most `timeout`.
pub(super) fn wait_on<T>(
    rt: &Runtime,
    target: &str,
    timeout: Duration,
    f: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    match rt.block_on(async { tokio::time::timeout(timeout, f).await }) {
        Err(_) => Err(timed_out(target, timeout)),
        Ok(Err(e)) => Err(pg(target, &e)),
        Ok(Ok(value)) => Ok(value),
    }
}

/// A client error: a connection the network broke (refused, reset,
/// unreachable, closed) as [`StoreError::Offline`], what a cache may stand
/// in for; everything else (the server's refusal, TLS verification, a
/// local failure such as running out of descriptors) as
/// [`StoreError::Postgres`], which no cache hides.
pub(super) fn pg(target: &str, e: &tokio_postgres::Error) -> StoreError {
    let broken = match io_cause(e) {
        Some(io) => is_network_failure(io),
        None => e.is_closed(),
    };
    if e.as_db_error().is_none() && broken {
        return StoreError::Offline {
            target: target.into(),
            why: describe(e),
            what: "this",
        };
    }
    StoreError::Postgres {
        target: target.into(),
        message: describe(e),
    }
}

fn io_cause(e: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

/// Whether `e` is the network's answer that the server is not there:
/// the only kind of failure an outage is made of. A TLS error arrives as
/// an `io::Error` too (`InvalidData`), and is not one.
pub(crate) fn is_network_failure(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    if let Some(code) = e.raw_os_error() {
        return [
            nix::libc::ECONNREFUSED,
            nix::libc::ECONNRESET,
            nix::libc::ECONNABORTED,
            nix::libc::EHOSTUNREACH,
            nix::libc::EHOSTDOWN,
            nix::libc::ENETUNREACH,
            nix::libc::ENETDOWN,
            nix::libc::ENETRESET,
            nix::libc::ETIMEDOUT,
            nix::libc::EPIPE,
            nix::libc::ENOTCONN,
        ]
        .contains(&code);
    }
    matches!(
        e.kind(),
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::TimedOut
            | K::UnexpectedEof
    )
}

/// Whether `e` failed on this side for want of a resource the caller's
/// limits decide (descriptors, memory, processes).
fn is_local_failure(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(|code| {
        [
            nix::libc::EMFILE,
            nix::libc::ENFILE,
            nix::libc::ENOMEM,
            nix::libc::EAGAIN,
            nix::libc::ENOBUFS,
        ]
        .contains(&code)
    })
}

/// No answer in time: the server or the network is gone, as far as a
/// login can wait.
pub(super) fn timed_out(target: &str, timeout: Duration) -> StoreError {
    StoreError::Offline {
        target: target.into(),
        why: format!("no answer within {}", show(timeout)),
        what: "this",
    }
}

fn show(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Puts the address of every host named by name in `config`, resolved by
/// this thread (the client would resolve on a thread of its own).
fn resolve_hosts(config: &mut Config) -> Result<(), (String, std::io::Error)> {
    let hosts = config.get_hosts().to_vec();
    if hosts.iter().any(|h| !matches!(h, Host::Tcp(_))) || !config.get_hostaddrs().is_empty() {
        return Ok(());
    }
    let ports = config.get_ports().to_vec();
    for (i, host) in hosts.iter().enumerate() {
        let Host::Tcp(name) = host else { continue };
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let ip = match name.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| (format!("cannot resolve {name}: {e}"), e))?
                .next()
                .ok_or_else(|| {
                    let why = format!("{name} has no address");
                    (why.clone(), std::io::Error::other(why))
                })?
                .ip(),
        };
        config.hostaddr(ip);
    }
    Ok(())
}

/// Reads one row of [`SELECT_USER`], each column by its name.
pub(super) fn user_from_row(row: &Row, target: &str) -> Result<(User, String), StoreError> {
    let err = |e: tokio_postgres::Error| pg(target, &e);
    let username: String = row.try_get("username").map_err(err)?;
    let corrupt = |field: &'static str| StoreError::Corrupt {
        db: target.into(),
        username: username.clone(),
        field,
        message: "out of range".into(),
    };
    let uid: Option<i64> = row.try_get("uid").map_err(err)?;
    let failed: i64 = row.try_get("failed_logins").map_err(err)?;
    let raw = RawUser {
        uid: uid
            .map(|u| u32::try_from(u).map_err(|_| corrupt("uid")))
            .transpose()?,
        owns_system_account: row.try_get("owns_system_account").map_err(err)?,
        role: row.try_get("role").map_err(err)?,
        email: row.try_get("email").map_err(err)?,
        full_name: row.try_get("full_name").map_err(err)?,
        active: row.try_get("is_active").map_err(err)?,
        expires: row.try_get("expires_on").map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
        updated_at: row.try_get("updated_at").map_err(err)?,
        last_login: row.try_get("last_login").map_err(err)?,
        password_changed_at: row.try_get("password_changed_at").map_err(err)?,
        failed_logins: u32::try_from(failed).map_err(|_| corrupt("failed_logins"))?,
        failure_window_start: row.try_get("failure_window_start").map_err(err)?,
        locked_at: row.try_get("locked_at").map_err(err)?,
        limits: row.try_get("limits").map_err(err)?,
        password_hash: row.try_get("password_hash").map_err(err)?,
        last_logout: row.try_get("last_logout").map_err(err)?,
        pending: row.try_get("pending").map_err(err)?,
        username: username.clone(),
    };
    raw.into_user(target)
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

impl Backend for PgStore {
    fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        self.find("WHERE u.username = $1", &[&name])
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = self.wait(
            self.client
                .query(&format!("{SELECT_USER} ORDER BY u.username"), &[]),
        )?;
        rows.iter()
            .map(|r| user_from_row(r, &self.target).map(|(u, _)| u))
            .collect()
    }

    fn sample_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let max_id: Option<i64> = self
            .wait(self.client.query_one("SELECT max(id) FROM users", &[]))?
            .get(0);
        let Some(max_id) = max_id
            .and_then(|m| u64::try_from(m).ok())
            .filter(|m| *m > 0)
        else {
            return Ok(None);
        };
        let start = sample_start(name, max_id);
        Ok(self
            .wait(self.client.query_opt(
                "SELECT password_hash FROM users WHERE id >= $1 ORDER BY id LIMIT 1",
                &[&start],
            ))?
            .map(|r| r.get(0)))
    }

    fn audit_log(&self, name: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self.wait(self.client.query(
            "SELECT at, actor, action, username, detail FROM audit_log \
             WHERE username = $1 ORDER BY id DESC LIMIT $2",
            &[&name, &i64::from(limit)],
        ))?;
        let mut entries: Vec<AuditEntry> = rows
            .iter()
            .map(|row| {
                let detail: String = row.get("detail");
                AuditEntry {
                    at: Timestamp(row.get("at")).to_string(),
                    actor: row.get("actor"),
                    action: row.get("action"),
                    username: row.get("username"),
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                }
            })
            .collect();
        entries.reverse();
        Ok(entries)
    }

    fn api_session(&self, token_hash: &str, now: Timestamp) -> Result<Option<User>, StoreError> {
        Ok(self
            .find(
                "JOIN api_sessions s ON s.user_id = u.id WHERE s.token_hash = $1 AND s.expires_at > $2",
                &[&token_hash, &now.0],
            )?
            .map(|(user, _)| user))
    }

    fn samples(
        &self,
        user: Option<&str>,
        from: Timestamp,
        to: Timestamp,
        bucket: u64,
    ) -> Result<Vec<Sample>, StoreError> {
        let bucket = i64::try_from(bucket.max(1)).unwrap_or(i64::MAX);
        let sql = match user {
            Some(_) => {
                "SELECT $1::text AS username, (at / $4) * $4 AS t, max(cpu_nsec) AS cpu, \
                 avg(memory_bytes)::bigint AS memory, max(tasks) AS tasks, \
                 max(disk_bytes) AS disk, avg(gpu_memory_bytes)::bigint AS gpu \
                 FROM usage_samples \
                 WHERE node = $5 AND user_id = (SELECT id FROM users WHERE username = $1) \
                 AND at BETWEEN $2 AND $3 \
                 GROUP BY t ORDER BY t"
            }
            None => {
                "SELECT u.username, b.t, b.cpu, b.memory, b.tasks, b.disk, b.gpu FROM \
                 (SELECT user_id, (at / $4) * $4 AS t, max(cpu_nsec) AS cpu, \
                  avg(memory_bytes)::bigint AS memory, max(tasks) AS tasks, \
                  max(disk_bytes) AS disk, avg(gpu_memory_bytes)::bigint AS gpu \
                  FROM usage_samples WHERE node = $5 AND at BETWEEN $2 AND $3 AND $1::text IS NULL \
                  GROUP BY user_id, t) b \
                 JOIN users u ON u.id = b.user_id ORDER BY u.username, b.t"
            }
        };
        let rows = self.wait(
            self.client
                .query(sql, &[&user, &from.0, &to.0, &bucket, &self.node]),
        )?;
        Ok(rows
            .iter()
            .map(|row| Sample {
                username: row.get("username"),
                at: Timestamp(row.get("t")),
                cpu_nsec: to_u64(row.get("cpu")),
                memory_bytes: to_u64(row.get("memory")),
                tasks: to_u64(row.get("tasks")),
                disk_bytes: to_u64(row.get("disk")),
                gpu_memory_bytes: to_u64(row.get("gpu")),
            })
            .collect())
    }

    fn sample_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .wait(self.client.query_one(
                "SELECT count(*) FROM usage_samples WHERE node = $1",
                &[&self.node],
            ))?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn counter(&self, counter: Counter) -> Result<u64, StoreError> {
        let row = self.wait(self.client.query_opt(
            "SELECT value FROM counters WHERE node = $1 AND name = $2",
            &[&self.node, &counter.name()],
        ))?;
        Ok(to_u64(row.map(|r| r.get(0))).unwrap_or(0))
    }

    fn limit_events(&self, user: Option<&str>, limit: u32) -> Result<Vec<LimitEvent>, StoreError> {
        let rows = self.wait(self.client.query(
            &format!(
                "{SELECT_EVENT} WHERE $1::text IS NULL OR u.username = $1 \
                 ORDER BY e.at DESC, e.id DESC LIMIT $2"
            ),
            &[&user, &i64::from(limit)],
        ))?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    fn gpu_use(&self, user: Option<&str>) -> Result<Vec<GpuUse>, StoreError> {
        let rows = self.wait(self.client.query(
            "SELECT u.username, g.node, g.gpu, g.granted_since, g.last_used \
             FROM gpu_use g JOIN users u ON u.id = g.user_id \
             WHERE $1::text IS NULL OR u.username = $1 ORDER BY u.username, g.node, g.gpu",
            &[&user],
        ))?;
        Ok(rows
            .iter()
            .map(|row| GpuUse {
                username: row.get("username"),
                node: row.get("node"),
                gpu: row.get("gpu"),
                granted_since: Timestamp(row.get("granted_since")),
                last_used: row.get::<_, Option<i64>>(4).map(Timestamp),
            })
            .collect())
    }

    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(self.begin_tx()?))
    }

    /// No query: a kept connection costs nothing more to reuse. A server
    /// gone meanwhile shows at the first query, which the cluster store
    /// then answers from its cache.
    fn is_reusable(&self) -> bool {
        !self.client.is_closed()
    }

    fn schema_is_current(&self) -> bool {
        matches!(self.schema_version(), Ok(Some(PG_SCHEMA_VERSION)))
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
}

impl PgStore {
    /// Starts a transaction (READ COMMITTED; the login path locks the row it
    /// counts on, see [`Transaction::login_state`]).
    pub fn begin_tx(&mut self) -> Result<PgTx<'_>, StoreError> {
        let Self {
            rt,
            client,
            target,
            timeout,
            node,
            statements,
        } = self;
        PgTx::new(client, rt, target, *timeout, node, statements)
    }
}
