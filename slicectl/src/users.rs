//! `slicectl user ...`: each command validates everything first, then does
//! its writes in one transaction. `add` and `del` with a system account
//! span the database and the account files: they record their intent first
//! and are finished by running them again (see `add` and `delete`).

use libdiycloud::model::{Allocation, Pending, Username};
use libdiycloud::password::Hasher;
use libdiycloud::platform;
use libdiycloud::store::{NewUser, UserChanges};
use serde_json::json;

use crate::cli::{AddArgs, Expiry, LimitArgs, ModArgs, ProfileArgs, UserCommand};
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
        UserCommand::Del { name, remove_home } => delete(ctx, &name, remove_home),
    }
}

/// Reads a new password and hashes it, refusing it (exit 2) if it breaks the policy.
fn new_password_hash(ctx: &Context, from_stdin: bool) -> Result<String, Failure> {
    let password = password_input::read(from_stdin)?;
    let text = ctx
        .config
        .password
        .check(&password)
        .map_err(|v| Failure::Usage(format!("password refused: {v}")))?;
    let hasher = Hasher::new(ctx.config.hash).map_err(|e| Failure::Runtime(e.to_string()))?;
    hasher
        .hash(text)
        .map_err(|e| Failure::Runtime(e.to_string()))
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

/// `user add`. With a system account this spans two resources, the
/// database and the account files, so it goes: (1) the record, marked
/// `pending = add`; (2) `useradd`; (3) the uid, mark cleared. Killed at any
/// point, running the same command again finishes it (and `user del`
/// removes what there is): a pending record never logs in.
fn add(ctx: &Context, args: AddArgs) -> Result<(), Failure> {
    let name = args.name.as_str();
    let mut store = ctx.open_store()?;
    let resuming = match store.user(name)? {
        None => false,
        Some(user) if user.pending == Some(Pending::Add) && !args.no_system_account => true,
        Some(user) if user.pending == Some(Pending::Del) => {
            return Err(Failure::Runtime(format!(
                "user {name} is being deleted (an earlier `slicectl user del {name}` was interrupted): run it again to finish"
            )))
        }
        Some(_) => return Err(Failure::Runtime(format!("user {name} already exists"))),
    };
    let existing_uid = platform::system_uid(name)?;
    if let Some(uid) = existing_uid {
        if uid == 0 {
            return Err(platform::AccountError::Root { name: name.into() }.into());
        }
        let uid_min = platform::uid_min();
        if !resuming && !args.no_system_account {
            if uid < uid_min {
                return Err(Failure::Runtime(format!(
                    "system account {name} already exists (uid {uid}, below UID_MIN {uid_min}: a system or service account); pick another name"
                )));
            }
            return Err(platform::AccountError::Exists {
                name: name.into(),
                uid,
            }
            .into());
        }
        if !resuming && uid < uid_min && !args.allow_service_account {
            return Err(Failure::Usage(
                platform::AccountError::ServiceAccount {
                    name: name.into(),
                    uid,
                    uid_min,
                }
                .to_string(),
            ));
        }
    }
    let warnings = limit_warnings(ctx, &args.limits, args.profile.expires);
    let password_hash = new_password_hash(ctx, args.password_stdin)?;
    let mut allocation = ctx.config.defaults.clone();
    apply_limits(&mut allocation, &args.limits);
    let creates_account = !args.no_system_account;
    let new = NewUser {
        username: args.name.clone(),
        password_hash,
        role: args.role,
        email: non_empty(&args.profile.email),
        full_name: non_empty(&args.profile.full_name),
        expires: match args.profile.expires {
            Some(Expiry::On(date)) => Some(date),
            _ => None,
        },
        allocation,
        uid: existing_uid.filter(|_| !creates_account),
        owns_system_account: creates_account,
        pending: creates_account.then_some(Pending::Add),
    };

    // (1) The record (a resumed add replaces the interrupted one's).
    let mut user = store.write(|tx| {
        if resuming {
            tx.delete_user(name)?;
        }
        let user = tx.insert_user(&new, ctx.now)?;
        if !creates_account {
            tx.audit(
                ctx.now,
                &ctx.actor,
                "user.add",
                name,
                &audit_detail(&user, ctx),
            )?;
        }
        Ok::<_, Failure>(user)
    })?;
    if creates_account {
        // (2) The account. One that exists now was made by the interrupted
        // run this one resumes.
        let uid = match existing_uid {
            Some(uid) => uid,
            None => match platform::create_system_account(
                name,
                new.full_name.as_deref(),
                &ctx.config.shell,
            ) {
                Ok(uid) => uid,
                Err(e) => {
                    // Where no account came of it, take the record back out;
                    // where one did (an earlier run's useradd, still going),
                    // the next run adopts it.
                    if matches!(platform::system_uid(name), Ok(None)) {
                        let _ = store.write(|tx| tx.delete_user(name));
                    }
                    return Err(e.into());
                }
            },
        };
        // (3) Done.
        user = store.write(|tx| {
            tx.set_system_account(name, uid, true)?;
            tx.set_pending(name, None)?;
            let user = tx.user(name)?;
            tx.audit(
                ctx.now,
                &ctx.actor,
                "user.add",
                name,
                &audit_detail(&user, ctx),
            )?;
            Ok::<_, Failure>(user)
        })?;
    }
    let uid = user
        .uid
        .map_or("no system account".into(), |uid| format!("uid {uid}"));
    let resumed = if resuming {
        " (finishing an interrupted add)"
    } else {
        ""
    };
    let mut document = view::user_json(&user, ctx);
    view::warn(ctx, &mut document, &warnings);
    view::print(
        ctx,
        &document,
        &format!("created user {name} ({uid}){resumed}"),
    );
    Ok(())
}

/// The record as the audit log keeps it: without what changes by itself.
fn audit_detail(user: &libdiycloud::model::User, ctx: &Context) -> serde_json::Value {
    let mut detail = view::user_json(user, ctx);
    for volatile in [
        "created_at",
        "updated_at",
        "last_login",
        "last_logout",
        "password_changed_at",
        "locked",
        "expired",
        "failed_logins",
        "state",
        "pending",
    ] {
        detail.as_object_mut().map(|o| o.remove(volatile));
    }
    detail
}

/// Values that are valid but probably a mistake, for `add` and `mod`.
fn limit_warnings(ctx: &Context, limits: &LimitArgs, expires: Option<Expiry>) -> Vec<String> {
    let mut warnings =
        libdiycloud::model::limits::warnings(limits.cpu, limits.memory, limits.tasks, limits.disk);
    if let Some(Expiry::On(date)) = expires {
        if ctx.now >= date.start() {
            warnings.push(format!(
                "the expiry date {date} has passed: the account cannot be used"
            ));
        }
    }
    warnings
}

fn apply_limits(allocation: &mut Allocation, limits: &LimitArgs) {
    if let Some(cpu) = limits.cpu {
        allocation.cpu = cpu;
    }
    if let Some(memory) = limits.memory {
        allocation.memory = memory;
    }
    if let Some(disk) = limits.disk {
        allocation.disk = disk;
    }
    if let Some(tasks) = limits.tasks {
        allocation.tasks = tasks;
    }
    if let Some(gpus) = &limits.gpus {
        allocation.gpus = gpus.clone();
    }
}

fn list(ctx: &Context) -> Result<(), Failure> {
    let users = ctx.open_store()?.users()?;
    let document: Vec<_> = users.iter().map(|u| view::user_json(u, ctx)).collect();
    let text = if users.is_empty() {
        "no users".to_owned()
    } else {
        view::users_table(&users, ctx)
    };
    view::print(ctx, &json!(document), &text);
    Ok(())
}

fn show(ctx: &Context, name: &Username) -> Result<(), Failure> {
    let store = ctx.open_store()?;
    let user = store
        .user(name.as_str())?
        .ok_or_else(|| Failure::Runtime(format!("no such user: {name}")))?;
    let log = store.audit_log(name.as_str(), 10)?;
    let mut document = view::user_json(&user, ctx);
    document["audit"] = json!(log);
    view::print(ctx, &document, &view::user_text(&user, &log, ctx));
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
        cpu: args.limits.cpu,
        memory: args.limits.memory,
        disk: args.limits.disk,
        tasks: args.limits.tasks,
        gpus: args.limits.gpus.clone(),
    }
}

