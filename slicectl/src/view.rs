//! Output: one JSON document with `--json`, readable text otherwise.

use libdiycloud::model::User;
use libdiycloud::store::AuditEntry;
use serde_json::{json, Value};

use crate::Context;

/// Warnings go to stderr; with `--json` also into the document.
pub fn warn(ctx: &Context, document: &mut Value, warnings: &[String]) {
    for w in warnings {
        eprintln!("slicectl: warning: {w}");
    }
    if ctx.json {
        document["warnings"] = json!(warnings);
    }
}

pub fn print(ctx: &Context, document: &Value, text: &str) {
    if ctx.json {
        println!("{document:#}");
    } else if !text.is_empty() {
        println!("{text}");
    }
}

/// A user as scripts see it; field names follow the CLI flags.
pub fn user_json(user: &User, ctx: &Context) -> Value {
    let a = &user.allocation;
    json!({
        "username": user.username.as_str(),
        "uid": user.uid,
        "system_account": user.owns_system_account,
        "role": user.role,
        "email": user.email,
        "full_name": user.full_name,
        "active": user.active,
        "expires": user.expires.map(|d| d.to_string()),
        "expired": user.is_expired(ctx.now),
        "locked": ctx.config.lockout.is_locked(&user.failures, ctx.now),
        "failed_logins": user.failures.count,
        "created_at": user.created_at.to_string(),
        "updated_at": user.updated_at.to_string(),
        "last_login": user.last_login.map(|t| t.to_string()),
        "last_logout": user.last_logout.map(|t| t.to_string()),
        "password_changed_at": user.password_changed_at.map(|t| t.to_string()),
        "cpu": a.cpu.to_string(),
        "memory": a.memory.to_string(),
        "disk": a.disk.to_string(),
        "tasks": a.tasks.to_string(),
        "gpus": a.gpus.to_string(),
        "state": state(user, ctx),
        "pending": user.pending,
    })
}

fn state(user: &User, ctx: &Context) -> &'static str {
    if let Some(pending) = user.pending {
        return match pending {
            libdiycloud::model::Pending::Add => "unfinished add",
            libdiycloud::model::Pending::Del => "unfinished del",
        };
    }
    if !user.active {
        "disabled"
    } else if user.is_expired(ctx.now) {
        "expired"
    } else if ctx.config.lockout.is_locked(&user.failures, ctx.now) {
        "locked"
    } else {
        "active"
    }
}

pub fn users_table(users: &[User], ctx: &Context) -> String {
    let header = [
        "NAME",
        "UID",
        "ROLE",
        "STATE",
        "CPU",
        "MEMORY",
        "DISK",
        "TASKS",
        "GPUS",
        "EXPIRES",
        "LAST LOGIN",
    ];
    let rows: Vec<[String; 11]> = users
        .iter()
        .map(|u| {
            let a = &u.allocation;
            [
                u.username.to_string(),
                u.uid.map_or("-".into(), |uid| uid.to_string()),
                u.role.to_string(),
                state(u, ctx).into(),
                a.cpu.to_string(),
                a.memory.to_string(),
                a.disk.to_string(),
                a.tasks.to_string(),
                a.gpus.to_string(),
                u.expires.map_or("never".into(), |d| d.to_string()),
                u.last_login.map_or("never".into(), |t| t.to_string()),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// Rows under a header, each column padded to its widest cell.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(&mut header.iter().copied())];
    out.extend(rows.iter().map(|r| line(&mut r.iter().map(String::as_str))));
    out.join("\n")
}

pub fn user_text(user: &User, log: &[AuditEntry], ctx: &Context) -> String {
    let a = &user.allocation;
    let or = |v: &Option<String>, none: &str| v.clone().unwrap_or_else(|| none.to_owned());
    let uid = match (user.uid, user.owns_system_account) {
        (Some(uid), true) => format!("{uid} (system account created by slicectl)"),
        (Some(uid), false) => format!("{uid} (existing system account)"),
        (None, _) => "- (no system account)".into(),
    };
    let mut lines = vec![
        format!("username:      {}", user.username),
        format!("uid:           {uid}"),
        format!("role:          {}", user.role),
        format!("state:         {}", state(user, ctx)),
        format!("full name:     {}", or(&user.full_name, "-")),
        format!("email:         {}", or(&user.email, "-")),
        format!(
            "expires:       {}",
            user.expires.map_or("never".into(), |d| d.to_string())
        ),
        format!("failed logins: {}", user.failures.count),
        format!("created:       {}", user.created_at),
        format!(
            "last login:    {}",
            user.last_login.map_or("never".into(), |t| t.to_string())
        ),
        format!(
            "password set:  {}",
            user.password_changed_at
                .map_or("-".into(), |t| t.to_string())
        ),
        format!("cpu:           {}", a.cpu),
        format!("memory:        {}", a.memory),
        format!("disk:          {}", a.disk),
        format!("tasks:         {}", a.tasks),
        format!("gpus:          {}", a.gpus),
    ];
    if !log.is_empty() {
        lines.push("recent changes:".into());
        lines.extend(
            log.iter()
                .map(|e| format!("  {}  {:<12} {}  {}", e.at, e.action, e.actor, e.detail)),
        );
    }
    lines.join("\n")
}
