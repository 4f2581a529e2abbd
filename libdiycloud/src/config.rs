//! `/etc/diycloud/diycloud.toml`: every key optional, defaults compiled in,
//! unknown keys and bad values are errors that name the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::limits::{Allocation, Limit, LimitChanges, Scalar, LIMITS};
use crate::model::lockout::LockoutPolicy;
use crate::model::password::{HashParams, PasswordPolicy};
use crate::model::quota::QuotaPolicy;
use crate::model::time::parse_duration;
use crate::store::{Database, PostgresSettings};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/diycloud/diycloud.toml";
pub const DEFAULT_DB_PATH: &str = "/var/lib/diycloud/diycloud.db";
/// `[postgres] cache`: the node's copy of what logins need.
pub const DEFAULT_CACHE_PATH: &str = "/var/lib/diycloud/cache.db";
/// `[postgres] ca_file`: the system's CA bundle (Debian's ca-certificates).
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// `[postgres] connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `[postgres] cache_max_age`: how long an outage the cache carries logins
/// through, and so the longest that a change made elsewhere (a disabled
/// account, a new password) can go unseen on a cut-off node. A night's
/// outage, not a week's.
pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// The managed accounts' group; also what the PAM module falls back to when
/// the config itself cannot be read.
pub const DEFAULT_GROUP: &str = "diycloud";

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The SQLite file, or the PostgreSQL database with its `[postgres]` settings.
    pub db: Database,
    /// `[postgres]`: what a `postgresql://` `db` (here or on the command
    /// line) goes with; its `url` is empty.
    pub postgres: PostgresSettings,
    pub hash: HashParams,
    pub password: PasswordPolicy,
    pub lockout: LockoutPolicy,
    pub defaults: Allocation,
    pub shell: PathBuf,
    /// The group every managed account is in: how the PAM module tells
    /// diycloud's users from others while the database cannot be read.
    pub group: String,
    /// `[accounts] link_from_web`: which existing system accounts the REST
    /// API and the portal may link (root's `slicectl` may link any).
    pub link_from_web: WebLink,
    pub on_session_error: SessionErrorPolicy,
    pub quota: QuotaConfig,
    pub api: ApiConfig,
    pub history: HistoryConfig,
    pub events: EventsConfig,
    pub audit: AuditConfig,
    pub gpus: GpusConfig,
}

/// `[gpus]`: the node's GPUs as `usage` and the portal judge them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpusConfig {
    /// Seconds a GPU granted by name may go without a process of its user
    /// before `usage` and the admin's page flag it; 0 flags none.
    pub idle_after: u64,
}

impl Default for GpusConfig {
    fn default() -> Self {
        // Longer than a lunch break, shorter than a forgotten weekend.
        Self {
            idle_after: 4 * 3600,
        }
    }
}

/// `[events]`: the limit events `slicectl serve` watches for (OOM kills,
/// reclaim above `MemoryHigh`, CPU throttling), and the notice at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsConfig {
    /// Seconds between two looks at the slices' counters; 0 watches nothing.
    pub interval: u64,
    /// Seconds an event is kept.
    pub keep: u64,
    /// The most events kept (the oldest go first).
    pub max_rows: u64,
    /// Whether session open tells a user what happened since their last login.
    pub notify_at_login: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            // Often enough to catch a kill before a slice that ends with it
            // goes (the kernel log catches the rest), cheap: two small
            // files per logged-in user.
            interval: 10,
            keep: 90 * 24 * 3600,
            // Throttling merges into a row per user and hour: 100 users
            // throttled all the time fill this in about 40 days.
            max_rows: 100_000,
            notify_at_login: true,
        }
    }
}

/// `[history]`: the usage history `slicectl serve` samples for the portal's
/// charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Seconds between samples; 0 samples nothing.
    pub interval: u64,
    /// Seconds a sample is kept.
    pub keep: u64,
    /// The most samples kept (the oldest go first).
    pub max_rows: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            interval: 60,
            // A week's chart, and a day to spare.
            keep: 8 * 24 * 3600,
            // At 60 s, 50 users logged in all week: about 60 MB.
            max_rows: 1_000_000,
        }
    }
}

/// `[audit]`: how long the audit log (who changed what, API and portal
/// logins, lockouts) is kept; `slicectl serve` prunes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// Seconds between two prunings; 0 prunes nothing (the log grows
    /// with every API and portal login).
    pub interval: u64,
    /// Seconds an entry is kept.
    pub keep: u64,
    /// The most entries kept (the oldest go first).
    pub max_rows: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            interval: 600,
            // A year: enough for a yearly review of who changed what.
            keep: 366 * 24 * 3600,
            // About 50 MB in SQLite (a login's entry takes some 100 bytes
            // with its index): a year of 1,300 logins and changes a day.
            max_rows: 500_000,
        }
    }
}

/// `[api]`: the REST API of `slicectl serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `HOST:PORT`, or the absolute path of a unix socket.
    pub listen: String,
    /// How long a login's token lasts, in seconds.
    pub session_ttl: u64,
    /// Login attempts one client may make per minute before 429.
    pub login_rate: u32,
    /// Peers whose `X-Forwarded-For` names the client (the nginx in front).
    /// None by default: any local user can connect to loopback and write
    /// the header.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The file of the bearer token a scraper sends for `/metrics`' per-user
    /// series (Prometheus' `authorization.credentials_file` holds the same).
    pub metrics_token_file: Option<PathBuf>,
    /// Per-user series for every process on the node that asks directly,
    /// without a credential (the explicit opt-out).
    pub metrics_public: bool,
    /// Seconds a client has to send a request's headers, counted from the
    /// moment the server waits for them (so also a kept-alive connection's
    /// wait for its next request).
    pub header_read_timeout: u64,
    /// Seconds a request may take, its body and the server's work, before
    /// it is answered 503.
    pub request_timeout: u64,
    /// Seconds a connection may go without a byte moving either way while
    /// no request is being worked on (a client that stops reading its
    /// answer).
    pub idle_timeout: u64,
    /// Connections served at once; further ones wait in the kernel's
    /// backlog until one closes.
    pub max_connections: u32,
    /// Password checks waiting for a hashing slot past which a login is
    /// answered 503 with Retry-After at once (a session's password change
    /// or new user always waits its turn).
    pub login_queue: u32,
    /// Seconds a login waits in that queue before it is answered 503 with
    /// Retry-After (a login never hangs behind a flood).
    pub login_wait: u64,
    /// Seconds a stop (SIGTERM) waits for requests in progress before the
    /// server exits anyway.
    pub shutdown_timeout: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8480".into(),
            session_ttl: 8 * 3600,
            login_rate: 10,
            trusted_proxies: Vec::new(),
            metrics_token_file: None,
            metrics_public: false,
            header_read_timeout: 10,
            request_timeout: 60,
            idle_timeout: 60,
            max_connections: 4096,
            login_queue: 64,
            login_wait: 1,
            shutdown_timeout: 10,
        }
    }
}

