//! The REST API of diycloud (DESIGN §11), started by `slicectl serve`.
//!
//! A thin front door, like the CLI: every route calls the library's use
//! cases (`auth` for logins and passwords, `admin` for users, `apply` for
//! limits), so the rules, the lockout and the audit log are the ones the PAM
//! module and `slicectl` use. Blocking work (argon2, SQLite, D-Bus, NVML)
//! runs on tokio's blocking pool, never on the async workers.
//!
//! Connections are served by a loop of its own over hyper's HTTP/1
//! connection (see [`conn`]): a header-read timeout, a request timeout, an
//! idle timeout, a cap on connections and a bounded shutdown, none of which
//! `axum::serve` has.

mod client;
mod conn;
mod csrf;
mod error;
mod hashing;
pub mod helper;
mod limiter;
mod metrics;
mod portal;
mod route;
mod router;
mod routes;
mod sampler;
mod session;
mod watcher;
mod work;

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libdiycloud::config::Config;
use libdiycloud::model::events::EventKind;
use libdiycloud::model::time::Timestamp;
use libdiycloud::store::{Database, Store, StoreError};
use libdiycloud::system::{self, SystemPorts};
use libdiycloud::usecases::watch::EventTotal;

pub use error::ApiError;
pub use router::{router, routes};

/// Where the server listens: `HOST:PORT` or a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with('/') {
            return Ok(Listen::Unix(PathBuf::from(s)));
        }
        s.parse().map(Listen::Tcp).map_err(|_| {
            format!(
                "{s:?} is neither HOST:PORT (an IP address and a port, e.g. 127.0.0.1:8480) \
                 nor the absolute path of a unix socket"
            )
        })
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "http://{addr}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: Listen,
        source: std::io::Error,
    },
    #[error("{0} exists and is not a socket: refusing to replace it")]
    NotASocket(PathBuf),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

/// What every request shares: the configuration, the database's path (each
/// request opens its own connection: SQLite in WAL mode serves many), the
/// outside systems, the login rate limiter and the gate of the password
/// hashing.
pub struct AppState {
    pub config: Config,
    pub db: Database,
    pub ports: SystemPorts,
    limiter: limiter::Limiter,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// Idle database connections, used again while they may
    /// ([`Store::is_reusable`]): opening SQLite for every request was most
    /// of a read's cost.
    idle: Mutex<Vec<Store>>,
    /// Where logins, password changes and new users wait for a CPU to
    /// hash on.
    hashing: hashing::Hashing,
    /// Every user's limit events by kind since the server started (the
    /// watcher's, for `/metrics`).
    limit_totals: Mutex<LimitTotals>,
}

/// Limit events by user and kind.
pub type LimitTotals = std::collections::BTreeMap<(String, EventKind), EventTotal>;

/// At most this many idle connections are kept.
const MAX_IDLE: usize = 32;

/// A connection lent by [`AppState::store`]; back to the pool when dropped.
pub struct Kept<'a> {
    state: &'a AppState,
    store: Option<Store>,
}

impl std::ops::Deref for Kept<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        // Always Some until drop.
        self.store.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Kept<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.store.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Kept<'_> {
    fn drop(&mut self) {
        if let (Some(store), Ok(mut idle)) = (self.store.take(), self.state.idle.lock()) {
            if idle.len() < MAX_IDLE {
                idle.push(store);
            }
        }
    }
}

/// Where the server reads the time: the system clock, or a test's.
pub type Clock = Box<dyn Fn() -> Timestamp + Send + Sync>;

impl AppState {
    pub fn new(config: Config, db: impl Into<Database>) -> Self {
        Self::build(config, db.into(), Arc::new(system_now), monotonic())
    }

    /// With another clock (tests set the time instead of waiting); the
    /// login rate limit follows it too.
    pub fn with_clock(config: Config, db: impl Into<Database>, clock: Clock) -> Self {
        let clock: Arc<dyn Fn() -> Timestamp + Send + Sync> = Arc::from(clock);
        let read = Arc::clone(&clock);
        let ticks = limiter::Ticks::new(move || {
            std::time::Duration::from_secs(u64::try_from(read().0).unwrap_or(0))
        });
        Self::build(config, db.into(), clock, ticks)
    }

    fn build(
        config: Config,
        db: Database,
        clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
        ticks: limiter::Ticks,
    ) -> Self {
        let limiter = limiter::Limiter::new(config.api.login_rate, ticks);
        let hashing = hashing::Hashing::new(
            config.api.login_queue,
            std::time::Duration::from_secs(config.api.login_wait),
        );
        Self {
            config,
            db,
            ports: system::ports(),
            limiter,
            clock,
            idle: Mutex::new(Vec::new()),
            hashing,
            limit_totals: Mutex::new(LimitTotals::new()),
        }
    }

    /// A connection to the database: an idle one that may serve again, else
    /// a new one (which checks the file's trust and schema as it opens).
    pub fn store(&self) -> Result<Kept<'_>, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let store = match idle {
            Some(store) if store.is_reusable() => store,
            _ => Store::open_database(&self.db)?,
        };
        Ok(Kept {
            state: self,
            store: Some(store),
        })
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }
}