fn modify(ctx: &Context, args: ModArgs) -> Result<(), Failure> {
    let changes = changes_from(&args);
    if changes.is_empty() {
        return Err(Failure::Usage(
            "nothing to change: give at least one option (see `slicectl user mod --help`)".into(),
        ));
    }
    let name = args.name.as_str();
    let warnings = limit_warnings(ctx, &args.limits, args.profile.expires);
    let mut store = ctx.open_store()?;
    let user = store.write(|tx| {
        if let Some(pending) = tx.user(name)?.pending {
            return Err(Failure::Runtime(format!(
                "user {name} has an unfinished `user {}`: run `slicectl user {} {name}` again first",
                pending.as_str(),
                pending.as_str()
            )));
        }
        let detail = tx.update_user(name, &changes, ctx.now)?;
        tx.audit(ctx.now, &ctx.actor, "user.mod", name, &detail)?;
        let user = tx.user(name)?;
        // Keep the passwd comment of an account we made in step; a failing
        // usermod rolls the whole change back.
        if let (Some(full_name), true) = (&changes.full_name, user.owns_system_account) {
            platform::set_system_account_comment(name, full_name.as_deref().unwrap_or(""))?;
        }
        Ok::<_, Failure>(user)
    })?;
    let mut document = view::user_json(&user, ctx);
    view::warn(ctx, &mut document, &warnings);
    view::print(ctx, &document, &format!("updated user {name}"));
    Ok(())
}