/// `[quota]`: where users' disk quotas apply, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Mount points with user quotas; none: quotas are off.
    pub filesystems: Vec<PathBuf>,
    pub policy: QuotaPolicy,
}

/// Which existing system accounts an admin of the API or the portal may
/// link to diycloud (give a diycloud password and limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebLink {
    /// None: linking is root's decision, through `slicectl` (the default).
    #[default]
    None,
    /// Those in none of the groups that can become root (sudo, wheel, ...).
    Unprivileged,
    /// Any account from UID_MIN up.
    All,
}

/// What session open does when it cannot apply a user's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionErrorPolicy {
    /// Refuse the login (the default: a user must not run unlimited).
    Deny,
    /// Let the user in and log the failure.
    Allow,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            password_file: None,
            cache: PathBuf::from(DEFAULT_CACHE_PATH),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ca_file: PathBuf::from(DEFAULT_CA_FILE),
            lockout: LockoutPolicy::default(),
            cache_max_age: DEFAULT_CACHE_MAX_AGE,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            db: Database::Sqlite(PathBuf::from(DEFAULT_DB_PATH)),
            postgres: PostgresSettings::default(),
            hash: HashParams::default(),
            password: PasswordPolicy::default(),
            lockout: LockoutPolicy::default(),
            defaults: Allocation::default(),
            shell: PathBuf::from("/bin/bash"),
            group: DEFAULT_GROUP.to_owned(),
            link_from_web: WebLink::None,
            on_session_error: SessionErrorPolicy::Deny,
            quota: QuotaConfig::default(),
            api: ApiConfig::default(),
            history: HistoryConfig::default(),
            events: EventsConfig::default(),
            audit: AuditConfig::default(),
            gpus: GpusConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("config refused: {0}")]
    Untrusted(#[from] crate::trust::TrustError),
}

// The file's shape. Each section is kept as TOML here and read on its own
// (so one section's error, even an unknown key, is that section's alone);
// values stay text and are validated below, so an error can name the key.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    db: Option<String>,
    postgres: Option<toml::Value>,
    password: Option<toml::Value>,
    lockout: Option<toml::Value>,
    defaults: Option<toml::Value>,
    accounts: Option<toml::Value>,
    session: Option<toml::Value>,
    quota: Option<toml::Value>,
    api: Option<toml::Value>,
    history: Option<toml::Value>,
    events: Option<toml::Value>,
    audit: Option<toml::Value>,
    gpus: Option<toml::Value>,
}

/// The section `name` of the file, in its own shape (defaults if absent).
fn section<T: serde::de::DeserializeOwned + Default>(
    name: &str,
    value: Option<toml::Value>,
) -> Result<T, String> {
    match value {
        None => Ok(T::default()),
        Some(value) => T::deserialize(value).map_err(|e| format!("{name}: {}", e.message())),
    }
}

/// Who reads the config, and so which sections must be right for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The PAM module: a section it does not read never stops a login.
    Module,
    /// slicectl's commands but `serve`: the server's sections are its own.
    Admin,
    /// `slicectl serve` and `slicectl config check`: every section.
    Server,
}

impl Reader {
    /// Whether an error in `section` stops this reader (the others are
    /// left at their defaults and reported by [`Loaded::ignored`]).
    fn needs(self, section: &str) -> bool {
        // The module reads the database, its own policy and what session
        // open applies; `events.notify_at_login` is its, the rest of
        // `[events]` the watcher's.
        const SERVER_ONLY: &[&str] = &["api", "history", "audit", "events"];
        const NOT_THE_MODULES: &[&str] = &["defaults", "gpus"];
        match self {
            Reader::Server => true,
            Reader::Admin => !SERVER_ONLY.contains(&section),
            Reader::Module => {
                !SERVER_ONLY.contains(&section) && !NOT_THE_MODULES.contains(&section)
            }
        }
    }
}

/// A config as one reader loaded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// Errors in sections this reader does not use, left at their defaults
    /// (`slicectl config check` names them too).
    pub ignored: Vec<String>,
}

/// One error of a config file, where it is (`slicectl config check`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// 1-based line and column; `None` when the place cannot be told.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The section (or `section.key`) at fault, if known.
    pub key: Option<String>,
    pub message: String,
}

