//! `slicectl`: the admin CLI of diycloud.
#![forbid(unsafe_code)]

mod cli;
mod doctor;
mod enforcement;
mod gpus;
mod password_input;
mod slices;
mod users;
mod view;

use std::process::ExitCode;

use clap::Parser;
use libdiycloud::config::{Config, Reader};
use libdiycloud::model::Timestamp;
use libdiycloud::store::cluster::ClusterStore;
use libdiycloud::store::{Database, Store, StoreError};
use libdiycloud::system::{self, SystemAdmin, SystemPorts};
use libdiycloud::usecases::admin::{Admin, AdminError, ErrorKind};

use cli::{Cli, Command};

/// Why a command failed: bad input (exit 2) or a failure while doing it (exit 1).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Runtime(String),
    /// A runtime failure whose details the command's output already holds
    /// (with `--json`, no second document is printed).
    Reported(String),
    /// Exit 2, the input at fault already reported in full (`config check`).
    ReportedUsage(String),
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        match e.kind() {
            ErrorKind::Usage => Failure::Usage(e.to_string()),
            // A missing user or a clash is the system's state, not a
            // malformed command: exit 1, as DESIGN §6 has it.
            ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Forbidden
            | ErrorKind::Runtime => Failure::Runtime(e.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        AdminError::from(e).into()
    }
}

/// What every command gets: the parsed config, where the DB is, the time
/// and who is acting (for the audit log).
pub struct Context {
    pub config: Config,
    pub config_path: std::path::PathBuf,
    /// Why the config could not be used (only `doctor` runs without it).
    pub config_error: Option<String>,
    pub db: Database,
    pub json: bool,
    pub now: Timestamp,
    pub actor: String,
    pub ports: SystemPorts,
}

impl Context {
    /// Opens the database. A command that writes checkpoints when it is
    /// done, so the database file alone holds every change (a plain copy
    /// is complete; a lost `-wal` file loses nothing of ours).
    pub fn open_store(&self) -> Result<Store, Failure> {
        let mut store = Store::open_database(&self.db)?;
        store.checkpoint_on_close();
        if let Some(why) = store.as_cluster().and_then(|c| c.offline_reason()) {
            eprintln!(
                "slicectl: warning: PostgreSQL {} is unreachable ({why}): what follows comes from this node's cache, and changes will be refused",
                self.db
            );
        }
        Ok(store)
    }

    /// The admin use cases on `store`, with the real ports.
    pub fn admin<'a>(&'a self, store: &'a mut Store) -> SystemAdmin<'a> {
        Admin::new(store, &self.config, &self.ports, &self.actor, self.now)
    }
}

fn actor() -> String {
    let uid = nix::unistd::getuid();
    let me = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name);
    match std::env::var("SUDO_USER") {
        Ok(sudo_user) if !sudo_user.is_empty() => format!("{me} (sudo by {sudo_user})"),
        _ => me,
    }
}

// The entry point: the one place slicectl reads the clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

fn run(cli: Cli) -> Result<(), Failure> {
    // These need no config or database: they describe the command line.
    match &cli.command {
        Command::Completions { shell } => return completions(*shell),
        Command::Manpages { dir } => return manpages(dir),
        _ => {}
    }
    let explicit = cli.config.as_os_str() != libdiycloud::config::DEFAULT_CONFIG_PATH;
    if let Command::Config(cli::ConfigCommand::Check) = &cli.command {
        return check_config(&cli.config, explicit, cli.json);
    }
    // `serve` reads every section; the other commands leave the server's
    // own sections to it (a typo there stops no admin), and warn.
    let reader = match cli.command {
        Command::Serve { .. } => Reader::Server,
        _ => Reader::Admin,
    };
    // `doctor` reports a config it cannot use instead of stopping at it.
    let mut config_error = None;
    let loaded = Config::load_for(&cli.config, explicit, reader).map(|loaded| {
        for ignored in &loaded.ignored {
            eprintln!(
                "slicectl: warning: config {}: {ignored} (only `slicectl serve` reads it; `slicectl config check` lists every error)",
                cli.config.display()
            );
        }
        loaded.config
    });
    let config = match loaded {
        Ok(config) => config,
        Err(e)
            if matches!(
                cli.command,
                Command::Doctor {
                    enforcement: false,
                    ..
                }
            ) =>
        {
            config_error = Some(e.to_string());
            Config::default()
        }
        Err(e) => return Err(Failure::Runtime(e.to_string())),
    };
    let db = match &cli.db {
        // A URL; else a file, relative to the working directory if need be.
        Some(arg) => match arg.to_str().filter(|text| text.contains("://")) {
            Some(url) => Database::parse(url, &config.postgres)
                .map_err(|e| Failure::Usage(format!("--db: {e}")))?,
            None => Database::Sqlite(
                std::path::absolute(arg)
                    .map_err(|e| Failure::Usage(format!("--db {}: {e}", arg.display())))?,
            ),
        },
        None => config.db.clone(),
    };
    let ctx = Context {
        config,
        config_path: std::path::absolute(&cli.config).unwrap_or_else(|_| cli.config.clone()),
        config_error,
        db,
        json: cli.json,
        now: now(),
        actor: actor(),
        ports: system::ports(),
    };
    match cli.command {
        Command::Init => init(&ctx),
        Command::User(command) => users::run(&ctx, command),
        Command::Apply { name, .. } => slices::apply(&ctx, name.as_ref()),
        Command::Prepare { name } => slices::prepare(&ctx, &name),
        Command::Usage { name } => slices::usage(&ctx, name.as_ref()),
        Command::Gpu(cli::GpuCommand::List) => gpus::list(&ctx),
        Command::Doctor {
            enforcement: true,
            user,
            probe_limit,
        } => doctor::enforcement(&ctx, user.as_deref(), probe_limit.as_deref()),
        Command::Doctor { .. } => doctor::run(&ctx),
        Command::Cache(cli::CacheCommand::Refresh) => refresh_cache(&ctx),
        Command::Config(cli::ConfigCommand::Check) => Ok(()),
        Command::Backup { file } => backup(&ctx, &file),
        Command::Serve { listen } => serve(ctx, listen),
        Command::Completions { .. } | Command::Manpages { .. } => Ok(()),
    }
}