// The entry point of the server: the one place it reads the clock.
#[allow(clippy::disallowed_methods)]
fn system_now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

/// The login rate limit's clock in the server: monotonic, so a change of
/// the wall clock neither empties nor refills the buckets.
#[allow(clippy::disallowed_methods)]
fn monotonic() -> limiter::Ticks {
    let start = std::time::Instant::now();
    limiter::Ticks::new(move || start.elapsed())
}

/// The server's log (its messages and the access log, one line per
/// request) on stderr, at level INFO: the journal under systemd, which
/// stamps each line itself (`JOURNAL_STREAM` says stderr goes there), a
/// terminal with the time otherwise. A second call (a test that serves
/// twice) keeps the first.
fn log_to_stderr() {
    let format = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO);
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        format.without_time().try_init()
    } else {
        format.try_init()
    };
}

/// Serves until SIGINT or SIGTERM. Blocks the calling thread, which runs
/// the runtime; says "listening on" on stderr once the address is bound
/// (not before: a port in use fails without it); returns when the server
/// has stopped, at most `[api] shutdown_timeout` after the signal.
pub fn serve(config: Config, db: Database, listen: Listen) -> Result<(), ServeError> {
    log_to_stderr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let served = runtime.block_on(run(Arc::new(AppState::new(config, db)), listen, |bound| {
        eprintln!("slicectl serve: listening on {bound}")
    }));
    // Work still on the blocking pool (a long read of the database, a
    // hash) is not waited for: its client was cut off with the rest.
    runtime.shutdown_background();
    served
}

/// Serves `state` on 127.0.0.1 at a port the kernel picks, on a thread of
/// its own with its own runtime, for as long as the process lives: for
/// tests and benchmarks. Returns the address once it listens.
pub fn spawn_on_loopback(state: Arc<AppState>) -> Result<SocketAddr, ServeError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = tx.clone();
    std::thread::spawn(move || {
        let served = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)
            .and_then(|runtime| {
                let loopback = Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)));
                runtime.block_on(run(state, loopback, |bound| {
                    if let Listen::Tcp(addr) = bound {
                        let _ = tx.send(Ok(*addr));
                    }
                }))
            });
        if let Err(e) = served {
            let _ = failed.send(Err(e));
        }
    });
    rx.recv()
        .map_err(|_| ServeError::Serve(std::io::Error::other("the server's thread ended")))?
}

/// Serves `state` on `listen` until SIGINT or SIGTERM; `ready` is told the
/// address once bound (tests bind port 0 and learn the port).
pub async fn run(
    state: Arc<AppState>,
    listen: Listen,
    ready: impl FnOnce(&Listen),
) -> Result<(), ServeError> {
    run_until(state, listen, ready, shutdown()).await
}

/// [`run`] until `stop` completes: then no new connection is taken, the
/// requests in progress get `[api] shutdown_timeout` to finish, and it
/// returns.
pub async fn run_until(
    state: Arc<AppState>,
    listen: Listen,
    ready: impl FnOnce(&Listen),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    if state.config.history.interval > 0 {
        tokio::spawn(sampler::sample_forever(Arc::clone(&state)));
    }
    if state.config.events.interval > 0 {
        tokio::spawn(watcher::watch_forever(Arc::clone(&state)));
    }
    if state.config.audit.interval > 0 {
        tokio::spawn(sampler::prune_audit_forever(Arc::clone(&state)));
    }
    let limits = conn::Limits::of(&state.config.api);
    let app = router(state);
    match &listen {
        Listen::Tcp(addr) => {
            let listener = bind_tcp(*addr).map_err(|source| ServeError::Bind {
                listen: listen.clone(),
                source,
            })?;
            let bound = listener.local_addr().map_or(listen.clone(), Listen::Tcp);
            ready(&bound);
            conn::serve(conn::Listener::Tcp(listener), app, limits, stop).await;
            Ok(())
        }
        Listen::Unix(path) => {
            let listener = bind_unix(path).map_err(|e| match e {
                UnixBindError::NotASocket => ServeError::NotASocket(path.clone()),
                UnixBindError::Io(source) => ServeError::Bind {
                    listen: listen.clone(),
                    source,
                },
            })?;
            ready(&listen);
            conn::serve(conn::Listener::Unix(listener), app, limits, stop).await;
            Ok(())
        }
    }
}

/// Binds `addr` with a backlog as deep as the kernel allows (up to
/// somaxconn): 1,100 clients that reconnect at once, or connections over
/// `[api] max_connections`, wait there instead of having their SYNs
/// dropped (and retried a second later).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The listening socket's backlog (the kernel caps it at somaxconn).
const BACKLOG: u32 = 4096;

enum UnixBindError {
    NotASocket,
    Io(std::io::Error),
}

/// Binds a unix socket at `path`, replacing a stale socket (never another
/// kind of file), mode 0660: the proxy's group may connect, nobody else.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, UnixBindError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(UnixBindError::Io)?;
        }
        Ok(_) => return Err(UnixBindError::NotASocket),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(UnixBindError::Io(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(UnixBindError::Io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(UnixBindError::Io)?;
    Ok(listener)
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