/// An error of one section: the section and the message (which starts
/// with `section.key:` where a key is to blame).
type SectionError = (&'static str, String);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    interval: Option<String>,
    keep: Option<String>,
    max_rows: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGpus {
    idle_after: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    interval: Option<String>,
    keep: Option<String>,
    max_rows: Option<i64>,
    // A value, not a bool: serde's error would not name the key.
    notify_at_login: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    password_file: Option<PathBuf>,
    cache: Option<PathBuf>,
    connect_timeout: Option<String>,
    ca_file: Option<PathBuf>,
    cache_max_age: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    interval: Option<String>,
    keep: Option<String>,
    max_rows: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    session_ttl: Option<String>,
    login_rate: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
    metrics_token_file: Option<PathBuf>,
    metrics_public: Option<bool>,
    header_read_timeout: Option<String>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<u32>,
    login_queue: Option<u32>,
    login_wait: Option<String>,
    shutdown_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    filesystems: Option<Vec<PathBuf>>,
    soft_percent: Option<i64>,
    inodes: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSession {
    on_session_error: Option<SessionErrorPolicy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPassword {
    memory_kib: Option<u32>,
    iterations: Option<u32>,
    parallelism: Option<u32>,
    min_length: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLockout {
    deny: Option<u32>,
    fail_interval: Option<String>,
    unlock_time: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAccounts {
    shell: Option<PathBuf>,
    group: Option<String>,
    // Text: serde's own error would not name the key.
    link_from_web: Option<String>,
}

impl Config {
    /// Loads `path` with every section checked (what `slicectl serve` and
    /// the tests use). A missing file at the default path means "all
    /// defaults"; a missing file the admin named explicitly is an error.
    /// The file, and every directory above it, must pass
    /// [`crate::trust::check_file`]: a config others could write could
    /// point `db` anywhere.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        Self::load_for(path, explicit, Reader::Server).map(|loaded| loaded.config)
    }

    /// Loads `path` for `reader`: an error in a section it does not use is
    /// set aside in [`Loaded::ignored`], not returned.
    pub fn load_for(path: &Path, explicit: bool, reader: Reader) -> Result<Loaded, ConfigError> {
        let path = &std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let Some(text) = Self::read_trusted(path, explicit)? else {
            return Ok(Loaded {
                config: Self::default(),
                ignored: Vec::new(),
            });
        };
        Self::parse_for(&text, reader).map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })
    }

    /// The text of `path`, once it passed the trust rules; `None` when it
    /// is absent and was not named explicitly.
    pub fn read_trusted(path: &Path, explicit: bool) -> Result<Option<String>, ConfigError> {
        crate::trust::check_file(path)?;
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(None),
            Err(source) => Err(ConfigError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// Parses the text of a config file, every section checked.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_for(text, Reader::Server).map(|loaded| loaded.config)
    }

    /// Parses the text of a config file for `reader`.
    pub fn parse_for(text: &str, reader: Reader) -> Result<Loaded, String> {
        let (config, errors) = Self::parse_sections(text)?;
        let (fatal, ignored): (Vec<_>, Vec<_>) =
            errors.into_iter().partition(|(name, _)| reader.needs(name));
        if !fatal.is_empty() {
            let messages: Vec<String> = fatal.into_iter().map(|(_, m)| m).collect();
            return Err(messages.join("; "));
        }
        Ok(Loaded {
            config,
            ignored: ignored.into_iter().map(|(_, m)| m).collect(),
        })
    }

    /// Every error of a config file, with its line and column where it can
    /// be told (`slicectl config check`, like `sshd -t`).
    pub fn check(text: &str) -> Vec<Problem> {
        match Self::parse_sections(text) {
            Err(message) => {
                // The TOML itself, or a key outside every section.
                let place = toml::from_str::<toml::Table>(text)
                    .err()
                    .and_then(|e| e.span())
                    .map(|span| line_and_column(text, span.start));
                vec![Problem {
                    line: place.map(|p| p.0),
                    column: place.map(|p| p.1),
                    key: None,
                    message,
                }]
            }
            Ok((_, errors)) => errors
                .into_iter()
                .map(|(section, message)| {
                    let key = message
                        .split_once(':')
                        .map(|(k, _)| k)
                        .filter(|k| k.starts_with(section) && !k.contains(' '))
                        .unwrap_or(section)
                        .to_owned();
                    let place = locate(text, &key);
                    Problem {
                        line: place.map(|p| p.0),
                        column: place.map(|p| p.1),
                        key: Some(key),
                        message,
                    }
                })
                .collect(),
        }
    }

    /// Reads every section on its own: the config with each good section,
    /// and each bad one's error (that section left at its defaults). Only
    /// a file that is not TOML, or has a key outside every section, fails
    /// whole.
    fn parse_sections(text: &str) -> Result<(Self, Vec<SectionError>), String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut config = Config::default();
        let mut errors: Vec<SectionError> = Vec::new();
        let mut keep = |name: &'static str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push((name, message));
            }
        };
        keep("password", password_section(raw.password, &mut config));
        keep("lockout", lockout_section(raw.lockout, &mut config.lockout));
        keep(
            "defaults",
            defaults_section(raw.defaults, &mut config.defaults),
        );
        keep("accounts", accounts_section(raw.accounts, &mut config));
        keep(
            "session",
            section::<RawSession>("session", raw.session).map(|s| {
                if let Some(policy) = s.on_session_error {
                    config.on_session_error = policy;
                }
            }),
        );
        keep(
            "quota",
            section("quota", raw.quota)
                .and_then(quota_config)
                .map(|q| config.quota = q),
        );
        keep(
            "api",
            section("api", raw.api)
                .and_then(api_config)
                .map(|a| config.api = a),
        );
        keep(
            "history",
            section("history", raw.history)
                .and_then(history_config)
                .map(|h| config.history = h),
        );
        // `notify_at_login` is the module's; the rest is the watcher's.
        let (events, notify) = match section::<RawEvents>("events", raw.events) {
            Ok(mut raw) => {
                let notify = raw.notify_at_login.take();
                (events_config(raw), notify)
            }
            Err(e) => (Err(e), None),
        };
        keep("events", events.map(|e| config.events = e));
        keep(
            "events.notify_at_login",
            notify_at_login(notify).map(|n| {
                if let Some(n) = n {
                    config.events.notify_at_login = n;
                }
            }),
        );
        keep(
            "audit",
            section("audit", raw.audit)
                .and_then(audit_config)
                .map(|a| config.audit = a),
        );
        keep(
            "gpus",
            section::<RawGpus>("gpus", raw.gpus).and_then(|g| {
                if let Some(d) = g.idle_after {
                    config.gpus.idle_after =
                        parse_duration(&d).map_err(|e| format!("gpus.idle_after: {e}"))?;
                }
                Ok(())
            }),
        );
        config.postgres.lockout = config.lockout;
        keep(
            "postgres",
            postgres_section(raw.postgres, &mut config.postgres),
        );
        if let Some(db) = raw.db {
            match Database::parse(&db, &config.postgres) {
                Ok(parsed) => config.db = parsed,
                Err(e) => keep("db", Err(format!("db: {e}"))),
            }
        }
        Ok((config, errors))
    }
}

