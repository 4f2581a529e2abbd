//! The REST API of diycloud (DESIGN §11), started by `slicectl serve`.
//!
//! A thin front door, like the CLI: every route calls the library's use
//! cases (`auth` for logins and passwords, `admin` for users, `apply` for
//! limits), so the rules, the lockout and the audit log are the ones the PAM
//! module and `slicectl` use. Blocking work (argon2, SQLite, D-Bus, NVML)
//! runs on tokio's blocking pool, never on the async workers.

mod client;
mod error;
mod hashing;
mod limiter;
mod metrics;
mod portal;
mod routes;
mod sampler;
mod watcher;

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libdiycloud::apply::Ports;
use libdiycloud::config::Config;
use libdiycloud::model::events::EventKind;
use libdiycloud::model::time::Timestamp;
use libdiycloud::store::{Database, Store, StoreError};
use libdiycloud::watch::EventTotal;

pub use error::ApiError;
pub use routes::router;

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
    pub ports: Ports,
    limiter: limiter::Limiter,
    clock: Clock,
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
        Self::with_clock(config, db, Box::new(system_now))
    }

    /// With another clock (tests set the time instead of waiting).
    pub fn with_clock(config: Config, db: impl Into<Database>, clock: Clock) -> Self {
        let limiter = limiter::Limiter::new(config.api.login_rate, 60);
        Self {
            config,
            db: db.into(),
            ports: Ports::system(),
            limiter,
            clock,
            idle: Mutex::new(Vec::new()),
            hashing: hashing::Hashing::new(),
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

/// Serves until SIGINT or SIGTERM. Blocks the calling thread, which runs
/// the runtime; returns when the server has stopped.
pub fn serve(config: Config, db: Database, listen: Listen) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(run(Arc::new(AppState::new(config, db)), listen, |_| {}))
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

/// Serves `state` on `listen`; `ready` is told the address once bound
/// (tests bind port 0 and learn the port).
pub async fn run(
    state: Arc<AppState>,
    listen: Listen,
    ready: impl FnOnce(&Listen),
) -> Result<(), ServeError> {
    if state.config.history.interval > 0 {
        tokio::spawn(sampler::sample_forever(Arc::clone(&state)));
    }
    if state.config.events.interval > 0 {
        tokio::spawn(watcher::watch_forever(Arc::clone(&state)));
    }
    let app = router(state);
    match &listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    listen: listen.clone(),
                    source,
                })?;
            let bound = listener.local_addr().map_or(listen.clone(), Listen::Tcp);
            ready(&bound);
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(ServeError::Serve)
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
            axum::serve(listener, app.into_make_service())
                .with_graceful_shutdown(shutdown())
                .await
                .map_err(ServeError::Serve)
        }
    }
}

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
