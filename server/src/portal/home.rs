//! A user's own page: their allocation, what they use now, their history and
//! limit events, and their password.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use libdiycloud::model::history::Point;
use libdiycloud::model::limits::{Cpu, Size, Tasks};
use libdiycloud::model::time::Timestamp;
use libdiycloud::model::user::User;
use libdiycloud::usecases::admin::{Admin, UserView};
use libdiycloud::usecases::auth::PasswordChange;
use libdiycloud::usecases::history;
use maud::{html, Markup};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::chart::Chart;
use super::html::{bytes, csrf_field, facts, input, notice, page, table};
use super::visitor::{error_page, CheckedForm, FormToken, Visitor};
use crate::error::ApiError;
use crate::session::change_own_password;
use crate::work::blocking;
use crate::AppState;

#[derive(Deserialize, Default)]
pub(super) struct PageQuery {
    pub(super) range: Option<String>,
    pub(super) done: Option<String>,
}

/// The chart ranges: (query value, label, seconds).
const RANGES: [(&str, &str, i64); 3] = [
    ("hour", "Last hour", 3600),
    ("day", "Last day", 86_400),
    ("week", "Last week", 7 * 86_400),
];

pub(super) fn range_of(query: &PageQuery) -> (&'static str, i64) {
    let wanted = query.range.as_deref().unwrap_or("hour");
    RANGES
        .iter()
        .find(|(key, _, _)| *key == wanted)
        .map_or(("hour", 3600), |(key, _, secs)| (*key, *secs))
}

/// The messages a redirect after a change may ask for (`?done=`): fixed
/// texts, so a link cannot put words on the page.
pub(super) fn done_message(done: Option<&str>) -> Markup {
    let text = match done {
        Some("password") => "Your password was changed. Log in again on your other devices.",
        Some("created") => "The user was created and their allocation applied.",
        Some("saved") => "Saved; the limits in force are the saved ones.",
        Some("disabled") => "The account is disabled; their sessions ended.",
        Some("enabled") => "The account is enabled.",
        Some("unlocked") => "The account is unlocked.",
        Some("applied") => "The allocation was applied again.",
        Some("deleted") => "The user was deleted.",
        _ => return html! {},
    };
    notice("ok", text)
}

pub(super) async fn home(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let (range, secs) = range_of(&query);
    let name = visitor.user.username.to_string();
    let work = Arc::clone(&state);
    let now = state.now();
    let loaded = blocking(move || {
        let mut store = work.store()?;
        let points = history::series(
            &store,
            &work.config,
            Some(&name),
            Timestamp(now.0 - secs),
            now,
        )?;
        let admin = Admin::new(&mut store, &work.config, &work.ports, "portal", now);
        let usage = admin
            .usage(Some(&name))
            .ok()
            .and_then(|u| u.into_iter().next());
        Ok((points, usage))
    })
    .await;
    let (points, usage) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return error_page(Some(&visitor.viewer()), &e),
    };
    let view = UserView::of(&visitor.user, &state.config, now);
    let body = html! {
        h1 { (view.full_name.as_deref().unwrap_or(&view.username)) }
        (done_message(query.done.as_deref()))
        section class="card" {
            h2 { "Your allocation" }
            (allocation_facts(&view))
        }
        section class="card" {
            h2 { "Using now" }
            (usage_now(usage.as_ref()))
        }
        (limit_events(usage.as_ref()))
        (charts("/portal/?range=", range, &points, now.0 - secs, now.0, Some(&visitor.user)))
        section class="card narrow" {
            h2 { "Change your password" }
            form method="post" action="/portal/password" {
                (csrf_field(&visitor.csrf))
                (input("current_password", "Current password", "password", "")
                    .autocomplete("current-password")
                    .required())
                (input("new_password", "New password", "password", "")
                    .autocomplete("new-password")
                    .required())
                (input("confirm_password", "New password again", "password", "")
                    .autocomplete("new-password")
                    .required())
                button type="submit" { "Change password" }
            }
        }
    };
    page(StatusCode::OK, "My account", Some(&visitor.viewer()), body)
}

