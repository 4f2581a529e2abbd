//! `slicectl user ...`: arguments in, the library's admin use cases, output
//! out. The rules, writes and audit entries are all in `libdiycloud::usecases::admin`.

use libdiycloud::model::Username;
use libdiycloud::usecases::admin::{AddUser, AdminError, SystemAccount, UserChanges};
use libdiycloud::usecases::apply::{ApplyReport, StepOutcome};
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::{AddArgs, Expiry, ModArgs, ProfileArgs, UserCommand};
use crate::{password_input, view, Context, Failure};

pub fn run(ctx: &Context, command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Add(args) => add(ctx, args),
        UserCommand::List => list(ctx),
        UserCommand::Show { name } => show(ctx, &name),
        UserCommand::Mod(args) => modify(ctx, args),
        UserCommand::Passwd {
            name,
            password_stdin,
        } => passwd(ctx, &name, password_stdin),
        UserCommand::Unlock { name } => unlock(ctx, &name),
        UserCommand::Relink { name } => relink(ctx, &name),
        UserCommand::Del { name, remove_home } => delete(ctx, &name, remove_home),
    }
}

/// The new password, from stdin or the terminal, for the use case to ask
/// for once it has checked the request.
fn password_source(from_stdin: bool) -> impl FnMut() -> Result<Zeroizing<Vec<u8>>, AdminError> {
    move || {
        password_input::read(from_stdin).map_err(|failure| match failure {
            Failure::Usage(m) | Failure::ReportedUsage(m) => AdminError::Invalid(m),
            Failure::Runtime(m) | Failure::Reported(m) => AdminError::Input(m),
        })
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

fn add(ctx: &Context, args: AddArgs) -> Result<(), Failure> {
    let request = AddUser {
        name: args.name.clone(),
        role: args.role,
        email: non_empty(&args.profile.email),
        full_name: non_empty(&args.profile.full_name),
        expires: match args.profile.expires {
            Some(Expiry::On(date)) => Some(date),
            _ => None,
        },
        limits: args.limits.0.clone(),
        system_account: if args.no_system_account {
            SystemAccount::Link {
                allow_service_account: args.allow_service_account,
            }
        } else {
            SystemAccount::Create
        },
    };
    let mut store = ctx.open_store()?;
    let added = ctx
        .admin(&mut store)
        .add(&request, &mut password_source(args.password_stdin))?;
    let name = args.name.as_str();
    let uid = added
        .user
        .uid
        .map_or("no system account".into(), |uid| format!("uid {uid}"));
    let resumed = if added.resumed {
        " (finishing an interrupted add)"
    } else {
        ""
    };
    report_applied(
        ctx,
        json!(added.user),
        format!("created user {name} ({uid}){resumed}"),
        added.warnings,
        &added.applied,
    )
}

/// Prints a changed user with what applying their allocation did, and the
/// warnings of both; a failed step fails the command, with the change kept
/// and the command to retry.
fn report_applied(
    ctx: &Context,
    mut document: serde_json::Value,
    mut text: String,
    mut warnings: Vec<String>,
    applied: &ApplyReport,
) -> Result<(), Failure> {
    warnings.extend(applied.warnings());
    view::warn(ctx, &mut document, &warnings);
    document["apply"] = json!(applied);
    for line in applied.applied() {
        text.push_str(&format!("\napplied: {line}"));
    }
    view::print(ctx, &document, &text);
    match applied.error() {
        None => Ok(()),
        Some(error) => Err(Failure::Reported(format!(
            "the change is saved, but applying it failed: {error}; run `slicectl apply {}` once that is fixed",
            applied.username
        ))),
    }
}

fn list(ctx: &Context) -> Result<(), Failure> {
    let mut store = ctx.open_store()?;
    let users = ctx.admin(&mut store).users()?;
    let text = if users.is_empty() {
        "no users".to_owned()
    } else {
        view::users_table(&users)
    };
    view::print(ctx, &json!(users), &text);
    Ok(())
}

fn show(ctx: &Context, name: &Username) -> Result<(), Failure> {
    let mut store = ctx.open_store()?;
    let (user, log) = ctx.admin(&mut store).show(name.as_str(), 10)?;
    let mut document = json!(user);
    document["audit"] = json!(log);
    view::print(ctx, &document, &view::user_text(&user, &log));
    Ok(())
}

fn changes_from(args: &ModArgs) -> UserChanges {
    let ProfileArgs {
        email,
        full_name,
        expires,
    } = &args.profile;
    let clearable = |v: &Option<String>| {
        v.as_ref()
            .map(|s| Some(s.clone()).filter(|s| !s.is_empty()))
    };
    UserChanges {
        role: args.role,
        email: clearable(email),
        full_name: clearable(full_name),
        expires: expires.map(|e| match e {
            Expiry::On(date) => Some(date),
            Expiry::Never => None,
        }),
        active: match (args.disable, args.enable) {
            (true, _) => Some(false),
            (_, true) => Some(true),
            _ => None,
        },
        limits: args.limits.0.clone(),
    }
}

fn modify(ctx: &Context, args: ModArgs) -> Result<(), Failure> {
    let name = args.name.as_str();
    let mut store = ctx.open_store()?;
    let modified = ctx.admin(&mut store).modify(name, &changes_from(&args))?;
    let mut document = json!(modified.user);
    let text = format!("updated user {name}");
    match &modified.applied {
        Some(applied) => report_applied(ctx, document, text, modified.warnings, applied),
        None => {
            view::warn(ctx, &mut document, &modified.warnings);
            view::print(ctx, &document, &text);
            Ok(())
        }
    }
}

fn passwd(ctx: &Context, name: &Username, from_stdin: bool) -> Result<(), Failure> {
    let name = name.as_str();
    let mut store = ctx.open_store()?;
    ctx.admin(&mut store)
        .set_password(name, &mut password_source(from_stdin))?;
    view::print(
        ctx,
        &json!({"username": name, "password_changed": true}),
        &format!("password of {name} changed"),
    );
    Ok(())
}

fn relink(ctx: &Context, name: &Username) -> Result<(), Failure> {
    let name = name.as_str();
    let mut store = ctx.open_store()?;
    let relinked = ctx.admin(&mut store).relink(name)?;
    let before = relinked
        .before
        .map_or_else(|| "none".to_owned(), |u| u.to_string());
    let document = json!({"username": name, "uid_before": relinked.before, "uid": relinked.uid});
    let text = format!(
        "{name} is linked to uid {} (the record had {before})",
        relinked.uid
    );
    report_applied(ctx, document, text, Vec::new(), &relinked.applied)
}

fn unlock(ctx: &Context, name: &Username) -> Result<(), Failure> {
    let name = name.as_str();
    let mut store = ctx.open_store()?;
    let was_locked = ctx.admin(&mut store).unlock(name)?;
    let text = if was_locked {
        format!("unlocked {name}")
    } else {
        format!("{name} was not locked; failure count cleared")
    };
    view::print(
        ctx,
        &json!({"username": name, "was_locked": was_locked}),
        &text,
    );
    Ok(())
}

fn delete(ctx: &Context, name: &Username, remove_home: bool) -> Result<(), Failure> {
    let name = name.as_str();
    let mut store = ctx.open_store()?;
    let deleted = ctx.admin(&mut store).delete(name, remove_home)?;
    if deleted.home_left {
        eprintln!("slicectl: {name}'s system account was not created by slicectl; leaving it and its home alone");
    }
    let mut text = format!("deleted user {name}");
    for step in &deleted.quota.steps {
        if let StepOutcome::Applied {
            target, changed, ..
        } = &step.outcome
        {
            let had = if *changed { "" } else { " (there were none)" };
            text.push_str(&format!("\nquota limits taken off {target}{had}"));
        }
    }
    view::print(
        ctx,
        &json!({"username": name, "deleted": true, "quota": deleted.quota}),
        &text,
    );
    match (deleted.quota.error(), deleted.quota.uid) {
        (None, _) => Ok(()),
        (Some(error), uid) => Err(Failure::Reported(format!(
            "user {name} is deleted, but taking their disk quota limits off failed: {error}; once that is fixed, run `setquota -u {} 0 0 0 0 FILESYSTEM` on it",
            uid.map_or("UID".into(), |u| u.to_string())
        ))),
    }
}