fn passwd(ctx: &Context, name: &Username, from_stdin: bool) -> Result<(), Failure> {
    let name = name.as_str();
    let mut store = ctx.open_store()?;
    if store.user(name)?.is_none() {
        return Err(Failure::Runtime(format!("no such user: {name}")));
    }
    let hash = new_password_hash(ctx, from_stdin)?;
    store.write(|tx| {
        tx.set_password_hash(name, &hash, ctx.now)?;
        tx.audit(
            ctx.now,
            &ctx.actor,
            "user.passwd",
            name,
            &json!({"by": "admin"}),
        )
    })?;
    view::print(
        ctx,
        &json!({"username": name, "password_changed": true}),
        &format!("password of {name} changed"),
    );
    Ok(())
}

fn unlock(ctx: &Context, name: &Username) -> Result<(), Failure> {
    let name = name.as_str();
    let mut store = ctx.open_store()?;
    let was_locked = store.write(|tx| {
        let user = tx.user(name)?;
        let was_locked = ctx.config.lockout.is_locked(&user.failures, ctx.now);
        tx.set_failures(name, &Default::default())?;
        tx.audit(
            ctx.now,
            &ctx.actor,
            "user.unlock",
            name,
            &json!({"failures": user.failures.count, "was_locked": was_locked}),
        )?;
        Ok::<_, Failure>(was_locked)
    })?;
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

/// `user del`. For an account slicectl created: (1) mark the record
/// `pending = del` (it stops logging in); (2) `userdel`; (3) remove the
/// record. Killed at any point, running it again finishes the job.
fn delete(ctx: &Context, name: &Username, remove_home: bool) -> Result<(), Failure> {
    let name = name.as_str();
    let mut store = ctx.open_store()?;
    let user = store
        .user(name)?
        .ok_or_else(|| Failure::Runtime(format!("no such user: {name}")))?;
    if remove_home && !user.owns_system_account {
        eprintln!("slicectl: {name}'s system account was not created by slicectl; leaving it and its home alone");
    }
    let detail = json!({
        "system_account_removed": user.owns_system_account,
        "home_removed": remove_home && user.owns_system_account,
    });
    if user.owns_system_account {
        if user.pending != Some(Pending::Del) {
            store.write(|tx| tx.set_pending(name, Some(Pending::Del)))?;
        }
        platform::delete_system_account(name, remove_home)?;
    }
    store.write(|tx| {
        tx.delete_user(name)?;
        tx.audit(ctx.now, &ctx.actor, "user.del", name, &detail)
    })?;
    view::print(
        ctx,
        &json!({"username": name, "deleted": true}),
        &format!("deleted user {name}"),
    );
    Ok(())
}