fn password_section(raw: Option<toml::Value>, config: &mut Config) -> Result<(), String> {
    let p: RawPassword = section("password", raw)?;
    let hash = HashParams {
        memory_kib: p.memory_kib.unwrap_or(config.hash.memory_kib),
        iterations: p.iterations.unwrap_or(config.hash.iterations),
        parallelism: p.parallelism.unwrap_or(config.hash.parallelism),
    };
    hash.check().map_err(|e| format!("password: {e}"))?;
    config.hash = hash;
    if let Some(min) = p.min_length {
        config.password.min_length = min;
    }
    Ok(())
}

fn lockout_section(raw: Option<toml::Value>, lockout: &mut LockoutPolicy) -> Result<(), String> {
    let l: RawLockout = section("lockout", raw)?;
    let mut read = *lockout;
    read.deny = l.deny.unwrap_or(read.deny);
    if let Some(d) = l.fail_interval {
        read.fail_interval =
            parse_duration(&d).map_err(|e| format!("lockout.fail_interval: {e}"))?;
    }
    if let Some(d) = l.unlock_time {
        read.unlock_time = parse_duration(&d).map_err(|e| format!("lockout.unlock_time: {e}"))?;
    }
    *lockout = read;
    Ok(())
}

/// `[defaults]`: one key per limit ([`LIMITS`]), each a text or, where
/// the limit takes one, a number (`cpu = 1.5` and `cpu = "150%"` are both
/// natural in TOML).
fn defaults_section(raw: Option<toml::Value>, defaults: &mut Allocation) -> Result<(), String> {
    let table = match raw {
        None => return Ok(()),
        Some(toml::Value::Table(table)) => table,
        Some(_) => return Err("defaults: expected a table".into()),
    };
    let mut changes = LimitChanges::default();
    for (key, value) in &table {
        let Some(limit) = Limit::by_key(key) else {
            let keys: Vec<String> = LIMITS.iter().map(|l| format!("`{}`", l.key)).collect();
            return Err(format!(
                "defaults: unknown field `{key}`, expected one of {}",
                keys.join(", ")
            ));
        };
        let value = match value {
            toml::Value::String(text) => Scalar::Text(text),
            toml::Value::Integer(n) => Scalar::Integer(*n),
            toml::Value::Float(x) => Scalar::Float(*x),
            other => {
                return Err(format!(
                    "defaults.{key}: expected {}, not a {}",
                    limit.number.expected(),
                    other.type_str()
                ))
            }
        };
        changes
            .set_scalar(limit, value)
            .map_err(|e| format!("defaults.{e}"))?;
    }
    let a = changes.applied_to(defaults);
    a.check().map_err(|e| format!("defaults: {e}"))?;
    *defaults = a;
    Ok(())
}

fn accounts_section(raw: Option<toml::Value>, config: &mut Config) -> Result<(), String> {
    let a: RawAccounts = section("accounts", raw)?;
    if let Some(shell) = a.shell {
        if !shell.is_absolute() {
            return Err(format!(
                "accounts.shell: {} is not an absolute path",
                shell.display()
            ));
        }
        config.shell = shell;
    }
    if let Some(group) = a.group {
        crate::model::Username::parse(&group).map_err(|_| {
            format!("accounts.group: {group:?} is not a valid group name (the rule of user names)")
        })?;
        config.group = group;
    }
    if let Some(rule) = a.link_from_web {
        config.link_from_web = match rule.as_str() {
            "none" => WebLink::None,
            "unprivileged" => WebLink::Unprivileged,
            "all" => WebLink::All,
            _ => {
                return Err(format!(
                    "accounts.link_from_web: {rule:?} is not one of \"none\", \"unprivileged\", \"all\""
                ))
            }
        };
    }
    Ok(())
}

fn postgres_section(
    raw: Option<toml::Value>,
    postgres: &mut PostgresSettings,
) -> Result<(), String> {
    let pg: RawPostgres = section("postgres", raw)?;
    let absolute = |key: &str, path: PathBuf| {
        if path.is_absolute() {
            Ok(path)
        } else {
            Err(format!(
                "postgres.{key}: {} is not an absolute path",
                path.display()
            ))
        }
    };
    let mut read = postgres.clone();
    if let Some(path) = pg.password_file {
        read.password_file = Some(absolute("password_file", path)?);
    }
    if let Some(path) = pg.cache {
        read.cache = absolute("cache", path)?;
    }
    if let Some(path) = pg.ca_file {
        read.ca_file = absolute("ca_file", path)?;
    }
    if let Some(d) = pg.connect_timeout {
        let seconds = parse_duration(&d).map_err(|e| format!("postgres.connect_timeout: {e}"))?;
        if !(1..=60).contains(&seconds) {
            return Err(format!(
                "postgres.connect_timeout: {d} is not between 1s and 60s (every login may wait this long)"
            ));
        }
        read.connect_timeout = Duration::from_secs(seconds);
    }
    if let Some(d) = pg.cache_max_age {
        let seconds = parse_duration(&d).map_err(|e| format!("postgres.cache_max_age: {e}"))?;
        if seconds == 0 {
            return Err("postgres.cache_max_age: must be longer than 0s".into());
        }
        read.cache_max_age = Duration::from_secs(seconds);
    }
    *postgres = read;
    Ok(())
}

/// The 1-based line and column of byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Where `key` (`section` or `section.key`) is set in `text`: the key's
/// line, else its section's header.
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let (section, name) = match key.split_once('.') {
        Some((section, name)) => (section, Some(name)),
        None => (key, None),
    };
    let mut current = "";
    let mut header = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix('[') {
            current = rest.split(']').next().unwrap_or("").trim();
            if current == section {
                header = Some((i + 1, line.len() - trimmed.len() + 1));
            }
            continue;
        }
        if current != section {
            continue;
        }
        if let Some(name) = name {
            let is_key = trimmed
                .strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if is_key {
                return Some((i + 1, line.len() - trimmed.len() + 1));
            }
        }
    }
    header
}

