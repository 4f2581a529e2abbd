//! The command line, as DESIGN §6 fixes it. Values are parsed by the
//! library's own parsers, so a bad one is a usage error (exit 2) whose
//! message names the rule.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use libdiycloud::model::limits::{LimitChanges, LIMITS};
use libdiycloud::model::{Date, Role, Username};

#[derive(Parser)]
#[command(
    name = "slicectl",
    version,
    about = "Manage diycloud users and their resource allocations",
    long_about = "Manage diycloud users: their passwords (checked by pam_diycloud at SSH, \
                  console and JupyterHub logins), roles, account state and resource \
                  allocations (CPU, memory, disk, tasks, GPUs).\n\n\
                  Exit status: 0 success, 1 runtime error, 2 usage error."
)]
pub struct Cli {
    /// Database: an SQLite file, or postgresql://USER@HOST:PORT/DBNAME (with the
    /// config's [postgres] settings) [default: the config's `db`,
    /// /var/lib/diycloud/diycloud.db]
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub db: Option<PathBuf>,
    /// Configuration file
    #[arg(long, global = true, value_name = "PATH", env = "DIYCLOUD_CONFIG",
          default_value = libdiycloud::config::DEFAULT_CONFIG_PATH, hide_default_value = false)]
    pub config: PathBuf,
    /// Print one JSON document instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the database, or migrate it to this version's schema (idempotent)
    Init,
    /// Create, inspect, change and remove users
    #[command(subcommand)]
    User(UserCommand),
    /// Push users' limits to their systemd slices and disk quotas now (also while they are logged in)
    Apply {
        /// The user to apply
        #[arg(value_parser = parse_username, required_unless_present = "all", conflicts_with = "all")]
        name: Option<Username>,
        /// Every user with a system account
        #[arg(long)]
        all: bool,
    },
    /// Apply a user's allocation for a process started outside a login (JupyterHub's SystemdSpawner, a batch job) and print its slice and environment
    #[command(
        long_about = "Do for NAME what a login's session open does, for a process that does not \
        go through PAM (a JupyterHub server started by SystemdSpawner, a batch job): refuse unless \
        the account may log in now (not disabled, expired, locked or unfinished), then size \
        user-UID.slice, set the disk quotas and grant the GPUs, and print the slice to start the \
        process in (systemd-run --slice=...) and the environment it needs (CUDA_VISIBLE_DEVICES). \
        A step that fails refuses, as at login, unless on_session_error = \"allow\". With --json: \
        {username, uid, slice, env, complete, steps}. docs/jupyterhub.md uses it."
    )]
    Prepare {
        /// The user whose process is about to start
        #[arg(value_parser = parse_username)]
        name: Username,
    },
    /// CPU time, memory and tasks of users' slices (from systemd), their disk use and quota on each [quota] filesystem (from the kernel), and their GPU memory (NVML)
    Usage {
        /// Only this user
        #[arg(value_parser = parse_username)]
        name: Option<Username>,
    },
    /// This node's NVIDIA GPUs, as users are granted them
    #[command(subcommand)]
    Gpu(GpuCommand),
    /// Serve the REST API, the web portal and /metrics until SIGTERM or Ctrl-C
    #[command(
        long_about = "Serve the REST API (logins, users, limits, usage and its history over HTTP), \
        the web portal under /portal/ and /metrics for Prometheus, with the same rules, lockout and \
        audit log as the PAM module and slicectl; sample every active user's usage every \
        [history] interval for the charts. Listens on [api] listen of the config (default \
        127.0.0.1:8480), or --listen: HOST:PORT, or the absolute path of a unix socket (created \
        mode 0660). Put nginx in front for TLS (packaging/nginx/diycloud.conf). Runs until \
        SIGTERM or Ctrl-C."
    )]
    Serve {
        /// HOST:PORT, or the absolute path of a unix socket
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Check the machine: distribution facts, cgroups, systemd, database and config trust, unfinished changes, managed group, home privacy, disk quotas, GPUs, PAM stack
    #[command(
        long_about = "Check the machine: distribution facts, cgroups, systemd, database and \
        config trust, unfinished changes, managed group, home privacy, disk quotas, GPUs, PAM \
        stack.\n\nWith --enforcement --user NAME: prove instead that the kernel enforces \
        NAME's allocation. Probes run as NAME in throwaway scopes of their slice (after \
        applying the allocation as a login would): memory past MemoryMax must be OOM-killed, \
        busy threads held to the CPU quota, processes past TasksMax refused, GPU device nodes \
        not granted refused with EPERM, a write past the disk quota on each [quota] filesystem \
        refused with EDQUOT. Each line says proven, NOT PROVEN (with the fix) or - (nothing to \
        prove). Exit status 0 only when everything the allocation sets is proven. Nothing is \
        left behind. Use a test account with small limits: a probe allocates at most \
        --probe-limit of memory (a larger memory or task limit is proven at a child limit, \
        with the slice's own value read back from the kernel) and writes at most that much."
    )]
    Doctor {
        /// Prove the user's limits by trying to break them (needs --user)
        #[arg(long, requires = "user")]
        enforcement: bool,
        /// The user whose allocation --enforcement proves (a test account)
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// The most memory a probe allocates and disk it writes (default 1G)
        #[arg(long, value_name = "SIZE", requires = "enforcement")]
        probe_limit: Option<String>,
    },
    /// The node's cache of a PostgreSQL user base (db = "postgresql://...")
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The config file: `config check` validates every section, like `sshd -t`
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a consistent copy of the database to FILE (SQLite online backup; safe while logins go on)
    #[command(
        long_about = "Write a consistent copy of the database to FILE with SQLite's online \
        backup, safe while logins and other commands write. FILE must not exist; it is created \
        with mode 0600 (it holds password hashes) and written whole or not at all.\n\n\
        To restore: stop logins that could write (or accept losing their failure counts), then \
        `install -m 0600 -o root FILE /var/lib/diycloud/diycloud.db` after removing the old \
        file's -wal and -shm files, and run `slicectl init` (which migrates an older copy)."
    )]
    Backup {
        /// Where to write the copy
        file: PathBuf,
    },
    /// Print the completion script of a shell (bash, zsh or fish)
    #[command(
        long_about = "Print the completion script of a shell to standard output. The packages \
        install them; by hand: `slicectl completions bash > \
        /usr/share/bash-completion/completions/slicectl`, `slicectl completions zsh > \
        /usr/share/zsh/vendor-completions/_slicectl`, `slicectl completions fish > \
        /usr/share/fish/vendor_completions.d/slicectl.fish`. Needs no config or database."
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the manual pages (slicectl.8 and one per subcommand) into DIR
    #[command(hide = true)]
    Manpages {
        /// An existing directory
        dir: PathBuf,
    },
}