fn allocation_facts(view: &UserView) -> Markup {
    let mut rows = vec![
        ("User", view.username.clone()),
        ("Role", view.role.to_string()),
        ("State", view.state.clone()),
    ];
    let a = &view.allocation;
    for (limit, text) in a.limit_texts() {
        // The page's own words where a bare value would not tell a user
        // what it means for them.
        match limit.key {
            "memory_high" => rows.push((
                "Memory, soft limit",
                match text.as_str() {
                    "infinity" => "none".to_owned(),
                    high => format!("{high} (above it you are slowed down, not stopped)"),
                },
            )),
            "cpu_weight" => rows.push((
                "Share when busy",
                format!(
                    "CPU weight {}, IO weight {} (100 is the usual)",
                    a.cpu_weight, a.io_weight
                ),
            )),
            "io_weight" => {}
            _ => rows.push((limit.label, text)),
        }
    }
    rows.extend([
        (
            "Expires",
            view.expires.clone().unwrap_or_else(|| "never".into()),
        ),
        (
            "Last login",
            view.last_login.clone().unwrap_or_else(|| "never".into()),
        ),
    ]);
    facts(&rows)
}

pub(super) fn usage_now(usage: Option<&libdiycloud::usecases::admin::UserUsage>) -> Markup {
    let Some(slice) = usage.and_then(|u| u.usage.as_ref()) else {
        return html! {
            p { "No figures: there is no system account, or the node's systemd cannot be reached." }
        };
    };
    if slice.active_state != "active" {
        return html! { p { "Nothing running: you have no session or process on this node." } };
    }
    let disk: u64 = usage
        .map(|u| {
            u.disk
                .iter()
                .filter_map(|d| d.quota.as_ref().ok().map(|q| q.used_bytes))
                .sum()
        })
        .unwrap_or(0);
    facts(&[
        (
            "CPU time",
            slice
                .cpu_usage_nsec
                .map_or("unknown".into(), |n| format!("{:.1} s", n as f64 / 1e9)),
        ),
        (
            "Memory",
            slice.memory_current.map_or("unknown".into(), bytes),
        ),
        (
            "Tasks",
            slice
                .tasks_current
                .map_or("unknown".into(), |t| t.to_string()),
        ),
        ("Disk", bytes(disk)),
        (
            "GPUs",
            match usage.and_then(|u| u.gpu_unavailable.as_deref()) {
                Some(why) => format!("figures unavailable ({why})"),
                None => gpus_in_use(usage.map(|u| u.gpus.as_slice()).unwrap_or_default()),
            },
        ),
    ])
}

