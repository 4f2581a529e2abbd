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

use super::home::{charts, done_message, range_of, PageQuery};
use super::html::{bytes, esc, facts, page, segment};
use super::visitor::{error_page, Visitor};
use crate::work::blocking;
use crate::AppState;

pub(super) async fn admin_page(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = visitor.not_admin() {
        return refused;
    }
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
    let mut body = format!(
        "<h1>Users and node</h1>{}",
        done_message(query.done.as_deref())
    );

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
    body.push_str("<section class=\"card\"><h2>Node</h2>");
    body.push_str(&facts(&[
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
    ]));
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
    body.push_str("<h3>Top users, last hour</h3>");
    if top.is_empty() {
        body.push_str("<p>No samples in the last hour.</p>");
    } else {
        body.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">CPU (mean cores)</th><th scope=\"col\">Memory (peak)</th></tr></thead><tbody>");
        for (name, cpu, memory) in top.iter().take(5) {
            body.push_str(&format!(
                "<tr><td><a href=\"/portal/admin/users/{}\">{}</a></td><td>{cpu:.2}</td><td>{}</td></tr>",
                segment(name),
                esc(name),
                bytes(*memory)
            ));
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("<h3>GPUs</h3>");
    match &gpus {
        Some(gpus) if !gpus.is_empty() => {
            body.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">GPU</th><th scope=\"col\">UUID</th><th scope=\"col\">Busy</th><th scope=\"col\">Memory used</th><th scope=\"col\">Processes</th></tr></thead><tbody>");
            for gpu in gpus {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td>{}</td></tr>",
                    gpu.index,
                    esc(&gpu.uuid),
                    gpu.utilization_percent
                        .map_or("unknown".into(), |p| format!("{p}%")),
                    gpu.memory_used_bytes.map_or("unknown".into(), bytes),
                    gpu.memory_total_bytes.map_or("unknown".into(), bytes),
                    gpu.processes.len()
                ));
            }
            body.push_str("</tbody></table></div>");
        }
        _ => match usage.iter().find_map(|u| u.gpu_unavailable.as_deref()) {
            Some(why) => body.push_str(&format!(
                "<p>GPU figures unavailable: {}. The other figures are complete.</p>",
                esc(why)
            )),
            None => {
                body.push_str("<p>No GPU figures on this node (no NVIDIA driver, or no GPUs).</p>")
            }
        },
    }
    let idle: Vec<(&str, &libdiycloud::usecases::admin::IdleGpu)> = usage
        .iter()
        .flat_map(|u| u.idle_gpus.iter().map(move |g| (u.username.as_str(), g)))
        .collect();
    if !idle.is_empty() {
        body.push_str(&format!(
            "<h3>Granted but idle</h3><p>GPUs granted by name with no process of their user's for {} or more: others could use them.</p>\
             <div class=\"scroll\"><table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">GPU</th><th scope=\"col\">Idle for</th><th scope=\"col\">Last used</th></tr></thead><tbody>",
            esc(&libdiycloud::model::time::format_elapsed(state.config.gpus.idle_after))
        ));
        for (name, gpu) in idle {
            body.push_str(&format!(
                "<tr><td><a href=\"/portal/admin/users/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(name),
                esc(&gpu.gpu),
                esc(&libdiycloud::model::time::format_elapsed(gpu.idle_seconds)),
                esc(gpu.last_used.as_deref().unwrap_or("never"))
            ));
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");
    body.push_str(&charts(
        "/portal/admin?range=",
        range,
        &node,
        now.0 - secs,
        now.0,
        None,
    ));

    // Every user.
    body.push_str("<section class=\"card\"><h2>Users</h2><p><a class=\"button\" href=\"/portal/admin/new\">New user</a></p><div class=\"scroll\"><table class=\"users\"><thead><tr>");
    let mut columns = vec!["User", "Role", "State"];
    columns.extend(LIMITS.iter().filter(|l| l.listed).map(|l| l.label));
    columns.extend(["Memory now", "Last login"]);
    for column in columns {
        body.push_str(&format!("<th scope=\"col\">{}</th>", esc(column)));
    }
    body.push_str("</tr></thead><tbody>");
    for user in &users {
        body.push_str(&format!(
            "<tr><td><a href=\"/portal/admin/users/{}\">{}</a></td><td>{}</td><td class=\"state {}\">{}</td>",
            segment(&user.username),
            esc(&user.username),
            user.role,
            esc(&user.state.replace(' ', "-")),
            esc(&user.state),
        ));
        for (_, text) in user
            .allocation
            .limit_texts()
            .filter(|(limit, _)| limit.listed)
        {
            body.push_str(&format!("<td>{}</td>", esc(&text)));
        }
        body.push_str(&format!(
            "<td>{}</td><td>{}</td></tr>",
            memory_now(&user.username).map_or("-".into(), bytes),
            esc(user.last_login.as_deref().unwrap_or("never")),
        ));
    }
    body.push_str("</tbody></table></div></section>");
    page(
        StatusCode::OK,
        "Users and node",
        Some(&visitor.viewer()),
        &body,
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
