//! `/etc/diycloud/diycloud.toml`: every key optional, defaults compiled in,
//! unknown keys and bad values are errors that name the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::limits::Allocation;
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
    pub on_session_error: SessionErrorPolicy,
    pub quota: QuotaConfig,
    pub api: ApiConfig,
    pub history: HistoryConfig,
    pub events: EventsConfig,
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
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8480".into(),
            session_ttl: 8 * 3600,
            login_rate: 10,
            trusted_proxies: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
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
            on_session_error: SessionErrorPolicy::Deny,
            quota: QuotaConfig::default(),
            api: ApiConfig::default(),
            history: HistoryConfig::default(),
            events: EventsConfig::default(),
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

// The file's shape. Values stay text here and are validated below, so an
// error can say which key holds the bad value.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    db: Option<String>,
    #[serde(default)]
    postgres: RawPostgres,
    #[serde(default)]
    password: RawPassword,
    #[serde(default)]
    lockout: RawLockout,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    accounts: RawAccounts,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    quota: RawQuota,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    history: RawHistory,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    gpus: RawGpus,
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
struct RawDefaults {
    cpu: Option<NumberOrText>,
    memory: Option<String>,
    disk: Option<String>,
    tasks: Option<NumberOrText>,
    gpus: Option<String>,
    cpu_weight: Option<NumberOrText>,
    io_weight: Option<NumberOrText>,
    memory_high: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAccounts {
    shell: Option<PathBuf>,
    group: Option<String>,
}

/// `cpu = 1.5` and `cpu = "150%"` are both natural in TOML.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Integer(i64),
    Float(f64),
    Text(String),
}

impl NumberOrText {
    fn text(&self) -> String {
        match self {
            NumberOrText::Integer(i) => i.to_string(),
            NumberOrText::Float(f) => f.to_string(),
            NumberOrText::Text(s) => s.clone(),
        }
    }
}

impl Config {
    /// Loads `path`. A missing file at the default path means "all defaults";
    /// a missing file the admin named explicitly is an error. The file, and
    /// every directory above it, must pass [`crate::trust::check_file`]: a
    /// config others could write could point `db` anywhere.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let path = &std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        crate::trust::check_file(path)?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut config = Config::default();

        let p = raw.password;
        config.hash = HashParams {
            memory_kib: p.memory_kib.unwrap_or(config.hash.memory_kib),
            iterations: p.iterations.unwrap_or(config.hash.iterations),
            parallelism: p.parallelism.unwrap_or(config.hash.parallelism),
        };
        config.hash.check().map_err(|e| format!("password: {e}"))?;
        if let Some(min) = p.min_length {
            config.password.min_length = min;
        }

        let l = raw.lockout;
        config.lockout.deny = l.deny.unwrap_or(config.lockout.deny);
        if let Some(d) = l.fail_interval {
            config.lockout.fail_interval =
                parse_duration(&d).map_err(|e| format!("lockout.fail_interval: {e}"))?;
        }
        if let Some(d) = l.unlock_time {
            config.lockout.unlock_time =
                parse_duration(&d).map_err(|e| format!("lockout.unlock_time: {e}"))?;
        }

        let d = raw.defaults;
        let a = &mut config.defaults;
        default_key("defaults.cpu", d.cpu.map(|v| v.text()), &mut a.cpu)?;
        default_key("defaults.memory", d.memory, &mut a.memory)?;
        default_key("defaults.disk", d.disk, &mut a.disk)?;
        default_key("defaults.tasks", d.tasks.map(|v| v.text()), &mut a.tasks)?;
        default_key("defaults.gpus", d.gpus, &mut a.gpus)?;
        default_key(
            "defaults.cpu_weight",
            d.cpu_weight.map(|v| v.text()),
            &mut a.cpu_weight,
        )?;
        default_key(
            "defaults.io_weight",
            d.io_weight.map(|v| v.text()),
            &mut a.io_weight,
        )?;
        default_key("defaults.memory_high", d.memory_high, &mut a.memory_high)?;
        a.check().map_err(|e| format!("defaults: {e}"))?;