/// The shells `completions` writes for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Copy every user from PostgreSQL into this node's cache, forget the users it no longer has, and merge the login failures counted while it was unreachable
    #[command(
        long_about = "With db = \"postgresql://...\": copy every user's record (password hash, \
        state, allocation) from the server into this node's cache ([postgres] cache), forget the \
        users the server no longer has, and first merge into the server the login failures, \
        logins and audit lines this node counted while the server was unreachable. Logins \
        refresh the records they look up; run this from a timer (packaging/systemd/\
        diycloud-cache-refresh.timer) so every user can log in on this node while the server is \
        unreachable, not only those who logged in here before.\n\n\
        This is also the node's probe of an outage: when the network answers that the server is \
        not there (refused, unreachable, no answer in time), it records the outage, and only \
        then may logins fall back on the cache (no login can declare an outage alone: its \
        caller controls its limits and signals). Reaching the server ends the outage. Fails \
        when the server cannot be reached. With --json: {users, removed, merged_events, \
        merged_failures}."
    )]
    Refresh,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check every section of the config file, as `slicectl serve` reads it; exit 2 naming each error's line and column
    #[command(long_about = "Read the config file (--config, or DIYCLOUD_CONFIG, or \
        /etc/diycloud/diycloud.toml) as `slicectl serve` does, every section, and print each \
        error as FILE:LINE:COLUMN: KEY: MESSAGE, like `sshd -t` or `nginx -t`. Exit 0 when it is \
        good, 2 when it is not, 1 when it cannot be read (or fails the ownership rules).\n\n\
        Logins read only what they use: a bad value in [api], [history], [events] (but \
        notify_at_login), [audit], [gpus] or [defaults] never stops the PAM module, and only \
        [api], [history], [events] and [audit] are the server's alone for slicectl's other \
        commands, which warn and go on. This command names them all: run it after every edit. \
        With --json: {file, ok, problems: [{line, column, key, message}]}.")]
    Check,
}