fn api_config(raw: RawApi) -> Result<ApiConfig, String> {
    let mut api = ApiConfig::default();
    if let Some(listen) = raw.listen {
        let is_socket = listen.starts_with('/');
        if !is_socket && listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "api.listen: {listen:?} is neither HOST:PORT (an IP address and a port) nor the absolute path of a unix socket"
            ));
        }
        api.listen = listen;
    }
    if let Some(ttl) = raw.session_ttl {
        api.session_ttl = parse_duration(&ttl).map_err(|e| format!("api.session_ttl: {e}"))?;
        if api.session_ttl == 0 {
            return Err("api.session_ttl: must be longer than 0s".into());
        }
    }
    if let Some(rate) = raw.login_rate {
        if rate == 0 {
            return Err("api.login_rate: must be at least 1 (attempts per minute)".into());
        }
        api.login_rate = rate;
    }
    if let Some(proxies) = raw.trusted_proxies {
        api.trusted_proxies = proxies
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|_| format!("api.trusted_proxies: {p:?} is not an IP address"))
            })
            .collect::<Result<_, _>>()?;
    }
    for (key, raw, into) in [
        (
            "header_read_timeout",
            raw.header_read_timeout,
            &mut api.header_read_timeout,
        ),
        (
            "request_timeout",
            raw.request_timeout,
            &mut api.request_timeout,
        ),
        ("idle_timeout", raw.idle_timeout, &mut api.idle_timeout),
        (
            "shutdown_timeout",
            raw.shutdown_timeout,
            &mut api.shutdown_timeout,
        ),
    ] {
        if let Some(d) = raw {
            *into = parse_duration(&d).map_err(|e| format!("api.{key}: {e}"))?;
            if *into == 0 {
                return Err(format!("api.{key}: must be longer than 0s"));
            }
        }
    }
    if let Some(max) = raw.max_connections {
        if max == 0 {
            return Err("api.max_connections: must be at least 1".into());
        }
        api.max_connections = max;
    }
    if let Some(queue) = raw.login_queue {
        api.login_queue = queue;
    }
    if let Some(wait) = raw.login_wait {
        api.login_wait = parse_duration(&wait).map_err(|e| format!("api.login_wait: {e}"))?;
        if api.login_wait == 0 {
            return Err("api.login_wait: must be longer than 0s".into());
        }
    }
    if let Some(file) = raw.metrics_token_file {
        if !file.is_absolute() {
            return Err(format!(
                "api.metrics_token_file: {} is not an absolute path",
                file.display()
            ));
        }
        api.metrics_token_file = Some(file);
    }
    api.metrics_public = raw.metrics_public.unwrap_or(api.metrics_public);
    Ok(api)
}

fn history_config(raw: RawHistory) -> Result<HistoryConfig, String> {
    let mut history = HistoryConfig::default();
    let keys = (raw.interval, raw.keep, raw.max_rows);
    let targets = (
        &mut history.interval,
        &mut history.keep,
        &mut history.max_rows,
    );
    retention_keys("history", "samples", keys, targets)?;
    Ok(history)
}

fn audit_config(raw: RawAudit) -> Result<AuditConfig, String> {
    let mut audit = AuditConfig::default();
    let keys = (raw.interval, raw.keep, raw.max_rows);
    let targets = (&mut audit.interval, &mut audit.keep, &mut audit.max_rows);
    retention_keys("audit", "audit entries", keys, targets)?;
    Ok(audit)
}

/// `[events]` but `notify_at_login` (see [`notify_at_login`]).
fn events_config(raw: RawEvents) -> Result<EventsConfig, String> {
    let mut events = EventsConfig::default();
    let keys = (raw.interval, raw.keep, raw.max_rows);
    let targets = (&mut events.interval, &mut events.keep, &mut events.max_rows);
    retention_keys("events", "events", keys, targets)?;
    Ok(events)
}

/// `events.notify_at_login`, which session open reads.
fn notify_at_login(value: Option<toml::Value>) -> Result<Option<bool>, String> {
    match value {
        None => Ok(None),
        Some(toml::Value::Boolean(notify)) => Ok(Some(notify)),
        Some(_) => Err("events.notify_at_login: must be true or false".into()),
    }
}

/// The `interval`, `keep` and `max_rows` of a `section` that samples or
/// watches and keeps rows of `rows` (`[history]`, `[events]`), checked the
/// same way and written into `into`.
fn retention_keys(
    section: &str,
    rows: &str,
    (interval, keep, max_rows): (Option<String>, Option<String>, Option<i64>),
    into: (&mut u64, &mut u64, &mut u64),
) -> Result<(), String> {
    if let Some(d) = interval {
        *into.0 = parse_duration(&d).map_err(|e| format!("{section}.interval: {e}"))?;
    }
    if let Some(d) = keep {
        *into.1 = parse_duration(&d).map_err(|e| format!("{section}.keep: {e}"))?;
        if *into.1 == 0 {
            return Err(format!("{section}.keep: must be longer than 0s"));
        }
    }
    if let Some(n) = max_rows {
        *into.2 = u64::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{section}.max_rows: {n} is not a number of {rows} above 0"))?;
    }
    Ok(())
}