        if let Some(shell) = raw.accounts.shell {
            if !shell.is_absolute() {
                return Err(format!(
                    "accounts.shell: {} is not an absolute path",
                    shell.display()
                ));
            }
            config.shell = shell;
        }
        if let Some(group) = raw.accounts.group {
            crate::model::Username::parse(&group).map_err(|_| {
                format!(
                    "accounts.group: {group:?} is not a valid group name (the rule of user names)"
                )
            })?;
            config.group = group;
        }
        if let Some(policy) = raw.session.on_session_error {
            config.on_session_error = policy;
        }
        config.quota = quota_config(raw.quota)?;
        config.api = api_config(raw.api)?;
        config.history = history_config(raw.history)?;
        config.events = events_config(raw.events)?;
        if let Some(d) = raw.gpus.idle_after {
            config.gpus.idle_after =
                parse_duration(&d).map_err(|e| format!("gpus.idle_after: {e}"))?;
        }
        let pg = raw.postgres;
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
        if let Some(path) = pg.password_file {
            config.postgres.password_file = Some(absolute("password_file", path)?);
        }
        if let Some(path) = pg.cache {
            config.postgres.cache = absolute("cache", path)?;
        }
        if let Some(path) = pg.ca_file {
            config.postgres.ca_file = absolute("ca_file", path)?;
        }
        if let Some(d) = pg.connect_timeout {
            let seconds =
                parse_duration(&d).map_err(|e| format!("postgres.connect_timeout: {e}"))?;
            if !(1..=60).contains(&seconds) {
                return Err(format!(
                    "postgres.connect_timeout: {d} is not between 1s and 60s (every login may wait this long)"
                ));
            }
            config.postgres.connect_timeout = Duration::from_secs(seconds);
        }
        config.postgres.lockout = config.lockout;
        if let Some(db) = raw.db {
            config.db = Database::parse(&db, &config.postgres).map_err(|e| format!("db: {e}"))?;
        }
        Ok(config)
    }
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

fn events_config(raw: RawEvents) -> Result<EventsConfig, String> {
    let mut events = EventsConfig::default();
    let keys = (raw.interval, raw.keep, raw.max_rows);
    let targets = (&mut events.interval, &mut events.keep, &mut events.max_rows);
    retention_keys("events", "events", keys, targets)?;
    match raw.notify_at_login {
        None => {}
        Some(toml::Value::Boolean(notify)) => events.notify_at_login = notify,
        Some(_) => return Err("events.notify_at_login: must be true or false".into()),
    }
    Ok(events)
}

/// A `[defaults]` limit given as `text`, parsed by its own rule into
/// `into`; an error names the `key`.
fn default_key<T: std::str::FromStr>(
    key: &str,
    text: Option<String>,
    into: &mut T,
) -> Result<(), String>
where
    T::Err: std::fmt::Display,
{
    if let Some(text) = text {
        *into = text.parse().map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(())
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
        let socket = Config::parse("[api]\nlisten = \"/run/diycloud/api.sock\"").unwrap();
        assert_eq!(socket.api.listen, "/run/diycloud/api.sock");
        for (text, key) in [
            ("[api]\nlisten = \"localhost:80\"", "api.listen"),
            ("[api]\nlisten = \"run/api.sock\"", "api.listen"),
            ("[api]\nsession_ttl = \"0\"", "api.session_ttl"),
            ("[api]\nsession_ttl = \"soon\"", "api.session_ttl"),
            ("[api]\nlogin_rate = 0", "api.login_rate"),
            (
                "[api]\ntrusted_proxies = [\"nginx\"]",
                "api.trusted_proxies",
            ),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.starts_with(key), "{text}: {err}");
        }
        assert!(Config::parse("[api]\nport = 1")
            .unwrap_err()
            .contains("port"));
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