#[derive(Subcommand)]
pub enum GpuCommand {
    /// List the GPUs (index, UUID, device minor, model, memory, PCI bus, MIG mode) and their
    /// MIG instances, through NVML, else the driver's /proc/driver/nvidia, else /dev/nvidiaN
    List,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (and, unless --no-system-account, the system account)
    Add(AddArgs),
    /// List all users
    List,
    /// Show one user, with the latest audit log entries
    Show {
        #[arg(value_parser = parse_username)]
        name: Username,
    },
    /// Change a user's profile, role, state or limits
    Mod(ModArgs),
    /// Set a user's password
    Passwd {
        #[arg(value_parser = parse_username)]
        name: Username,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Clear a lockout after too many wrong passwords
    Unlock {
        #[arg(value_parser = parse_username)]
        name: Username,
    },
    /// Record the uid this node's accounts give NAME now, and apply NAME's allocation to it
    #[command(
        long_about = "Record the uid that this node's accounts (NSS) give NAME now, and apply         NAME's allocation to that uid's slice.\n\nLimits always bind to the uid NSS gives for the         name on this node. A record whose stored uid differs (the account was deleted and made         again with another uid, or a cluster node gives the name another uid) is refused at session         open, by `apply`, `prepare` and `doctor`, so that no limit lands on whoever has the old         uid now. Once you have checked that the account is NAME's, this records its uid."
    )]
    Relink {
        #[arg(value_parser = parse_username)]
        name: Username,
    },
    /// Remove a user (and the system account slicectl created for them); their disk quota limits are taken off
    Del {
        #[arg(value_parser = parse_username)]
        name: Username,
        /// Also remove the home directory and mail spool
        #[arg(long)]
        remove_home: bool,
    },
}

#[derive(Args)]
pub struct AddArgs {
    /// Login name: [a-z_][a-z0-9_-]{0,31}
    #[arg(value_parser = parse_new_username)]
    pub name: Username,
    /// Read the password from the first line of standard input (else: prompt on the terminal)
    #[arg(long)]
    pub password_stdin: bool,
    /// user or admin
    #[arg(long, default_value = "user", value_parser = parse_role)]
    pub role: Role,
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Only create the database record; link an existing system account of the same name, if any
    #[arg(long)]
    pub no_system_account: bool,
    /// With --no-system-account: allow linking an account below UID_MIN (/etc/login.defs), such as a service account; it can then log in with the diycloud password
    #[arg(long, requires = "no_system_account")]
    pub allow_service_account: bool,
}

#[derive(Args)]
pub struct ModArgs {
    #[arg(value_parser = parse_username)]
    pub name: Username,
    /// user or admin
    #[arg(long, value_parser = parse_role)]
    pub role: Option<Role>,
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Refuse all logins until --enable
    #[arg(long, conflicts_with = "enable")]
    pub disable: bool,
    /// Allow logins again
    #[arg(long)]
    pub enable: bool,
}

#[derive(Args)]
pub struct ProfileArgs {
    /// E-mail address ("" clears it)
    #[arg(long, value_parser = parse_email)]
    pub email: Option<String>,
    /// Full name ("" clears it)
    #[arg(long, value_parser = parse_full_name)]
    pub full_name: Option<String>,
    /// Last day before the account stops working: YYYY-MM-DD, or 'never'
    #[arg(long, value_parser = parse_expiry, value_name = "YYYY-MM-DD")]
    pub expires: Option<Expiry>,
}

/// One flag per limit, from the library's table ([`LIMITS`]): its flag,
/// value name and help, each value checked by the limit's own rule, so a
/// bad one is a usage error that names the rule.
#[derive(Clone, Default)]
pub struct LimitArgs(pub LimitChanges);

impl clap::Args for LimitArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        LIMITS.iter().fold(command, |command, limit| {
            let key = limit.key;
            command.arg(
                clap::Arg::new(key)
                    .long(limit.flag)
                    .value_name(limit.value_name)
                    .help(limit.help)
                    .allow_hyphen_values(true)
                    .value_parser(move |text: &str| {
                        LimitChanges::default()
                            .set_text(key, text)
                            .map(|_| text.to_owned())
                            .map_err(|e| e.error.to_string())
                    }),
            )
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for LimitArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for limit in LIMITS {
            if let Some(text) = matches.get_one::<String>(limit.key) {
                self.0
                    .set_text(limit.key, text)
                    .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, e))?;
            }
        }
        Ok(())
    }
}

/// `--expires`: a day, or `never` to clear it.
#[derive(Clone, Copy)]
pub enum Expiry {
    On(Date),
    Never,
}

fn parse_value<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| e.to_string())
}

fn parse_username(s: &str) -> Result<Username, String> {
    Username::parse(s).map_err(|e| e.to_string())
}

fn parse_new_username(s: &str) -> Result<Username, String> {
    Username::parse_new(s).map_err(|e| e.to_string())
}

fn parse_role(s: &str) -> Result<Role, String> {
    parse_value(s)
}

fn parse_expiry(s: &str) -> Result<Expiry, String> {
    if s == "never" {
        return Ok(Expiry::Never);
    }
    parse_value::<Date>(s)
        .map(Expiry::On)
        .map_err(|e| format!("{e}, or 'never'"))
}

/// Free text stored in the record: one line, bounded, nothing hidden.
fn parse_email(s: &str) -> Result<String, String> {
    libdiycloud::model::text::email(s).map(|()| s.to_owned())
}

fn parse_full_name(s: &str) -> Result<String, String> {
    libdiycloud::model::text::full_name(s).map(|()| s.to_owned())
}
