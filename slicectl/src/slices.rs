//! `slicectl apply`, `prepare` and `usage`: users' slices in systemd and
//! their disk quotas.

use libdiycloud::model::events::{EventKind, LimitEvent};
use libdiycloud::model::slice::user_slice;
use libdiycloud::model::time::format_elapsed;
use libdiycloud::model::Username;
use libdiycloud::usecases::apply::DiskUsage;
use serde_json::json;

use crate::{view, Context, Failure};

/// `apply NAME` or `apply --all` (`name` is `None`): with `--all`, users
/// without a system account have no slice and are skipped, not failed.
pub fn apply(ctx: &Context, name: Option<&Username>) -> Result<(), Failure> {
    let mut store = ctx.open_store()?;
    let reports = ctx.admin(&mut store).apply(name.map(Username::as_str))?;
    let mut results = Vec::new();
    let mut lines = Vec::new();
    let mut failed = 0;
    for report in &reports {
        let user = &report.username;
        let mut result = json!(report);
        let error = match (report.error(), report.skipped()) {
            (Some(error), _) => Some(error),
            // One named user with nothing to apply is an error.
            (None, Some(reason)) if name.is_some() => {
                Some(format!("{reason}, so there is nothing to apply"))
            }
            _ => None,
        };
        result["applied"] = json!(error.is_none() && report.skipped().is_none());
        if let Some(error) = error {
            failed += 1;
            lines.push(format!("{user}: FAILED: {error}"));
            result["error"] = json!(error);
        } else if let Some(reason) = report.skipped() {
            lines.push(format!("{user}: skipped ({reason})"));
            result["skipped"] = json!(reason);
        } else {
            lines.extend(
                report
                    .applied()
                    .iter()
                    .map(|line| format!("{user}: {line}")),
            );
        }
        for warning in report.warnings() {
            eprintln!("slicectl: warning: {warning}");
        }
        results.push(result);
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

/// `prepare NAME`: the allocation applied, and where and how to start the
/// process in it.
pub fn prepare(ctx: &Context, name: &Username) -> Result<(), Failure> {
    let mut store = ctx.open_store()?;
    let report = ctx.admin(&mut store).prepare(name.as_str())?;
    // prepare refuses a user without a uid (nothing to apply).
    let slice = report.uid.map(user_slice).unwrap_or_default();
    for warning in report.warnings() {
        eprintln!("slicectl: warning: {warning}");
    }
    if let Some(error) = report.error() {
        eprintln!("slicectl: warning: {name}: {error} (on_session_error = \"allow\": going on)");
    }
    let mut document = json!(report);
    document["slice"] = json!(slice);
    document["complete"] = json!(report.is_complete());
    let mut lines = vec![format!("{name}: {slice}")];
    lines.extend(
        report
            .applied()
            .iter()
            .map(|line| format!("  applied {line}")),
    );
    lines.extend(
        report
            .env
            .iter()
            .map(|(key, value)| format!("{key}={value}")),
    );
    view::print(ctx, &document, &lines.join("\n"));
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

/// A limit for people: `None` is no limit.
fn limit_text(limit: Option<u64>, show: impl Fn(u64) -> String) -> String {
    limit.map_or("none".into(), show)
}

/// One user's disk on one filesystem: a table row and its JSON.
fn disk_row(name: &str, disk: &DiskUsage) -> [String; 7] {
    let filesystem = disk.filesystem.display().to_string();
    match &disk.quota {
        Ok(q) => [
            name.to_owned(),
            filesystem,
            human_bytes(q.used_bytes),
            limit_text(q.limits.soft_bytes(), human_bytes),
            limit_text(q.limits.hard_bytes(), human_bytes),
            q.used_inodes.to_string(),
            limit_text(q.limits.hard_inodes(), |n| n.to_string()),
        ],
        Err(_) => {
            let mut cells: [String; 7] = Default::default();
            cells.fill("-".into());
            cells[0] = name.to_owned();
            cells[1] = filesystem;
            cells[2] = "unreadable".into();
            cells
        }
    }
}

pub fn usage(ctx: &Context, name: Option<&Username>) -> Result<(), Failure> {
    let mut store = ctx.open_store()?;
    let (rows, node_gpus) = ctx
        .admin(&mut store)
        .usage_with_gpus(name.map(Username::as_str))?;
    let gpu_unavailable = rows.iter().find_map(|r| r.gpu_unavailable.clone());
    let mut gpu_table = Vec::new();
    let mut event_table = Vec::new();
    let mut idle_table = Vec::new();
    let mut disk_table = Vec::new();
    let mut disk_errors = Vec::new();
    let header = [
        "NAME",
        "UNIT",
        "STATE",
        "CPU TIME",
        "MEMORY",
        "TASKS",
        "CPU QUOTA",
        "MEMORY MAX",
        "MEMORY HIGH",
        "TASKS MAX",
        "CPU WEIGHT",
        "IO WEIGHT",
    ];
    let mut table = Vec::new();
    let mut document = Vec::new();
    for row in rows {
        document.push(row.document());
        let name = row.username;
        for disk in &row.disk {
            disk_table.push(disk_row(&name, disk));
            if let Err(error) = &disk.quota {
                disk_errors.push(format!("{name}: {}: {error}", disk.filesystem.display()));
            }
        }
        for event in &row.events {
            event_table.push(event_row(&name, event));
        }
        for idle in &row.idle_gpus {
            idle_table.push([
                name.clone(),
                idle.gpu.clone(),
                format_elapsed(idle.idle_seconds),
                idle.last_used.clone().unwrap_or_else(|| "never".into()),
            ]);
        }
        for gpu in &row.gpus {
            let names: Vec<String> = gpu
                .pids
                .iter()
                .map(|p| format!("{} {}", p.pid, p.name.as_deref().unwrap_or("?")))
                .collect();
            gpu_table.push([
                name.clone(),
                format!("{} ({})", gpu.index, gpu.uuid),
                gpu.processes.to_string(),
                human_bytes(gpu.memory_bytes),
                or_dash(gpu.utilization_percent.map(|p| format!("{p}%"))),
                names.join(", "),
            ]);
        }
        let Some(usage) = row.usage else {
            let mut cells: [String; 12] = Default::default();
            cells.fill("-".into());
            cells[0] = name.clone();
            cells[2] = "no system account".into();
            table.push(cells);
            continue;
        };
        table.push([
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
            usage.memory_high.map_or("infinity".into(), human_bytes),
            usage.tasks_max.map_or("infinity".into(), |t| t.to_string()),
            or_dash(usage.cpu_weight.map(|w| w.to_string())),
            or_dash(usage.io_weight.map(|w| w.to_string())),
        ]);
    }
    let mut text = view::table(&header, &table);
    if !disk_table.is_empty() {
        let header = [
            "NAME",
            "FILESYSTEM",
            "DISK USED",
            "SOFT",
            "LIMIT",
            "FILES",
            "FILE LIMIT",
        ];
        text.push_str("\n\n");
        text.push_str(&view::table(&header, &disk_table));
    }
    if let Some(node) = &node_gpus {
        let rows: Vec<[String; 4]> = node
            .iter()
            .map(|g| {
                [
                    format!("{} ({})", g.index, g.uuid),
                    or_dash(g.utilization_percent.map(|p| format!("{p}%"))),
                    match (g.memory_used_bytes, g.memory_total_bytes) {
                        (Some(used), Some(total)) => {
                            format!("{} / {}", human_bytes(used), human_bytes(total))
                        }
                        _ => "-".into(),
                    },
                    g.processes.len().to_string(),
                ]
            })
            .collect();
        text.push_str("\n\n");
        text.push_str(&view::table(
            &["GPU", "UTILISATION", "MEMORY", "PROCESSES"],
            &rows,
        ));
        if !gpu_table.is_empty() {
            text.push_str("\n\n");
            text.push_str(&view::table(
                &["NAME", "GPU", "PROCESSES", "GPU MEMORY", "BUSY", "PIDS"],
                &gpu_table,
            ));
        }
    }
    if !idle_table.is_empty() {
        text.push_str("\n\nGPUs granted but idle (no process of the user's on them):\n");
        text.push_str(&view::table(
            &["NAME", "GPU", "IDLE FOR", "LAST USED"],
            &idle_table,
        ));
    }
    if !event_table.is_empty() {
        text.push_str("\n\nLimits the kernel enforced (newest first):\n");
        text.push_str(&view::table(
            &[
                "NAME",
                "LAST SEEN",
                "WHAT",
                "COUNT",
                "LIMIT",
                "PROCESSES",
                "NODE",
            ],
            &event_table,
        ));
    }
    for error in disk_errors {
        eprintln!("slicectl: warning: cannot read the disk quota of {error}");
    }
    if let Some(why) = &gpu_unavailable {
        eprintln!(
            "slicectl: warning: GPU figures unavailable ({why}); the other figures are complete"
        );
    }
    view::print(ctx, &json!(document), &text);
    Ok(())
}

/// One limit event as a row of `usage`.
fn event_row(name: &str, event: &LimitEvent) -> [String; 7] {
    let what = match event.kind {
        EventKind::OomKill => "OOM kill".to_owned(),
        EventKind::MemoryHigh => "over MemoryHigh".to_owned(),
        EventKind::CpuThrottled => {
            format!("CPU throttled ({:.1} s)", event.throttled_usec as f64 / 1e6)
        }
    };
    [
        name.to_owned(),
        event.at.to_string(),
        what,
        event.count.to_string(),
        or_dash(event.limit.clone()),
        or_dash((!event.processes.is_empty()).then(|| event.processes.join(","))),
        event.node.clone(),
    ]
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
