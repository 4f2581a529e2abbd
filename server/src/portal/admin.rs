//! The admin's page: the node's figures and charts, and every user.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use libdiycloud::model::limits::LIMITS;
use libdiycloud::model::time::Timestamp;
use libdiycloud::usecases::admin::Admin;
use libdiycloud::usecases::history;
use maud::html;

use super::home::{charts, done_message, range_of, PageQuery};
use super::html::{bytes, facts, page, table, user_link};
use super::visitor::{error_page, AdminVisitor};
use crate::work::blocking;
use crate::AppState;

pub(super) async fn admin_page(
    State(state): State<Arc<AppState>>,
    AdminVisitor(visitor): AdminVisitor,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let (range, secs) = range_of(&query);
    let now = state.now();
    let work = Arc::clone(&state);
    let loaded = blocking(move || {
        let mut store = work.store()?;
        let from = Timestamp(now.0 - secs);
        let node = history::series(&store, &work.config, None, from, now)?;
        // The last hour's figures for the top users.
        let recent = history::series_of_all(&store, &work.config, Timestamp(now.0 - 3600), now)?;
        let admin = Admin::new(&mut store, &work.config, &work.ports, "portal", now);
        let users = admin.users()?;
        let (usage, gpus) = admin
            .usage_with_gpus(None)
            .unwrap_or_else(|_| (Vec::new(), None));
        Ok((node, recent, users, usage, gpus))
    })
    .await;
    let (node, recent, users, usage, gpus) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return error_page(Some(&visitor.viewer()), &e),
    };

    // The node at a glance.
    let memory_now = |name: &str| {
        usage
            .iter()
            .find(|u| u.username == name)
            .and_then(|u| u.usage.as_ref())
            .filter(|s| s.active_state == "active")
            .and_then(|s| s.memory_current)
    };
    let count = |state: &str| users.iter().filter(|u| u.state == state).count();
    let total_memory: u64 = users.iter().filter_map(|u| memory_now(&u.username)).sum();
    let running = users
        .iter()
        .filter(|u| memory_now(&u.username).is_some())
        .count();
    let node_facts = facts(&[
        ("Users", users.len().to_string()),
        (
            "Active / disabled / locked / expired",
            format!(
                "{} / {} / {} / {}",
                count("active"),
                count("disabled"),
                count("locked"),
                count("expired")
            ),
        ),
        ("Users with something running", running.to_string()),
        ("Memory held by users now", bytes(total_memory)),
    ]);
    // Top users over the last hour.
    let mut top: Vec<(String, f64, u64)> = recent
        .iter()
        .map(|(name, points)| {
            let cpu = mean(points.iter().filter_map(|p| p.cpu_cores));
            let memory = points
                .iter()
                .filter_map(|p| p.memory_bytes)
                .max()
                .unwrap_or(0);
            (name.clone(), cpu, memory)
        })
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.cmp(&a.2)));
    let gpus = gpus.filter(|g| !g.is_empty());
    let gpu_unavailable = usage.iter().find_map(|u| u.gpu_unavailable.as_deref());
    let idle: Vec<(&str, &libdiycloud::usecases::admin::IdleGpu)> = usage
        .iter()
        .flat_map(|u| u.idle_gpus.iter().map(move |g| (u.username.as_str(), g)))
        .collect();
    let elapsed = libdiycloud::model::time::format_elapsed;
    let or_unknown = |figure: Option<u64>| figure.map_or("unknown".into(), bytes);
    let mut columns = vec!["User", "Role", "State"];
    columns.extend(LIMITS.iter().filter(|l| l.listed).map(|l| l.label));
    columns.extend(["Memory now", "Last login"]);

    let top_users = html! {
        @for (name, cpu, memory) in top.iter().take(5) {
            tr {
                td { (user_link(name)) }
                td { (format!("{cpu:.2}")) }
                td { (bytes(*memory)) }
            }
        }
    };
    let gpu_rows = |gpus: &[libdiycloud::model::gpu::GpuUsage]| {
        html! {
            @for gpu in gpus {
                tr {
                    td { (gpu.index) }
                    td { (gpu.uuid) }
                    td { (gpu.utilization_percent.map_or("unknown".into(), |p| format!("{p}%"))) }
                    td {
                        (or_unknown(gpu.memory_used_bytes))
                        " of "
                        (or_unknown(gpu.memory_total_bytes))
                    }
                    td { (gpu.processes.len()) }
                }
            }
        }
    };
    let idle_rows = html! {
        @for (name, gpu) in &idle {
            tr {
                td { (user_link(name)) }
                td { (gpu.gpu) }
                td { (elapsed(gpu.idle_seconds)) }
                td { (gpu.last_used.as_deref().unwrap_or("never")) }
            }
        }
    };
    let user_rows = html! {
        @for user in &users {
            tr {
                td { (user_link(&user.username)) }
                td { (user.role) }
                td class={ "state " (user.state.replace(' ', "-")) } { (user.state) }
                @for (_, text) in user.allocation.limit_texts().filter(|(l, _)| l.listed) {
                    td { (text) }
                }
                td { (memory_now(&user.username).map_or("-".into(), bytes)) }
                td { (user.last_login.as_deref().unwrap_or("never")) }
            }
        }
    };

    let body = html! {
        h1 { "Users and node" }
        (done_message(query.done.as_deref()))
        section class="card" {
            h2 { "Node" }
            (node_facts)
            h3 { "Top users, last hour" }
            @if top.is_empty() {
                p { "No samples in the last hour." }
            } @else {
                (table(None, &["User", "CPU (mean cores)", "Memory (peak)"], top_users))
            }
            h3 { "GPUs" }
            @if let Some(gpus) = &gpus {
                (table(
                    None,
                    &["GPU", "UUID", "Busy", "Memory used", "Processes"],
                    gpu_rows(gpus),
                ))
            } @else if let Some(why) = gpu_unavailable {
                p { "GPU figures unavailable: " (why) ". The other figures are complete." }
            } @else {
                p { "No GPU figures on this node (no NVIDIA driver, or no GPUs)." }
            }
            @if !idle.is_empty() {
                h3 { "Granted but idle" }
                p {
                    "GPUs granted by name with no process of their user's for "
                    (elapsed(state.config.gpus.idle_after))
                    " or more: others could use them."
                }
                (table(None, &["User", "GPU", "Idle for", "Last used"], idle_rows))
            }
        }
        (charts("/portal/admin?range=", range, &node, now.0 - secs, now.0, None))

        // Every user.
        section class="card" {
            h2 { "Users" }
            p { a class="button" href="/portal/admin/new" { "New user" } }
            (table(Some("users"), &columns, user_rows))
        }
    };
    page(
        StatusCode::OK,
        "Users and node",
        Some(&visitor.viewer()),
        body,
    )
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / f64::from(n)
    }
}