/// `slicectl completions SHELL`: the shell's completion script, from the
/// command line's own definition.
fn completions(shell: cli::Shell) -> Result<(), Failure> {
    use clap::CommandFactory;
    let shell = match shell {
        cli::Shell::Bash => clap_complete::Shell::Bash,
        cli::Shell::Zsh => clap_complete::Shell::Zsh,
        cli::Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory first: `generate` panics where a write fails.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "slicectl", &mut script);
    view::raw(&script);
    Ok(())
}

/// `slicectl manpages DIR` (hidden; the package build runs it): slicectl.8
/// and a page per subcommand (slicectl-user-add.8, ...), in section 8 (system
/// administration).
fn manpages(dir: &std::path::Path) -> Result<(), Failure> {
    use clap::CommandFactory;
    fn write(cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir)?;
        }
        clap_mangen::Man::new(cmd)
            .section("8")
            .generate_to(dir)
            .map(drop)
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir).map_err(|e| Failure::Runtime(format!("{}: {e}", dir.display())))
}

/// `slicectl serve`: the only command that starts an async runtime.
fn serve(ctx: Context, listen: Option<String>) -> Result<(), Failure> {
    let listen: diycloud_server::Listen = listen
        .unwrap_or_else(|| ctx.config.api.listen.clone())
        .parse()
        .map_err(|e| Failure::Usage(format!("--listen: {e}")))?;
    // The database must be there and current before anyone logs in.
    Store::open_database(&ctx.db)?;
    diycloud_server::serve(ctx.config, ctx.db, listen).map_err(|e| Failure::Runtime(e.to_string()))
}

/// `slicectl config check`: every error of the file, where it is; exit 2
/// when there is one.
fn check_config(path: &std::path::Path, explicit: bool, json: bool) -> Result<(), Failure> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = Config::read_trusted(&path, explicit)
        .map_err(|e| Failure::Runtime(e.to_string()))?
        .unwrap_or_default();
    let problems = Config::check(&text);
    let file = path.display().to_string();
    if json {
        let document = serde_json::json!({
            "file": file, "ok": problems.is_empty(), "problems": problems,
        });
        view::line(&format!("{document:#}"));
    } else if problems.is_empty() {
        view::line(&format!("{file}: ok"));
    } else {
        for p in &problems {
            let place = match (p.line, p.column) {
                (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
                _ => file.clone(),
            };
            eprintln!("{place}: {}", p.message);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::ReportedUsage(format!(
            "{file}: {} error(s) (logins still read what they use: see `slicectl config check --help`)",
            problems.len()
        )))
    }
}

