//! Output: one JSON document with `--json`, readable text otherwise.

use libdiycloud::model::limits::LIMITS;
use libdiycloud::store::AuditEntry;
use libdiycloud::usecases::admin::UserView;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
        line(&format!("{document:#}"));
    } else if !text.is_empty() {
        line(text);
    }
}

/// Set once stdout's reader has gone (EPIPE): nothing more is written.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// A write to stdout that failed for another reason (a full disk): the
/// command then exits 1 with it.
static STDOUT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Writes `text` and a newline to stdout; every line of output goes
/// through here (or [`raw`]), never `println!`, which panics on a failed
/// write.
pub fn line(text: &str) {
    write_out(&[text.as_bytes(), b"\n"]);
}

/// Writes `bytes` to stdout as they are.
pub fn raw(bytes: &[u8]) {
    write_out(&[bytes]);
}

/// A reader that stops early (`slicectl user list | head -3`) closes the
/// pipe: the write gets EPIPE (Rust ignores SIGPIPE), and the output just
/// ends there, as it does for other Unix tools, without a panic or an
/// error; what the command did stands and its exit code is kept.
fn write_out(parts: &[&[u8]]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written = parts
        .iter()
        .try_for_each(|part| stdout.write_all(part))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        Err(e) => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            if let Ok(mut first) = STDOUT_ERROR.lock() {
                first.get_or_insert_with(|| format!("cannot write the output: {e}"));
            }
        }
    }
}

/// Why writing the output failed, other than its reader going away.
pub fn output_error() -> Option<String> {
    STDOUT_ERROR.lock().ok().and_then(|e| e.clone())
}

pub fn users_table(users: &[UserView]) -> String {
    let mut header = vec![
        "NAME".to_owned(),
        "UID".into(),
        "ROLE".into(),
        "STATE".into(),
    ];
    header.extend(
        LIMITS
            .iter()
            .filter(|l| l.listed)
            .map(|l| l.label.to_uppercase()),
    );
    header.extend(["EXPIRES".into(), "LAST LOGIN".into()]);
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let mut row = vec![
                u.username.clone(),
                u.uid.map_or("-".into(), |uid| uid.to_string()),
                u.role.to_string(),
                u.state.clone(),
            ];
            row.extend(
                u.allocation
                    .limit_texts()
                    .filter(|(limit, _)| limit.listed)
                    .map(|(_, text)| text),
            );
            row.push(u.expires.clone().unwrap_or_else(|| "never".into()));
            row.push(u.last_login.clone().unwrap_or_else(|| "never".into()));
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(&header, &rows)
}

/// Rows under a header, each column padded to its widest cell.
pub fn table<Row: AsRef<[String]>>(header: &[&str], rows: &[Row]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
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
    out.extend(
        rows.iter()
            .map(|r| line(&mut r.as_ref().iter().map(String::as_str))),
    );
    out.join("\n")
}

pub fn user_text(user: &UserView, log: &[AuditEntry]) -> String {
    let or = |v: &Option<String>, none: &str| v.clone().unwrap_or_else(|| none.to_owned());
    let uid = match (user.uid, user.system_account) {
        (Some(uid), true) => format!("{uid} (system account created by slicectl)"),
        (Some(uid), false) => format!("{uid} (existing system account)"),
        (None, _) => "- (no system account)".into(),
    };
    let mut lines = vec![
        format!("username:      {}", user.username),
        format!("uid:           {uid}"),
        format!("role:          {}", user.role),
        format!("state:         {}", user.state),
        format!("full name:     {}", or(&user.full_name, "-")),
        format!("email:         {}", or(&user.email, "-")),
        format!("expires:       {}", or(&user.expires, "never")),
        format!("failed logins: {}", user.failed_logins),
        format!("created:       {}", user.created_at),
        format!("last login:    {}", or(&user.last_login, "never")),
        format!("password set:  {}", or(&user.password_changed_at, "-")),
    ];
    lines.extend(user.allocation.texts().into_iter().map(|(key, text)| {
        let label = format!("{}:", key.replace('_', " "));
        format!("{label:<15}{text}")
    }));
    if !log.is_empty() {
        lines.push("recent changes:".into());
        lines.extend(
            log.iter()
                .map(|e| format!("  {}  {:<12} {}  {}", e.at, e.action, e.actor, e.detail)),
        );
    }
    lines.join("\n")
}
