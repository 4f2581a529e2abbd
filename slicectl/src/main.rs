//! `slicectl`: the admin CLI of diycloud.
#![forbid(unsafe_code)]

mod cli;
mod doctor;
mod password_input;
mod slices;
mod users;
mod view;

use std::process::ExitCode;

use clap::Parser;
use libdiycloud::config::Config;
use libdiycloud::model::Timestamp;
use libdiycloud::store::{Store, StoreError};

use cli::{Cli, Command};

/// Why a command failed: bad input (exit 2) or a failure while doing it (exit 1).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Runtime(String),
    /// A runtime failure whose details the command's output already holds
    /// (with `--json`, no second document is printed).
    Reported(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Runtime(e.to_string())
    }
}

impl From<libdiycloud::apply::ApplyError> for Failure {
    fn from(e: libdiycloud::apply::ApplyError) -> Self {
        Failure::Runtime(e.to_string())
    }
}

impl From<libdiycloud::platform::AccountError> for Failure {
    fn from(e: libdiycloud::platform::AccountError) -> Self {
        Failure::Runtime(e.to_string())
    }
}

/// What every command gets: the parsed config, where the DB is, the time
/// and who is acting (for the audit log).
pub struct Context {
    pub config: Config,
    pub db: std::path::PathBuf,
    pub json: bool,
    pub now: Timestamp,
    pub actor: String,
}

impl Context {
    pub fn open_store(&self) -> Result<Store, Failure> {
        Ok(Store::open(&self.db)?)
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

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

fn run(cli: Cli) -> Result<(), Failure> {
    let explicit = cli.config.as_os_str() != libdiycloud::config::DEFAULT_CONFIG_PATH;
    let config =
        Config::load(&cli.config, explicit).map_err(|e| Failure::Runtime(e.to_string()))?;
    let db = cli.db.clone().unwrap_or_else(|| config.db.clone());
    let ctx = Context {
        config,
        db,
        json: cli.json,
        now: now(),
        actor: actor(),
    };
    match cli.command {
        Command::Init => init(&ctx),
        Command::User(command) => users::run(&ctx, command),
        Command::Apply { name, .. } => slices::apply(&ctx, name.as_ref()),
        Command::Usage { name } => slices::usage(&ctx, name.as_ref()),
        Command::Doctor => doctor::run(&ctx),
    }
}

fn init(ctx: &Context) -> Result<(), Failure> {
    let (_, report) = Store::init(&ctx.db)?;
    let what = if report.created {
        format!("created database {}", ctx.db.display())
    } else if report.from_version < report.to_version {
        format!(
            "migrated database {} from schema version {}",
            ctx.db.display(),
            report.from_version
        )
    } else {
        format!("database {} is up to date", ctx.db.display())
    };
    view::print(
        ctx,
        &serde_json::json!({
            "db": ctx.db,
            "created": report.created,
            "from_version": report.from_version,
            "schema_version": report.to_version,
        }),
        &format!("{what} (schema version {})", report.to_version),
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, kind, message) = match failure {
                Failure::Usage(m) => (2, Some("usage"), m),
                Failure::Runtime(m) => (1, Some("runtime"), m),
                Failure::Reported(m) => (1, None, m),
            };
            if let (true, Some(kind)) = (json, kind) {
                println!("{}", serde_json::json!({"error": kind, "detail": message}));
            }
            eprintln!("slicectl: {message}");
            ExitCode::from(code)
        }
    }
}