/// A user's GPUs in use, one phrase per GPU.
fn gpus_in_use(gpus: &[libdiycloud::model::gpu::UserGpu]) -> String {
    if gpus.is_empty() {
        return "none in use".into();
    }
    gpus.iter()
        .map(|g| {
            let busy = g
                .utilization_percent
                .map_or(String::new(), |p| format!(", {p}% busy"));
            let processes = match g.processes {
                1 => "1 process".to_owned(),
                n => format!("{n} processes"),
            };
            format!(
                "GPU {}: {processes}, {}{busy}",
                g.index,
                bytes(g.memory_bytes)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The card of a user's latest limit events; none where there are none.
pub(super) fn limit_events(usage: Option<&libdiycloud::usecases::admin::UserUsage>) -> Markup {
    use libdiycloud::model::events::EventKind;
    let events = usage.map(|u| u.events.as_slice()).unwrap_or_default();
    if events.is_empty() {
        return html! {};
    }
    let what = |event: &libdiycloud::model::events::LimitEvent| match event.kind {
        EventKind::OomKill => "Stopped for memory over the limit".to_owned(),
        EventKind::MemoryHigh => "Slowed down over the soft memory limit".to_owned(),
        EventKind::CpuThrottled => format!(
            "Held to the CPU quota, waited {:.1} s",
            event.throttled_usec as f64 / 1e6
        ),
    };
    let columns = ["Last seen", "What", "Times", "Limit", "Processes", "Node"];
    let rows = html! {
        @for event in events {
            tr {
                td { (event.at) }
                td { (what(event)) }
                td { (event.count) }
                td { (event.limit.as_deref().unwrap_or("-")) }
                td { (event.processes.join(", ")) }
                td { (event.node) }
            }
        }
    };
    html! {
        section class="card" {
            h2 { "Limits enforced" }
            p { "When the kernel held processes to the allocation, newest first." }
            (table(None, &columns, rows))
        }
    }
}

/// The charts of one user's (`limits_of`) or the node's history, with
/// the range links.
pub(super) fn charts(
    link: &str,
    range: &str,
    points: &[Point],
    from: i64,
    to: i64,
    limits_of: Option<&User>,
) -> Markup {
    let allocation = limits_of.map(|u| &u.allocation);
    let series = |f: fn(&Point) -> Option<f64>| -> Vec<(i64, Option<f64>)> {
        points.iter().map(|p| (p.at.0, f(p))).collect()
    };
    let cores = |v: f64| format!("{v:.2}");
    let size = |v: f64| bytes(v as u64);
    let count = |v: f64| format!("{v:.0}");
    let mut shown = vec![
        Chart {
            title: "CPU (cores busy)",
            values: series(|p| p.cpu_cores),
            from,
            to,
            limit: allocation.and_then(|a| match a.cpu {
                Cpu::Percent(p) => Some(f64::from(p) / 100.0),
                Cpu::Infinity => None,
            }),
            label: &cores,
        },
        Chart {
            title: "Memory",
            values: series(|p| p.memory_bytes.map(|v| v as f64)),
            from,
            to,
            limit: allocation.and_then(|a| size_limit(a.memory)),
            label: &size,
        },
        Chart {
            title: "Tasks",
            values: series(|p| p.tasks.map(|v| v as f64)),
            from,
            to,
            limit: allocation.and_then(|a| match a.tasks {
                Tasks::Count(n) => Some(f64::from(n)),
                Tasks::Infinity => None,
            }),
            label: &count,
        },
    ];
    if points.iter().any(|p| p.disk_bytes.is_some()) {
        shown.push(Chart {
            title: "Disk",
            values: series(|p| p.disk_bytes.map(|v| v as f64)),
            from,
            to,
            limit: allocation.and_then(|a| size_limit(a.disk)),
            label: &size,
        });
    }
    if points.iter().any(|p| p.gpu_memory_bytes.is_some()) {
        shown.push(Chart {
            title: "GPU memory",
            values: series(|p| p.gpu_memory_bytes.map(|v| v as f64)),
            from,
            to,
            limit: None,
            label: &size,
        });
    }
    html! {
        section class="card" {
            h2 { "History" }
            p class="ranges" {
                @for (key, label, _) in RANGES {
                    @if key == range {
                        strong aria-current="page" { (label) }
                    } @else {
                        a href={ (link) (key) } { (label) }
                    }
                }
            }
            div class="charts" {
                @for chart in &shown {
                    (chart)
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    csrf: String,
    current_password: String,
    new_password: String,
    confirm_password: String,
}

impl FormToken for PasswordForm {
    fn token(&self) -> &str {
        &self.csrf
    }

    fn unreadable(visitor: &Visitor) -> Response {
        error_page(
            Some(&visitor.viewer()),
            &ApiError::bad_request("the form was incomplete"),
        )
    }
}

pub(super) async fn change_password(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    CheckedForm(form): CheckedForm<PasswordForm>,
) -> Response {
    let (old, new, again) = (
        Zeroizing::new(form.current_password),
        Zeroizing::new(form.new_password),
        Zeroizing::new(form.confirm_password),
    );
    let back = |status, text: &str| {
        page(
            status,
            "Change password",
            Some(&visitor.viewer()),
            html! {
                h1 { "Change your password" }
                (notice("error", text))
                p { a href="/portal/" { "Back to your account" } }
            },
        )
    };
    if *new != *again {
        return back(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The two new passwords differ: nothing was changed.",
        );
    }
    let name = visitor.user.username.to_string();
    match change_own_password(&state, name, visitor.actor(), old, new).await {
        // Every session ended, this one too: log in with the new password.
        Ok(PasswordChange::Changed) => Redirect::to("/portal/login").into_response(),
        Ok(PasswordChange::Denied(_)) => back(
            StatusCode::FORBIDDEN,
            "The current password is wrong: nothing was changed (wrong passwords count toward the lockout).",
        ),
        Ok(PasswordChange::Refused(violation)) => back(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("The new password is refused: {violation}."),
        ),
        Err(e) => error_page(Some(&visitor.viewer()), &e),
    }
}

/// A size limit as a chart's line: none where it is infinity.
fn size_limit(size: Size) -> Option<f64> {
    match size {
        Size::Bytes(b) => Some(b as f64),
        Size::Infinity => None,
    }
}