fn quota_config(raw: RawQuota) -> Result<QuotaConfig, String> {
    let mut quota = QuotaConfig::default();
    for path in raw.filesystems.unwrap_or_default() {
        if !path.is_absolute() {
            return Err(format!(
                "quota.filesystems: {} is not an absolute path",
                path.display()
            ));
        }
        if quota.filesystems.contains(&path) {
            return Err(format!(
                "quota.filesystems: {} is named twice",
                path.display()
            ));
        }
        quota.filesystems.push(path);
    }
    if let Some(p) = raw.soft_percent {
        let p = u8::try_from(p)
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| format!("quota.soft_percent: {p} is not a percentage from 1 to 100"))?;
        // 100: soft = hard, the default.
        quota.policy.soft_percent = Some(p).filter(|p| *p < 100);
    }
    if let Some(n) = raw.inodes {
        let n = u64::try_from(n)
            .map_err(|_| format!("quota.inodes: {n} is not a number of files (0: no limit)"))?;
        quota.policy.inodes = Some(n).filter(|n| *n > 0);
    }
    Ok(quota)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::limits::{Cpu, GpuList, Size, Tasks};

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn every_key() {
        let c = Config::parse(
            r#"
            db = "/srv/users.db"
            [password]
            memory_kib = 65536
            iterations = 3
            parallelism = 2
            min_length = 12
            [lockout]
            deny = 3
            fail_interval = "5m"
            unlock_time = "0"
            [defaults]
            cpu = 1.5
            memory = "4G"
            disk = "infinity"
            tasks = 512
            gpus = "all"
            cpu_weight = 200
            io_weight = "50"
            memory_high = "3G"
            [accounts]
            shell = "/bin/zsh"
            group = "gpu-users"
            [session]
            on_session_error = "allow"
            [quota]
            filesystems = ["/home", "/scratch"]
            soft_percent = 90
            inodes = 100000
            [api]
            listen = "[::1]:9000"
            session_ttl = "30m"
            login_rate = 3
            trusted_proxies = ["10.0.0.5"]
            header_read_timeout = "5s"
            request_timeout = "2m"
            idle_timeout = "30s"
            max_connections = 100
            login_queue = 0
            login_wait = "5s"
            shutdown_timeout = "3s"
            "#,
        )
        .unwrap();
        assert_eq!(c.api.listen, "[::1]:9000");
        assert_eq!(c.api.session_ttl, 1800);
        assert_eq!(c.api.login_rate, 3);
        assert_eq!(
            c.api.trusted_proxies,
            [std::net::IpAddr::from([10, 0, 0, 5])]
        );
        assert_eq!(
            (
                c.api.header_read_timeout,
                c.api.request_timeout,
                c.api.idle_timeout,
                c.api.max_connections,
                c.api.login_queue,
                c.api.login_wait,
                c.api.shutdown_timeout
            ),
            (5, 120, 30, 100, 0, 5, 3)
        );
        assert_eq!(c.db, Database::Sqlite(PathBuf::from("/srv/users.db")));
        assert_eq!(
            c.hash,
            HashParams {
                memory_kib: 65536,
                iterations: 3,
                parallelism: 2
            }
        );
        assert_eq!(c.password.min_length, 12);
        assert_eq!(
            c.lockout,
            LockoutPolicy {
                deny: 3,
                fail_interval: 300,
                unlock_time: 0
            }
        );
        assert_eq!(c.defaults.cpu, Cpu::Percent(150));
        assert_eq!(c.defaults.memory, Size::Bytes(4 << 30));
        assert_eq!(c.defaults.disk, Size::Infinity);
        assert_eq!(c.defaults.cpu_weight, "200".parse().unwrap());
        assert_eq!(c.defaults.io_weight, "50".parse().unwrap());
        assert_eq!(c.defaults.memory_high, Size::Bytes(3 << 30));
        assert_eq!(c.defaults.tasks, Tasks::Count(512));
        assert_eq!(c.defaults.gpus, GpuList::All);
        assert_eq!(c.shell, PathBuf::from("/bin/zsh"));
        assert_eq!(c.group, "gpu-users");
        assert_eq!(c.on_session_error, SessionErrorPolicy::Allow);
        assert_eq!(
            c.quota.filesystems,
            [PathBuf::from("/home"), PathBuf::from("/scratch")]
        );
        assert_eq!(
            c.quota.policy,
            QuotaPolicy {
                soft_percent: Some(90),
                inodes: Some(100_000)
            }
        );
        assert_eq!(
            Config::parse("[defaults]\ncpu = \"150%\"")
                .unwrap()
                .defaults
                .cpu,
            Cpu::Percent(150)
        );
    }

    /// `[defaults]` takes every limit of the table by its key, and no other.
    #[test]
    fn defaults_take_every_limit_by_its_key() {
        let mut toml = String::from("[defaults]\n");
        for (key, text) in Allocation::default().texts() {
            toml.push_str(&format!("{key} = {text:?}\n"));
        }
        assert_eq!(
            Config::parse(&toml).unwrap().defaults,
            Allocation::default()
        );
        let e = Config::parse("[defaults]\nmemory_typo = \"1G\"").unwrap_err();
        assert!(e.contains("unknown field `memory_typo`"), "{e}");
        let e = Config::parse("[defaults]\ngpus = 1").unwrap_err();
        assert!(e.starts_with("defaults.gpus: "), "{e}");
        let e = Config::parse("[defaults]\ncpu = true").unwrap_err();
        assert!(e.starts_with("defaults.cpu: "), "{e}");
    }

    #[test]
    fn gpus_values_are_checked() {
        assert_eq!(Config::parse("").unwrap().gpus.idle_after, 4 * 3600);
        let c = Config::parse("[gpus]\nidle_after = \"30m\"").unwrap();
        assert_eq!(c.gpus.idle_after, 1800);
        assert_eq!(
            Config::parse("[gpus]\nidle_after = \"0\"")
                .unwrap()
                .gpus
                .idle_after,
            0
        );
        let e = Config::parse("[gpus]\nidle_after = \"soon\"").unwrap_err();
        assert!(e.starts_with("gpus.idle_after"), "{e}");
        assert!(Config::parse("[gpus]\nidle = \"1h\"").is_err());
    }

    #[test]
    fn events_values_are_checked() {
        assert_eq!(Config::parse("").unwrap().events, EventsConfig::default());
        let c = Config::parse(
            "[events]\ninterval = \"2s\"\nkeep = \"7d\"\nmax_rows = 50\nnotify_at_login = false",
        )
        .unwrap();
        assert_eq!(
            c.events,
            EventsConfig {
                interval: 2,
                keep: 7 * 86_400,
                max_rows: 50,
                notify_at_login: false
            }
        );
        for (text, key) in [
            ("[events]\ninterval = \"soon\"", "events.interval"),
            ("[events]\nkeep = \"0\"", "events.keep"),
            ("[events]\nmax_rows = 0", "events.max_rows"),
            ("[events]\nnotify_at_login = \"yes\"", "notify_at_login"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn audit_retention_has_a_bound_by_default_and_is_checked() {
        let audit = Config::parse("").unwrap().audit;
        assert_eq!(audit, AuditConfig::default());
        assert!(
            audit.interval > 0 && audit.keep > 0 && audit.max_rows > 0,
            "{audit:?}"
        );
        let c =
            Config::parse("[audit]\ninterval = \"1m\"\nkeep = \"30d\"\nmax_rows = 1000").unwrap();
        assert_eq!(
            c.audit,
            AuditConfig {
                interval: 60,
                keep: 30 * 24 * 3600,
                max_rows: 1000
            }
        );
        for (text, key) in [
            ("[audit]\nkeep = \"0\"", "audit.keep"),
            ("[audit]\nkeep = \"forever\"", "audit.keep"),
            ("[audit]\nmax_rows = 0", "audit.max_rows"),
            ("[audit]\nmax_rows = -1", "audit.max_rows"),
            ("[audit]\ninterval = \"often\"", "audit.interval"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.starts_with(key), "{text}: {e}");
        }
        assert!(Config::parse("[audit]\nrows = 1")
            .unwrap_err()
            .contains("rows"));
    }

    #[test]
    fn history_values_are_checked() {
        assert_eq!(Config::parse("").unwrap().history, HistoryConfig::default());
        let c =
            Config::parse("[history]\ninterval = \"5s\"\nkeep = \"2h\"\nmax_rows = 10").unwrap();
        assert_eq!(
            c.history,
            HistoryConfig {
                interval: 5,
                keep: 7200,
                max_rows: 10
            }
        );
        assert_eq!(
            Config::parse("[history]\ninterval = \"0\"")
                .unwrap()
                .history
                .interval,
            0
        );
        for (text, key) in [
            ("[history]\ninterval = \"often\"", "history.interval"),
            ("[history]\nkeep = \"0\"", "history.keep"),
            ("[history]\nmax_rows = 0", "history.max_rows"),
            ("[history]\nmax_rows = -5", "history.max_rows"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.starts_with(key), "{text}: {e}");
        }
        assert!(Config::parse("[history]\nrows = 1")
            .unwrap_err()
            .contains("rows"));
    }

    #[test]
    fn api_values_are_checked() {
        assert_eq!(Config::parse("").unwrap().api, ApiConfig::default());
        assert!(
            ApiConfig::default().trusted_proxies.is_empty(),
            "no proxy is trusted unless the config names it"
        );
        let socket = Config::parse("[api]\nlisten = \"/run/diycloud/api.sock\"").unwrap();
        assert_eq!(socket.api.listen, "/run/diycloud/api.sock");
        for (text, key) in [
            ("[api]\nlisten = \"localhost:80\"", "api.listen"),
            ("[api]\nlisten = \"run/api.sock\"", "api.listen"),
            ("[api]\nsession_ttl = \"0\"", "api.session_ttl"),
            ("[api]\nsession_ttl = \"soon\"", "api.session_ttl"),
            ("[api]\nlogin_wait = \"0s\"", "api.login_wait"),
            ("[api]\nlogin_rate = 0", "api.login_rate"),
            (
                "[api]\ntrusted_proxies = [\"nginx\"]",
                "api.trusted_proxies",
            ),
            (
                "[api]\nheader_read_timeout = \"0\"",
                "api.header_read_timeout",
            ),
            ("[api]\nrequest_timeout = \"1\"", "api.request_timeout"),
            ("[api]\nidle_timeout = \"0s\"", "api.idle_timeout"),
            ("[api]\nshutdown_timeout = \"0\"", "api.shutdown_timeout"),
            ("[api]\nmax_connections = 0", "api.max_connections"),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.starts_with(key), "{text}: {err}");
        }
        assert!(Config::parse("[api]\nport = 1")
            .unwrap_err()
            .contains("port"));
    }

    #[test]
    fn api_metrics_keys() {
        let default = ApiConfig::default();
        assert_eq!(default.metrics_token_file, None);
        assert!(!default.metrics_public, "per-user series need a credential");
        let api = Config::parse(
            "[api]\nmetrics_token_file = \"/etc/diycloud/metrics-token\"\nmetrics_public = true",
        )
        .unwrap()
        .api;
        assert_eq!(
            api.metrics_token_file.as_deref(),
            Some(Path::new("/etc/diycloud/metrics-token"))
        );
        assert!(api.metrics_public);
        let err = Config::parse("[api]\nmetrics_token_file = \"metrics-token\"").unwrap_err();
        assert!(err.starts_with("api.metrics_token_file"), "{err}");
        assert!(Config::parse("[api]\nmetrics_public = \"yes\"").is_err());
    }

    #[test]
    fn a_postgresql_db_takes_the_postgres_section() {
        let c = Config::parse(
            r#"
            db = "postgresql://diycloud@db.lab:5433/users?sslmode=require"
            [postgres]
            password_file = "/etc/diycloud/pg-password"
            cache = "/var/cache/diycloud.db"
            connect_timeout = "5s"
            ca_file = "/etc/diycloud/pg-ca.pem"
            [lockout]
            deny = 7
            "#,
        )
        .unwrap();
        let Database::Postgres(pg) = &c.db else {
            panic!("not postgresql: {:?}", c.db)
        };
        assert_eq!(
            pg.url,
            "postgresql://diycloud@db.lab:5433/users?sslmode=require"
        );
        assert_eq!(
            pg.password_file.as_deref(),
            Some(Path::new("/etc/diycloud/pg-password"))
        );
        assert_eq!(pg.cache, PathBuf::from("/var/cache/diycloud.db"));
        assert_eq!(pg.connect_timeout, Duration::from_secs(5));
        assert_eq!(pg.ca_file, PathBuf::from("/etc/diycloud/pg-ca.pem"));
        assert_eq!(
            pg.lockout.deny, 7,
            "offline failures replay with the config's policy"
        );
        // The defaults, and a --db URL takes the same settings.
        let d = Config::default();
        assert_eq!(d.postgres.cache, PathBuf::from(DEFAULT_CACHE_PATH));
        assert_eq!(d.postgres.connect_timeout, Duration::from_secs(2));
        let from_flag = Database::parse("postgres://u@h/d", &c.postgres).unwrap();
        assert!(
            matches!(from_flag, Database::Postgres(p) if p.cache == pg.cache && p.url == "postgres://u@h/d")
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("colour = 1", "colour"),
            ("[lockout]\ndenny = 3", "denny"),
            (
                "[lockout]\nunlock_time = \"10 minutes\"",
                "lockout.unlock_time",
            ),
            ("[defaults]\nmemory = \"2Q\"", "defaults.memory"),
            ("[defaults]\ncpu = 0", "defaults.cpu"),
            ("[defaults]\ncpu_weight = 0", "defaults.cpu_weight"),
            ("[defaults]\nio_weight = 10001", "defaults.io_weight"),
            ("[defaults]\ncpu_weight = 1.5", "defaults.cpu_weight"),
            ("[defaults]\nmemory_high = \"lots\"", "defaults.memory_high"),
            (
                "[defaults]\nmemory = \"1G\"\nmemory_high = \"2G\"",
                "must not exceed memory",
            ),
            ("[password]\nmemory_kib = 1", "password"),
            ("db = \"relative.db\"", "db"),
            ("[accounts]\ngroup = \"a b\"", "accounts.group"),
            ("[quota]\nfilesytems = []", "filesytems"),
            ("[quota]\nfilesystems = [\"home\"]", "quota.filesystems"),
            ("[quota]\nfilesystems = [\"/home\", \"/home\"]", "twice"),
            ("[quota]\nsoft_percent = 0", "quota.soft_percent"),
            ("[quota]\nsoft_percent = 101", "quota.soft_percent"),
            ("[quota]\ninodes = -1", "quota.inodes"),
            ("[session]\non_session_error = \"maybe\"", "deny"),
            ("db = \"mysql://u@h/d\"", "db"),
            ("db = \"postgresql://u:secret@h/d\"", "password_file"),
            ("db = \"postgresql://h/d\"", "no user"),
            ("db = \"postgresql://u@h\"", "no database"),
            (
                "[postgres]\npassword_file = \"pw\"",
                "postgres.password_file",
            ),
            ("[postgres]\ncache = \"c.db\"", "postgres.cache"),
            ("[postgres]\nca_file = \"ca.pem\"", "postgres.ca_file"),
            (
                "[postgres]\nconnect_timeout = \"0\"",
                "postgres.connect_timeout",
            ),
            (
                "[postgres]\nconnect_timeout = \"2m\"",
                "postgres.connect_timeout",
            ),
            ("[postgres]\nhost = \"db\"", "host"),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }

    /// The shipped example, and every key in it uncommented, parse: an admin
    /// who follows it never gets a config error (a key outside its table
    /// once refused every login of a managed user).
    #[test]
    fn the_shipped_example_parses_with_every_key_uncommented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("packaging/diycloud.toml")).unwrap();
        assert_eq!(Config::parse(&text).unwrap(), Config::default());
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.matches(" = ").count() >= 15, "{uncommented}");
        assert_eq!(Config::parse(&uncommented).unwrap(), Config::default());
        // And every TOML snippet of the README and the docs.
        for doc in [
            "README.md",
            "docs/admin-guide.md",
            "docs/pam.md",
            "docs/cluster.md",
        ] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for block in text.split("```toml").skip(1) {
                let snippet = block.split("```").next().unwrap();
                Config::parse(snippet).unwrap_or_else(|e| panic!("{doc}: {e}\n{snippet}"));
            }
        }
    }

    /// A bad value in a section only the server (or only slicectl) reads:
    /// the module goes on with that section's defaults, and says so.
    const SERVER_SECTIONS_BROKEN: &[(&str, &str)] = &[
        ("[api]\nlisten = \"localhost:8480\"\n", "api.listen"),
        ("[api]\nlisten_typo = 1\n", "api: unknown field"),
        ("[history]\ninterval = \"soon\"\n", "history.interval"),
        ("[events]\nkeep = \"0s\"\n", "events.keep"),
        ("[audit]\nmax_rows = -1\n", "audit.max_rows"),
    ];

    #[test]
    fn a_bad_section_the_module_does_not_read_never_stops_it() {
        let also_not_the_modules = [
            ("[gpus]\nidle_after = \"a while\"\n", "gpus.idle_after"),
            ("[defaults]\nmemory = \"lots\"\n", "defaults.memory"),
        ];
        for (text, said) in SERVER_SECTIONS_BROKEN.iter().chain(&also_not_the_modules) {
            let loaded = Config::parse_for(text, Reader::Module).unwrap();
            assert_eq!(loaded.config, Config::default(), "{text}");
            assert!(
                loaded.ignored[0].contains(said),
                "{text}: {:?}",
                loaded.ignored
            );
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(said), "{text}: {err}");
        }
        for (text, _) in SERVER_SECTIONS_BROKEN {
            assert!(Config::parse_for(text, Reader::Admin).is_ok(), "{text}");
        }
        for (text, _) in also_not_the_modules {
            assert!(Config::parse_for(text, Reader::Admin).is_err(), "{text}");
        }
        // What the module reads stays strict: its own key in [events], the
        // lockout, the database, a key outside every section, bad TOML.
        for text in [
            "[events]\nnotify_at_login = \"yes\"\n",
            "[lockout]\ndeny = \"five\"\n",
            "[session]\non_session_error = \"maybe\"\n",
            "db = \"relative.db\"\n",
            "dbb = \"/x.db\"\n",
            "[api\n",
        ] {
            assert!(Config::parse_for(text, Reader::Module).is_err(), "{text}");
        }
        // A good module section next to a bad server one is still read.
        let loaded = Config::parse_for(
            "[lockout]\ndeny = 3\n[api]\nlisten = \"x\"\n",
            Reader::Module,
        )
        .unwrap();
        assert_eq!(loaded.config.lockout.deny, 3);
    }

    #[test]
    fn check_names_every_error_with_its_line_and_column() {
        let text = "[lockout]\ndeny = 3\n\n[api]\n  listen = \"localhost:8480\"\n[history]\ninterval = \"soon\"\n[gpus]\nbogus = 1\n";
        let problems = Config::check(text);
        let found: Vec<_> = problems
            .iter()
            .map(|p| (p.key.as_deref().unwrap(), p.line, p.column))
            .collect();
        assert_eq!(
            found,
            [
                ("api.listen", Some(5), Some(3)),
                ("history.interval", Some(7), Some(1)),
                ("gpus", Some(8), Some(1)),
            ],
            "{problems:?}"
        );
        assert!(problems[2].message.contains("bogus"), "{problems:?}");
        // Not TOML at all: where the parser stopped.
        let problems = Config::check("[lockout]\ndeny = = 3\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(2), "{problems:?}");
        assert!(Config::check("").is_empty());
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/diycloud.toml"),
        )
        .unwrap();
        assert!(Config::check(&example).is_empty());
    }

    #[test]
    fn missing_default_file_is_fine_but_missing_named_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        assert_eq!(Config::load(&path, false).unwrap(), Config::default());
        assert!(Config::load(&path, true)
            .unwrap_err()
            .to_string()
            .contains("nope.toml"));
    }
}