/// `slicectl cache refresh`.
fn refresh_cache(ctx: &Context) -> Result<(), Failure> {
    let Database::Postgres(settings) = &ctx.db else {
        return Err(Failure::Usage(format!(
            "{} is an SQLite file: only a postgresql:// db has a node cache",
            ctx.db
        )));
    };
    // This is the node's probe: what it finds unreachable, logins may take
    // from the cache; what it reaches ends an outage.
    let mut cluster = match ClusterStore::probe(settings) {
        Ok(cluster) => cluster,
        Err(StoreError::Offline { why, .. }) => {
            return Err(Failure::Runtime(format!(
                "PostgreSQL {} is unreachable ({why}): the cache keeps what it has, and logins use it until the server is back",
                ctx.db
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let cluster = &mut cluster;
    // Opening merged what it could; anything left goes now.
    let at_open = cluster.merged_at_open();
    let now = cluster.merge_offline()?;
    let merged = libdiycloud::store::cluster::MergeReport {
        events: at_open.events + now.events,
        failures: at_open.failures + now.failures,
    };
    let refreshed = cluster.refresh_cache()?;
    view::print(
        ctx,
        &serde_json::json!({
            "users": refreshed.users,
            "removed": refreshed.removed,
            "merged_events": merged.events,
            "merged_failures": merged.failures,
        }),
        &format!(
            "cached {} users from {} ({} removed); merged {} offline events ({} failed logins)",
            refreshed.users, ctx.db, refreshed.removed, merged.events, merged.failures
        ),
    );
    Ok(())
}

fn backup(ctx: &Context, file: &std::path::Path) -> Result<(), Failure> {
    let store = Store::open_database(&ctx.db)?;
    let count = store.backup(file)?;
    view::print(
        ctx,
        &serde_json::json!({"db": ctx.db.to_string(), "backup": file, "users": count}),
        &format!("backed up {} to {} ({count} users)", ctx.db, file.display()),
    );
    Ok(())
}

/// `sqlite` or `postgresql`, for `--json` documents.
pub fn backend_name(db: &Database) -> &'static str {
    match db {
        Database::Sqlite(_) => "sqlite",
        Database::Postgres(_) => "postgresql",
    }
}

fn init(ctx: &Context) -> Result<(), Failure> {
    // The managed group needs root (groupadd, gpasswd); a test or a dry run
    // as another user gets the database only, and is told so.
    let as_root = nix::unistd::geteuid().is_root();
    let accounts = as_root.then_some(&ctx.ports.accounts);
    let done = libdiycloud::usecases::admin::init(&ctx.db, &ctx.config, accounts)?;
    let report = done.store;
    let what = if report.created {
        format!("created database {}", ctx.db)
    } else if report.from_version < report.to_version {
        format!(
            "migrated database {} from schema version {}",
            ctx.db, report.from_version
        )
    } else {
        format!("database {} is up to date", ctx.db)
    };
    let mut text = format!("{what} (schema version {})", report.to_version);
    match &done.group {
        Some(group) => text.push_str(&format!(
            "\nmanaged group {}: {}{}",
            group.group,
            if group.created { "created" } else { "present" },
            if group.added.is_empty() {
                String::new()
            } else {
                format!(", added {}", group.added.join(", "))
            }
        )),
        None => text.push_str(&format!(
            "\nmanaged group {}: not checked (needs root)",
            ctx.config.group
        )),
    }
    let document = serde_json::json!({
        "db": ctx.db.to_string(),
        "backend": backend_name(&ctx.db),
        "created": report.created,
        "from_version": report.from_version,
        "schema_version": report.to_version,
        "group": done.group,
    });
    view::print(ctx, &document, &text);
    Ok(())
}

/// Parses the command line; with `--json`, a usage error is a JSON document
/// on stdout too (exit 2), like every other error.
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => {
            use clap::error::ErrorKind;
            let json = std::env::args_os().skip(1).any(|a| a == "--json");
            let is_usage_error = !matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if json && is_usage_error {
                let detail = e.kind().as_str().map_or_else(
                    || e.to_string(),
                    |_| {
                        e.to_string()
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .trim_start_matches("error: ")
                            .to_owned()
                    },
                );
                view::line(&serde_json::json!({"error": "usage", "detail": detail}).to_string());
            }
            let _ = e.print();
            Err(ExitCode::from(if e.use_stderr() { 2 } else { 0 }))
        }
    }
}

fn main() -> ExitCode {
    // A probe of `doctor --enforcement`, run as the user it tests: nothing
    // of the CLI, the config or the database.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__probe") {
        let code = crate::enforcement::probe_main(&args[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let json = cli.json;
    let result = run(cli);
    // Output cut short by its reader (`| head`) is no failure; one that
    // could not be written for another reason is.
    let result = match (result, view::output_error()) {
        (Ok(()), Some(e)) => Err(Failure::Runtime(e)),
        (result, _) => result,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, kind, message) = match failure {
                Failure::Usage(m) => (2, Some("usage"), m),
                Failure::Runtime(m) => (1, Some("runtime"), m),
                Failure::Reported(m) => (1, None, m),
                Failure::ReportedUsage(m) => (2, None, m),
            };
            if let (true, Some(kind)) = (json, kind) {
                view::line(&serde_json::json!({"error": kind, "detail": message}).to_string());
            }
            eprintln!("slicectl: {message}");
            ExitCode::from(code)
        }
    }
}
