//! `slicectl apply` and `slicectl usage`: users' slices in systemd.

use libdiycloud::apply::{apply_slice, resolve_uid, ApplyError};
use libdiycloud::cgroup::user_slice;
use libdiycloud::model::{User, Username};
use libdiycloud::systemd::{SliceUsage, Systemd};
use serde_json::json;

use crate::{view, Context, Failure};

/// The users a command is about: one by name, or all of them.
fn users(ctx: &Context, name: Option<&Username>) -> Result<Vec<User>, Failure> {
    let store = ctx.open_store()?;
    match name {
        Some(name) => Ok(vec![store
            .user(name.as_str())?
            .ok_or_else(|| Failure::Runtime(format!("no such user: {name}")))?]),
        None => Ok(store.users()?),
    }
}

/// `apply NAME` or `apply --all` (`name` is `None`): with `--all`, users
/// without a system account have no slice and are skipped, not failed.
pub fn apply(ctx: &Context, name: Option<&Username>) -> Result<(), Failure> {
    let systemd = Systemd::system();
    let mut results = Vec::new();
    let mut lines = Vec::new();
    let mut failed = 0;
    let all = name.is_none();
    for user in users(ctx, name)? {
        let name = user.username.to_string();
        match apply_slice(&user, &systemd) {
            Err(ApplyError::NoSystemAccount(_)) if all => {
                lines.push(format!("{name}: skipped (no system account)"));
                results.push(
                    json!({"username": name, "applied": false, "skipped": "no system account"}),
                );
            }
            Ok(applied) => {
                let props: Vec<String> =
                    applied.properties.iter().map(ToString::to_string).collect();
                lines.push(format!("{name}: {} {}", applied.unit, props.join(" ")));
                results.push(json!({"username": name, "unit": applied.unit, "applied": true, "properties": props}));
            }
            Err(e) => {
                failed += 1;
                lines.push(format!("{name}: FAILED: {e}"));
                results.push(json!({"username": name, "applied": false, "error": e.to_string()}));
            }
        }
    }
    if lines.is_empty() {
        lines.push("no users".into());
    }
    view::print(ctx, &json!(results), &lines.join("\n"));
    if failed > 0 {
        return Err(Failure::Reported(format!(
            "{failed} user(s) could not be applied"
        )));
    }
    Ok(())
}

/// Bytes for people: 1536 -> "1.5K".
fn human_bytes(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T", "P", "E"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

pub fn usage(ctx: &Context, name: Option<&Username>) -> Result<(), Failure> {
    let systemd = Systemd::system();
    let header = [
        "NAME",
        "UNIT",
        "STATE",
        "CPU TIME",
        "MEMORY",
        "TASKS",
        "CPU QUOTA",
        "MEMORY MAX",
        "TASKS MAX",
    ];
    let mut rows = Vec::new();
    let mut document = Vec::new();
    for user in users(ctx, name)? {
        let name = user.username.to_string();
        let Ok(uid) = resolve_uid(&user) else {
            rows.push([
                name.clone(),
                "-".into(),
                "no system account".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            document.push(json!({"username": name, "unit": null}));
            continue;
        };
        let usage: SliceUsage = systemd
            .slice_usage(&user_slice(uid))
            .map_err(|e| Failure::Runtime(e.to_string()))?;
        rows.push([
            name.clone(),
            usage.unit.clone(),
            usage.active_state.clone(),
            or_dash(
                usage
                    .cpu_usage_nsec
                    .map(|ns| format!("{:.2}s", ns as f64 / 1e9)),
            ),
            or_dash(usage.memory_current.map(human_bytes)),
            or_dash(usage.tasks_current.map(|t| t.to_string())),
            usage
                .cpu_quota_per_sec_usec
                .map_or("infinity".into(), |us| {
                    format!("{:.2} cores", us as f64 / 1e6)
                }),
            usage.memory_max.map_or("infinity".into(), human_bytes),
            usage.tasks_max.map_or("infinity".into(), |t| t.to_string()),
        ]);
        let mut entry = json!(usage);
        entry["username"] = json!(name);
        document.push(entry);
    }
    view::print(ctx, &json!(document), &view::table(&header, &rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(256 << 20), "256.0M");
        assert_eq!(human_bytes(u64::MAX), "16.0E");
    }
}
