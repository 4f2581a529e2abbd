//! The web portal under `/portal/`: pages rendered on the server, over the
//! same use cases as the REST API (`auth` for logins and passwords, `admin`
//! for users, `history` for the charts), with the same session cookie.
//!
//! - No script: forms post and the server answers with a redirect (after a
//!   change) or the page again (with what was wrong). Keyboard use is the
//!   browser's own; the layout folds to one column at phone width.
//! - CSRF: the session cookie is `SameSite=Strict` (and `__Host-` over
//!   HTTPS), every POST from another site is refused before it reaches a
//!   page (`Origin`/`Sec-Fetch-Site`, the login form's too: see
//!   `routes::same_site_only`), and every form carries a token derived from
//!   the session ([`libdiycloud::usecases::auth::form_token`]), checked before anything
//!   changes.
//! - What a change did is what the use case reported: where applying the
//!   allocation failed, or there was nothing to apply, the page says so
//!   and what to run, never "applied".
//! - A login names the reason of a refusal only to whoever gave the right
//!   password (locked, disabled); anyone else reads "wrong username or
//!   password".

mod chart;
mod html;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use libdiycloud::model::history::Point;
use libdiycloud::model::limits::{
    Allocation, Cpu, Limit, LimitChanges, Scalar, Size, Tasks, LIMITS,
};
use libdiycloud::model::time::Timestamp;
use libdiycloud::model::user::{Role, User};
use libdiycloud::model::Username;
use libdiycloud::usecases::admin::{AddUser, Admin, SystemAccount, UserChanges, UserView};
use libdiycloud::usecases::auth::{self, LoginOutcome, PasswordChange, Refusal};
use libdiycloud::usecases::history;
use serde::Deserialize;
use zeroize::Zeroizing;

use self::chart::Chart;
use self::html::{bytes, csrf_field, esc, facts, input, notice, page, segment, Viewer};
use crate::client::{token, Client};
use crate::error::ApiError;
use crate::routes::{
    as_admin, blocking, change_own_password, clear_session_cookie, end_session, hashing,
    open_session, set_session_cookie, settle, Route,
};
use crate::AppState;

const STYLE: &str = include_str!("style.css");

/// The portal's routes (the router is made in `routes`).
pub(crate) fn routes() -> Vec<Route> {
    use crate::routes::at;
    vec![
        at(Method::GET, "/portal", || async {
            Redirect::permanent("/portal/")
        }),
        at(Method::GET, "/portal/", home),
        at(Method::GET, "/portal/style.css", style),
        at(Method::GET, "/portal/login", login_page),
        at(Method::POST, "/portal/login", login),
        at(Method::POST, "/portal/logout", logout),
        at(Method::POST, "/portal/password", change_password),
        at(Method::GET, "/portal/admin", admin_page),
        at(Method::GET, "/portal/admin/new", new_user_page),
        at(Method::POST, "/portal/admin/new", create_user),
        at(Method::GET, "/portal/admin/users/{name}", user_page),
        at(Method::POST, "/portal/admin/users/{name}", save_user),
        at(
            Method::POST,
            "/portal/admin/users/{name}/state",
            change_state,
        ),
        at(
            Method::GET,
            "/portal/admin/users/{name}/delete",
            delete_page,
        ),
        at(
            Method::POST,
            "/portal/admin/users/{name}/delete",
            delete_user,
        ),
    ]
}

/// The page for a form sent from another site (see
/// `routes::same_site_only`): nothing was done.
pub(crate) fn cross_site_page() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Refused",
        None,
        &format!(
            "<h1>Refused</h1>{}<p><a href=\"/portal/\">Go to the portal</a></p>",
            notice(
                "error",
                "Cross-site request refused: the form was sent from another site, or from another address of this one. Nothing was done. Open the portal at its own address and use its pages."
            )
        ),
    )
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        STYLE,
    )
        .into_response()
}

// ------------------------------------------------------------ who is asking

/// A logged-in visitor; anyone else is sent to the login page.
struct Visitor {
    user: User,
    /// The session token (from the cookie), and the form token derived from it.
    token: String,
    csrf: String,
}

impl Visitor {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: self.user.username.as_str(),
            admin: self.user.role == Role::Admin,
            csrf: &self.csrf,
        }
    }

    fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// For the audit log: `portal:NAME`.
    fn actor(&self) -> String {
        format!("portal:{}", self.user.username)
    }

    /// A refusal unless the form's token is this session's.
    fn wrong_form_token(&self, sent: &str) -> Option<Response> {
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            self.csrf.as_bytes(),
        )) {
            None
        } else {
            Some(page(
                StatusCode::FORBIDDEN,
                "Form expired",
                Some(&self.viewer()),
                &format!(
                    "<h1>This form has expired</h1>{}",
                    notice(
                        "error",
                        "The form did not come from this session (it is older than your login, or from another site). Nothing was changed: go back, reload the page and try again."
                    )
                ),
            ))
        }
    }

    /// A posted form, read and its token checked; else the page that
    /// refuses it.
    fn checked_form<F: FormToken>(
        &self,
        form: Result<Form<F>, FormRejection>,
    ) -> Result<F, Box<Response>> {
        let Ok(Form(form)) = form else {
            return Err(Box::new(unreadable(self)));
        };
        match self.wrong_form_token(form.token()) {
            Some(refused) => Err(Box::new(refused)),
            None => Ok(form),
        }
    }

    /// A 403 page unless an admin.
    fn not_admin(&self) -> Option<Response> {
        if self.is_admin() {
            None
        } else {
            Some(page(
                StatusCode::FORBIDDEN,
                "Admins only",
                Some(&self.viewer()),
                &format!(
                    "<h1>Admins only</h1>{}<p><a href=\"/portal/\">Back to your account</a></p>",
                    notice("error", "This page needs the admin role.")
                ),
            ))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/portal/login").into_response();
        let https = match Client::from_request_parts(parts, state).await {
            Ok(client) => client.https,
            Err(never) => match never {},
        };
        let token = token(&parts.headers, https).ok_or_else(to_login)?;
        let state = Arc::clone(state);
        let looked_up = token.clone();
        let user = blocking(move || {
            let store = state.store()?;
            Ok(auth::session_user(
                &store,
                &state.config.lockout,
                &looked_up,
                state.now(),
            )?)
        })
        .await
        .map_err(IntoResponse::into_response)?
        .ok_or_else(to_login)?;
        Ok(Visitor {
            user,
            csrf: auth::form_token(&token),
            token,
        })
    }
}

/// A form that carries the session's form token.
trait FormToken {
    fn token(&self) -> &str;
}

/// The page for a form (or an address) the server could not read.
fn unreadable(visitor: &Visitor) -> Response {
    error_page(
        Some(&visitor.viewer()),
        &ApiError::bad_request("the form could not be read"),
    )
}

/// An error of a use case as a page.
fn error_page(viewer: Option<&Viewer<'_>>, error: &ApiError) -> Response {
    page(
        error.status,
        "Error",
        viewer,
        &format!(
            "<h1>That did not work</h1>{}<p><a href=\"/portal/\">Back to your account</a></p>",
            notice("error", &error.detail)
        ),
    )
}

// ------------------------------------------------------------ applied or not

/// A change through the portal that applies the allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Saved,
    Applied,
}

/// The answer to a change, from what applying the allocation reported,
/// as `slicectl` and the API report it:
/// - every step done: back to the user's page with the fixed message;
/// - a step failed: a page with what failed and what to run, 500 (the
///   change is kept, as the CLI keeps it, but the limits in force are not
///   the saved ones);
/// - nothing to apply (no system account): a page that says so (409 when
///   applying was all that was asked, as `slicectl apply NAME` fails).
fn after_apply(
    viewer: &Viewer<'_>,
    name: &str,
    change: Change,
    report: Option<&libdiycloud::usecases::apply::ApplyReport>,
) -> Response {
    let link = format!("/portal/admin/users/{}", segment(name));
    let failed = report.and_then(|r| r.error());
    let skipped = report.and_then(|r| r.skipped());
    let (status, notices) = match (failed, skipped, change) {
        (Some(error), _, _) => {
            let what = match change {
                Change::Created => "The user was created, but applying their allocation failed",
                Change::Saved => "The change was saved, but applying it failed",
                Change::Applied => "Applying the allocation failed",
            };
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                notice(
                    "error",
                    &format!(
                        "{what}: {error}. The limits in force are not the ones saved. Once the cause is fixed, use \"Apply the allocation again\" on the user's page, or run `slicectl apply {name}` as root (`slicectl doctor` checks the node)."
                    ),
                ),
            )
        }
        (None, Some(reason), Change::Applied) => (
            StatusCode::CONFLICT,
            notice(
                "error",
                &format!("Nothing was applied: {reason}, so there is nothing to apply on this node."),
            ),
        ),
        (None, Some(reason), _) => (
            StatusCode::OK,
            format!(
                "{}{}",
                notice(
                    "ok",
                    if change == Change::Created {
                        "The user was created."
                    } else {
                        "Saved."
                    }
                ),
                notice(
                    "error",
                    &format!("Nothing was applied: {reason}. The limits are applied when the user logs in on a node where they have a Linux account."),
                )
            ),
        ),
        (None, None, _) => {
            let done = match change {
                Change::Created => "created",
                Change::Saved => "saved",
                Change::Applied => "applied",
            };
            return Redirect::to(&format!("{link}?done={done}")).into_response();
        }
    };
    page(
        status,
        name,
        Some(viewer),
        &format!(
            "<h1>{}</h1>{notices}<p><a href=\"{}\">Back to the user's page</a></p>",
            esc(name),
            esc(&link)
        ),
    )
}

// ------------------------------------------------------------ login

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

fn login_form(status: StatusCode, message: Option<&str>, username: &str) -> Response {
    let message = message.map(|m| notice("error", m)).unwrap_or_default();
    page(
        status,
        "Log in",
        None,
        &format!(
            "<h1>Log in</h1>{message}<form class=\"card narrow\" method=\"post\" action=\"/portal/login\">{}{}<button type=\"submit\">Log in</button></form>",
            input("username", "Username", "text", username, "autocomplete=\"username\" required autofocus"),
            input("password", "Password", "password", "", "autocomplete=\"current-password\" required"),
        ),
    )
}

async fn login_page() -> Response {
    login_form(StatusCode::OK, None, "")
}

async fn login(
    State(state): State<Arc<AppState>>,
    client: Client,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_form(
            StatusCode::BAD_REQUEST,
            Some("Fill in the username and the password."),
            "",
        );
    };
    let now = state.now();
    let attempt = match state.limiter.attempt(client.ip) {
        Ok(attempt) => attempt,
        Err(wait) => return too_many_logins(wait, &form.username),
    };
    let password = Zeroizing::new(form.password);
    let name = form.username;
    let ttl = state.config.api.session_ttl;
    let opened = open_session(&state, client, "portal", name.clone(), password, now).await;
    settle(attempt, &opened);
    match opened {
        Ok(Ok(session)) => {
            let mut response = Redirect::to("/portal/").into_response();
            set_session_cookie(&mut response, &session.token, ttl, client.https);
            response
        }
        Ok(Err(refusal)) => login_form(
            StatusCode::UNAUTHORIZED,
            Some(&refusal_message(&refusal, state.config.lockout.unlock_time)),
            &name,
        ),
        Err(e) => match e.retry_after {
            // The queue of password checks is full (503).
            Some(wait) if e.status == StatusCode::SERVICE_UNAVAILABLE => with_retry_after(
                login_form(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(&format!(
                        "The server is busy checking other logins: try again in {wait} seconds."
                    )),
                    &name,
                ),
                wait,
            ),
            _ => login_form(
                e.status,
                Some("The server could not check the login now: try again later."),
                &name,
            ),
        },
    }
}

/// The login page's 429: too many failed logins from this address.
fn too_many_logins(wait: u64, username: &str) -> Response {
    with_retry_after(
        login_form(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed logins from your address: try again in {wait} seconds."
            )),
            username,
        ),
        wait,
    )
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// What the login page says. The reason only to the right password.
fn refusal_message(refusal: &Refusal, unlock_secs: u64) -> String {
    match (&refusal.outcome, refusal.password_matched) {
        (LoginOutcome::Locked, true) if unlock_secs > 0 => format!(
            "This account is locked after too many wrong passwords. It unlocks by itself {} after the lock, or an admin can unlock it now.",
            duration(unlock_secs)
        ),
        (LoginOutcome::Locked, true) => {
            "This account is locked after too many wrong passwords: an admin must unlock it.".into()
        }
        (LoginOutcome::Inactive, true) => {
            "This account is disabled or has expired: ask an admin.".into()
        }
        _ => "Wrong username or password.".into(),
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<Arc<AppState>>,
    client: Client,
    visitor: Visitor,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let sent = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Some(refused) = visitor.wrong_form_token(&sent) {
        return refused;
    }
    let actor = visitor.actor();
    let _ = end_session(state, visitor.token, actor).await;
    let mut response = Redirect::to("/portal/login").into_response();
    clear_session_cookie(&mut response, client.https);
    response
}

// ------------------------------------------------------------ my account

#[derive(Deserialize, Default)]
struct PageQuery {
    range: Option<String>,
    done: Option<String>,
}

/// The chart ranges: (query value, label, seconds).
const RANGES: [(&str, &str, i64); 3] = [
    ("hour", "Last hour", 3600),
    ("day", "Last day", 86_400),
    ("week", "Last week", 7 * 86_400),
];

fn range_of(query: &PageQuery) -> (&'static str, i64) {
    let wanted = query.range.as_deref().unwrap_or("hour");
    RANGES
        .iter()
        .find(|(key, _, _)| *key == wanted)
        .map_or(("hour", 3600), |(key, _, secs)| (*key, *secs))
}

/// The messages a redirect after a change may ask for (`?done=`): fixed
/// texts, so a link cannot put words on the page.
fn done_message(done: Option<&str>) -> String {
    let text = match done {
        Some("password") => "Your password was changed. Log in again on your other devices.",
        Some("created") => "The user was created and their allocation applied.",
        Some("saved") => "Saved; the limits in force are the saved ones.",
        Some("disabled") => "The account is disabled; their sessions ended.",
        Some("enabled") => "The account is enabled.",
        Some("unlocked") => "The account is unlocked.",
        Some("applied") => "The allocation was applied again.",
        Some("deleted") => "The user was deleted.",
        _ => return String::new(),
    };
    notice("ok", text)
}

async fn home(
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
    let mut body = format!(
        "<h1>{}</h1>{}",
        esc(view.full_name.as_deref().unwrap_or(&view.username)),
        done_message(query.done.as_deref())
    );
    body.push_str("<section class=\"card\"><h2>Your allocation</h2>");
    body.push_str(&allocation_facts(&view));
    body.push_str("</section><section class=\"card\"><h2>Using now</h2>");
    body.push_str(&usage_now(usage.as_ref()));
    body.push_str("</section>");
    body.push_str(&limit_events(usage.as_ref()));
    body.push_str(&charts(
        "/portal/?range=",
        range,
        &points,
        now.0 - secs,
        now.0,
        Some(&visitor.user),
    ));
    body.push_str(&format!(
        "<section class=\"card narrow\"><h2>Change your password</h2>\
         <form method=\"post\" action=\"/portal/password\">{}{}{}{}<button type=\"submit\">Change password</button></form></section>",
        csrf_field(&visitor.csrf),
        input("current_password", "Current password", "password", "", "autocomplete=\"current-password\" required"),
        input("new_password", "New password", "password", "", "autocomplete=\"new-password\" required"),
        input("confirm_password", "New password again", "password", "", "autocomplete=\"new-password\" required"),
    ));
    page(StatusCode::OK, "My account", Some(&visitor.viewer()), &body)
}

fn allocation_facts(view: &UserView) -> String {
    let mut rows = vec![
        ("User", view.username.clone()),
        ("Role", view.role.to_string()),
        ("State", view.state.clone()),
    ];
    let a = &view.allocation;
    for (limit, text) in limit_texts(a) {
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

fn usage_now(usage: Option<&libdiycloud::usecases::admin::UserUsage>) -> String {
    let Some(slice) = usage.and_then(|u| u.usage.as_ref()) else {
        return "<p>No figures: there is no system account, or the node's systemd cannot be reached.</p>".into();
    };
    if slice.active_state != "active" {
        return "<p>Nothing running: you have no session or process on this node.</p>".into();
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
fn limit_events(usage: Option<&libdiycloud::usecases::admin::UserUsage>) -> String {
    use libdiycloud::model::events::EventKind;
    let events = usage.map(|u| u.events.as_slice()).unwrap_or_default();
    if events.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section class=\"card\"><h2>Limits enforced</h2>\
         <p>When the kernel held processes to the allocation, newest first.</p>\
         <div class=\"scroll\"><table><thead><tr><th scope=\"col\">Last seen</th>\
         <th scope=\"col\">What</th><th scope=\"col\">Times</th><th scope=\"col\">Limit</th>\
         <th scope=\"col\">Processes</th><th scope=\"col\">Node</th></tr></thead><tbody>",
    );
    for event in events {
        let what = match event.kind {
            EventKind::OomKill => "Stopped for memory over the limit".to_owned(),
            EventKind::MemoryHigh => "Slowed down over the soft memory limit".to_owned(),
            EventKind::CpuThrottled => format!(
                "Held to the CPU quota, waited {:.1} s",
                event.throttled_usec as f64 / 1e6
            ),
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&event.at.to_string()),
            esc(&what),
            event.count,
            esc(event.limit.as_deref().unwrap_or("-")),
            esc(&event.processes.join(", ")),
            esc(&event.node)
        ));
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// The charts of one user's (`limits_of`) or the node's history, with
/// the range links.
fn charts(
    link: &str,
    range: &str,
    points: &[Point],
    from: i64,
    to: i64,
    limits_of: Option<&User>,
) -> String {
    let mut out = String::from("<section class=\"card\"><h2>History</h2><p class=\"ranges\">");
    for (key, label, _) in RANGES {
        if key == range {
            out.push_str(&format!("<strong aria-current=\"page\">{label}</strong>"));
        } else {
            out.push_str(&format!("<a href=\"{}{key}\">{label}</a>", esc(link)));
        }
    }
    out.push_str("</p><div class=\"charts\">");
    let allocation = limits_of.map(|u| &u.allocation);
    let series = |f: fn(&Point) -> Option<f64>| -> Vec<(i64, Option<f64>)> {
        points.iter().map(|p| (p.at.0, f(p))).collect()
    };
    let cores = |v: f64| format!("{v:.2}");
    let size = |v: f64| bytes(v as u64);
    let count = |v: f64| format!("{v:.0}");
    out.push_str(
        &Chart {
            title: "CPU (cores busy)",
            values: series(|p| p.cpu_cores),
            from,
            to,
            limit: allocation.and_then(|a| match a.cpu {
                Cpu::Percent(p) => Some(f64::from(p) / 100.0),
                Cpu::Infinity => None,
            }),
            label: &cores,
        }
        .svg(),
    );
    out.push_str(
        &Chart {
            title: "Memory",
            values: series(|p| p.memory_bytes.map(|v| v as f64)),
            from,
            to,
            limit: allocation.and_then(|a| match a.memory {
                Size::Bytes(b) => Some(b as f64),
                Size::Infinity => None,
            }),
            label: &size,
        }
        .svg(),
    );
    out.push_str(
        &Chart {
            title: "Tasks",
            values: series(|p| p.tasks.map(|v| v as f64)),
            from,
            to,
            limit: allocation.and_then(|a| match a.tasks {
                Tasks::Count(n) => Some(f64::from(n)),
                Tasks::Infinity => None,
            }),
            label: &count,
        }
        .svg(),
    );
    if points.iter().any(|p| p.disk_bytes.is_some()) {
        out.push_str(
            &Chart {
                title: "Disk",
                values: series(|p| p.disk_bytes.map(|v| v as f64)),
                from,
                to,
                limit: allocation.and_then(|a| match a.disk {
                    Size::Bytes(b) => Some(b as f64),
                    Size::Infinity => None,
                }),
                label: &size,
            }
            .svg(),
        );
    }
    if points.iter().any(|p| p.gpu_memory_bytes.is_some()) {
        out.push_str(
            &Chart {
                title: "GPU memory",
                values: series(|p| p.gpu_memory_bytes.map(|v| v as f64)),
                from,
                to,
                limit: None,
                label: &size,
            }
            .svg(),
        );
    }
    out.push_str("</div></section>");
    out
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    current_password: String,
    new_password: String,
    confirm_password: String,
}

async fn change_password(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(
            Some(&visitor.viewer()),
            &ApiError::bad_request("the form was incomplete"),
        );
    };
    if let Some(refused) = visitor.wrong_form_token(&form.csrf) {
        return refused;
    }
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
            &format!(
                "<h1>Change your password</h1>{}<p><a href=\"/portal/\">Back to your account</a></p>",
                notice("error", text)
            ),
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

// ------------------------------------------------------------ admin

async fn admin_page(
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
        for (_, text) in limit_texts(&user.allocation).filter(|(limit, _)| limit.listed) {
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

/// The fields of the create and edit forms, as typed.
#[derive(Deserialize, Default)]
struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    expires: String,
    /// One field per limit, by its key ([`LIMITS`]); an empty one keeps
    /// the current (or default) value. (Other fields a browser sends land
    /// here too, and are not read.)
    #[serde(flatten)]
    limits: HashMap<String, String>,
    /// A checkbox: present when ticked.
    system_account: Option<String>,
}

impl UserForm {
    fn of(view: &UserView) -> Self {
        Self {
            username: view.username.clone(),
            role: view.role.to_string(),
            full_name: view.full_name.clone().unwrap_or_default(),
            email: view.email.clone().unwrap_or_default(),
            expires: view.expires.clone().unwrap_or_default(),
            limits: limit_fields(&view.allocation),
            ..Self::default()
        }
    }

    /// The limits typed; an empty field keeps the current (or default) value.
    fn limits(&self) -> Result<LimitChanges, ApiError> {
        let mut changes = LimitChanges::default();
        for limit in LIMITS {
            let Some(text) = self.limits.get(limit.key).map(|t| t.trim()) else {
                continue;
            };
            if !text.is_empty() {
                changes
                    .set_scalar(limit, Scalar::Text(text))
                    .map_err(ApiError::invalid)?;
            }
        }
        Ok(changes)
    }

    fn role(&self) -> Result<Role, ApiError> {
        match self.role.as_str() {
            "admin" => Ok(Role::Admin),
            "user" | "" => Ok(Role::User),
            other => Err(ApiError::invalid(format!(
                "role: {other:?} is neither user nor admin"
            ))),
        }
    }

    /// Full name, email and expiry as changes: an empty field clears it.
    fn profile(&self) -> Result<Profile, ApiError> {
        let full_name = Some(self.full_name.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(v) = &full_name {
            libdiycloud::model::text::full_name(v)
                .map_err(|e| ApiError::invalid(format!("full name: {e}")))?;
        }
        let email = Some(self.email.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(v) = &email {
            libdiycloud::model::text::email(v)
                .map_err(|e| ApiError::invalid(format!("email: {e}")))?;
        }
        let expires = match self.expires.trim() {
            "" | "never" => None,
            day => Some(
                day.parse()
                    .map_err(|e| ApiError::invalid(format!("expires: {e}")))?,
            ),
        };
        Ok(Profile {
            full_name,
            email,
            expires,
        })
    }
}

impl FormToken for UserForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

/// The profile fields of a form, checked; `None` clears a field.
struct Profile {
    full_name: Option<String>,
    email: Option<String>,
    expires: Option<libdiycloud::model::Date>,
}

/// Each limit of `allocation` with its text, in [`LIMITS`]' order.
fn limit_texts(allocation: &Allocation) -> impl Iterator<Item = (&'static Limit, String)> {
    allocation
        .texts()
        .into_iter()
        .filter_map(|(key, text)| Some((Limit::by_key(key)?, text)))
}

/// A form's limit fields, filled with `allocation`.
fn limit_fields(allocation: &Allocation) -> HashMap<String, String> {
    allocation
        .texts()
        .into_iter()
        .map(|(key, text)| (key.to_owned(), text))
        .collect()
}

/// The create (no `name`) or edit form.
fn user_form(csrf: &str, form: &UserForm, name: Option<&str>) -> String {
    let action = match name {
        Some(name) => format!("/portal/admin/users/{}", segment(name)),
        None => "/portal/admin/new".into(),
    };
    let mut out = format!(
        "<form class=\"card grid\" method=\"post\" action=\"{}\">{}",
        esc(&action),
        csrf_field(csrf)
    );
    if name.is_none() {
        out.push_str(&input(
            "username",
            "Username",
            "text",
            &form.username,
            "required autocomplete=\"off\" pattern=\"[a-z_][a-z0-9_-]*\" maxlength=\"32\"",
        ));
        out.push_str(&input(
            "password",
            "Password",
            "password",
            "",
            "required autocomplete=\"new-password\"",
        ));
    }
    out.push_str("<label for=\"f-role\">Role</label><select id=\"f-role\" name=\"role\">");
    for role in ["user", "admin"] {
        let selected = if form.role == role { " selected" } else { "" };
        out.push_str(&format!(
            "<option value=\"{role}\"{selected}>{role}</option>"
        ));
    }
    out.push_str("</select>");
    out.push_str(&input(
        "full_name",
        "Full name",
        "text",
        &form.full_name,
        "",
    ));
    out.push_str(&input("email", "Email", "email", &form.email, ""));
    out.push_str(&input(
        "expires",
        "Expires (YYYY-MM-DD, empty: never)",
        "text",
        &form.expires,
        "pattern=\"(\\d{4}-\\d{2}-\\d{2}|never)?\"",
    ));
    for limit in LIMITS {
        out.push_str(&input(
            limit.key,
            &format!(
                "{}, e.g. {} (empty: the default)",
                limit.label, limit.example
            ),
            "text",
            form.limits.get(limit.key).map_or("", String::as_str),
            "",
        ));
    }
    if name.is_none() {
        let checked = if form.system_account.is_some() || form.username.is_empty() {
            " checked"
        } else {
            ""
        };
        out.push_str(&format!(
            "<label class=\"check\"><input type=\"checkbox\" name=\"system_account\" value=\"on\"{checked}> Create the Linux account (untick to link an account that exists)</label>"
        ));
    }
    out.push_str(&format!(
        "<button type=\"submit\">{}</button></form>",
        if name.is_some() {
            "Save"
        } else {
            "Create user"
        }
    ));
    out
}

async fn new_user_page(State(state): State<Arc<AppState>>, visitor: Visitor) -> Response {
    if let Some(refused) = visitor.not_admin() {
        return refused;
    }
    let defaults = &state.config.defaults;
    let form = UserForm {
        role: "user".into(),
        limits: limit_fields(defaults),
        ..UserForm::default()
    };
    page(
        StatusCode::OK,
        "New user",
        Some(&visitor.viewer()),
        &format!("<h1>New user</h1>{}", user_form(&visitor.csrf, &form, None)),
    )
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    form: Result<Form<UserForm>, FormRejection>,
) -> Response {
    if let Some(refused) = visitor.not_admin() {
        return refused;
    }
    let form = match visitor.checked_form(form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let again = |error: &ApiError, form: &UserForm| {
        page(
            error.status,
            "New user",
            Some(&visitor.viewer()),
            &format!(
                "<h1>New user</h1>{}{}",
                notice("error", &error.detail),
                user_form(&visitor.csrf, form, None)
            ),
        )
    };
    let request = (|| {
        let name = Username::parse_new(form.username.trim())
            .map_err(|e| ApiError::invalid(format!("username: {e}")))?;
        let profile = form.profile()?;
        Ok::<_, ApiError>(AddUser {
            name,
            role: form.role()?,
            email: profile.email,
            full_name: profile.full_name,
            expires: profile.expires,
            limits: form.limits()?,
            system_account: if form.system_account.is_some() {
                SystemAccount::Create
            } else {
                SystemAccount::Link {
                    allow_service_account: false,
                }
            },
        })
    })();
    let request = match request {
        Ok(request) => request,
        Err(e) => return again(&e, &form),
    };
    let password = Zeroizing::new(form.password.clone().into_bytes());
    let work = as_admin(
        Arc::clone(&state),
        visitor.actor(),
        visitor.user.username.to_string(),
        move |admin| {
            let mut source = move || Ok(password.clone());
            Ok(admin.add(&request, &mut source)?)
        },
    );
    let added = hashing(&state, work).await;
    match added {
        Ok(added) => after_apply(
            &visitor.viewer(),
            &added.user.username,
            Change::Created,
            Some(&added.applied),
        ),
        Err(e) => again(&e, &form),
    }
}

/// One user, for an admin: the edit form, the state actions, the charts.
async fn user_page(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = visitor.not_admin() {
        return refused;
    }
    let Ok(Path(name)) = name else {
        return error_page(
            Some(&visitor.viewer()),
            &ApiError::bad_request("bad user name in the address"),
        );
    };
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let (range, secs) = range_of(&query);
    let now = state.now();
    let work = Arc::clone(&state);
    let asked = name.clone();
    let loaded = blocking(move || {
        let mut store = work.store()?;
        let user = store
            .user(&asked)?
            .ok_or_else(|| ApiError::not_found(format!("no such user: {asked}")))?;
        let points = history::series(
            &store,
            &work.config,
            Some(&asked),
            Timestamp(now.0 - secs),
            now,
        )?;
        let admin = Admin::new(&mut store, &work.config, &work.ports, "portal", now);
        let usage = admin
            .usage(Some(&asked))
            .ok()
            .and_then(|u| u.into_iter().next());
        Ok((user, points, usage))
    })
    .await;
    let (user, points, usage) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return error_page(Some(&visitor.viewer()), &e),
    };
    let view = UserView::of(&user, &state.config, now);
    let body = user_body(
        &visitor,
        &view,
        &user,
        None,
        &query,
        range,
        &points,
        usage.as_ref(),
        now,
        secs,
    );
    page(
        StatusCode::OK,
        &view.username,
        Some(&visitor.viewer()),
        &body,
    )
}

#[allow(clippy::too_many_arguments)]
fn user_body(
    visitor: &Visitor,
    view: &UserView,
    user: &User,
    error: Option<(&ApiError, &UserForm)>,
    query: &PageQuery,
    range: &str,
    points: &[Point],
    usage: Option<&libdiycloud::usecases::admin::UserUsage>,
    now: Timestamp,
    secs: i64,
) -> String {
    let path = format!("/portal/admin/users/{}", segment(&view.username));
    let mut body = format!(
        "<h1>{}</h1>{}",
        esc(&view.username),
        done_message(query.done.as_deref())
    );
    let shown = match error {
        Some((e, form)) => {
            body.push_str(&notice("error", &e.detail));
            user_form(&visitor.csrf, form, Some(&view.username))
        }
        None => user_form(&visitor.csrf, &UserForm::of(view), Some(&view.username)),
    };
    body.push_str(&format!(
        "<section class=\"card\"><h2>State</h2>{}<form class=\"actions\" method=\"post\" action=\"{}/state\">{}",
        facts(&[
            ("State", view.state.clone()),
            ("Failed logins", view.failed_logins.to_string()),
            ("System account", view.uid.map_or("none".into(), |uid| format!("uid {uid}"))),
            ("Last login", view.last_login.clone().unwrap_or_else(|| "never".into())),
        ]),
        esc(&path),
        csrf_field(&visitor.csrf)
    ));
    if view.active {
        body.push_str("<button type=\"submit\" name=\"action\" value=\"disable\">Disable</button>");
    } else {
        body.push_str("<button type=\"submit\" name=\"action\" value=\"enable\">Enable</button>");
    }
    if view.locked || view.failed_logins > 0 {
        body.push_str("<button type=\"submit\" name=\"action\" value=\"unlock\">Unlock</button>");
    }
    body.push_str(&format!(
        "<button type=\"submit\" name=\"action\" value=\"apply\">Apply the allocation again</button></form><p><a class=\"danger\" href=\"{}/delete\">Delete this user…</a></p></section>",
        esc(&path)
    ));
    body.push_str("<section><h2>Profile and limits</h2>");
    body.push_str(&shown);
    body.push_str("</section><section class=\"card\"><h2>Using now</h2>");
    body.push_str(&usage_now(usage));
    body.push_str("</section>");
    body.push_str(&limit_events(usage));
    body.push_str(&charts(
        &format!("{path}?range="),
        range,
        points,
        now.0 - secs,
        now.0,
        Some(user),
    ));
    body
}

async fn save_user(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    name: Result<Path<String>, PathRejection>,
    form: Result<Form<UserForm>, FormRejection>,
) -> Response {
    if let Some(refused) = visitor.not_admin() {
        return refused;
    }
    let Ok(Path(name)) = name else {
        return unreadable(&visitor);
    };
    let form = match visitor.checked_form(form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let changes = (|| {
        let profile = form.profile()?;
        let role = form.role()?;
        Ok(UserChanges {
            role: Some(role),
            email: Some(profile.email),
            full_name: Some(profile.full_name),
            expires: Some(profile.expires),
            active: None,
            limits: form.limits()?,
        })
    })();
    let target = name.clone();
    let saved = match changes {
        Ok(changes) => {
            blocking(as_admin(
                Arc::clone(&state),
                visitor.actor(),
                visitor.user.username.to_string(),
                move |admin| Ok(admin.modify(&target, &changes)?),
            ))
            .await
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(modified) => after_apply(
            &visitor.viewer(),
            &name,
            Change::Saved,
            modified.applied.as_ref(),
        ),
        Err(e) => {
            // The page again, with what was typed and what was wrong.
            let now = state.now();
            let work = Arc::clone(&state);
            let asked = name.clone();
            let user = blocking(move || Ok(work.store()?.user(&asked)?)).await;
            match user {
                Ok(Some(user)) => {
                    let view = UserView::of(&user, &state.config, now);
                    let query = PageQuery::default();
                    let body = user_body(
                        &visitor,
                        &view,
                        &user,
                        Some((&e, &form)),
                        &query,
                        "hour",
                        &[],
                        None,
                        now,
                        3600,
                    );
                    page(e.status, &view.username, Some(&visitor.viewer()), &body)
                }
                _ => error_page(Some(&visitor.viewer()), &e),
            }
        }
    }
}

#[derive(Deserialize)]
struct StateForm {
    csrf: String,
    action: String,
}

impl FormToken for StateForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

async fn change_state(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    name: Result<Path<String>, PathRejection>,
    form: Result<Form<StateForm>, FormRejection>,
) -> Response {
    if let Some(refused) = visitor.not_admin() {
        return refused;
    }
    let Ok(Path(name)) = name else {
        return unreadable(&visitor);
    };
    let form = match visitor.checked_form(form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let action = form.action.clone();
    let target = name.clone();
    let done = blocking(as_admin(
        Arc::clone(&state),
        visitor.actor(),
        visitor.user.username.to_string(),
        move |admin| {
            let active = |active| UserChanges {
                active: Some(active),
                ..UserChanges::default()
            };
            // What applying reported, for "apply".
            let mut report = None;
            match action.as_str() {
                "disable" => admin.modify(&target, &active(false)).map(drop)?,
                "enable" => admin.modify(&target, &active(true)).map(drop)?,
                "unlock" => admin.unlock(&target).map(drop)?,
                "apply" => report = admin.apply(Some(&target))?.into_iter().next(),
                other => {
                    return Err(ApiError::invalid(format!(
                        "action: {other:?} is not one of disable, enable, unlock, apply"
                    )))
                }
            }
            let done = match action.as_str() {
                "disable" => "disabled",
                "enable" => "enabled",
                "unlock" => "unlocked",
                _ => "applied",
            };
            Ok((done, report))
        },
    ))
    .await;
    match done {
        Ok(("applied", report)) => {
            after_apply(&visitor.viewer(), &name, Change::Applied, report.as_ref())
        }
        Ok((done, _)) => Redirect::to(&format!(
            "/portal/admin/users/{}?done={done}",
            segment(&name)
        ))
        .into_response(),
        Err(e) => error_page(Some(&visitor.viewer()), &e),
    }
}

async fn delete_page(visitor: Visitor, name: Result<Path<String>, PathRejection>) -> Response {
    if let Some(refused) = visitor.not_admin() {
        return refused;
    }
    let Ok(Path(name)) = name else {
        return error_page(
            Some(&visitor.viewer()),
            &ApiError::bad_request("bad user name in the address"),
        );
    };
    let path = format!("/portal/admin/users/{}", segment(&name));
    page(
        StatusCode::OK,
        "Delete user",
        Some(&visitor.viewer()),
        &format!(
            "<h1>Delete {name}?</h1>{}<form class=\"card narrow\" method=\"post\" action=\"{path}/delete\">{}\
             <label class=\"check\"><input type=\"checkbox\" name=\"remove_home\" value=\"on\"> Also remove their home directory (only for an account diycloud created)</label>\
             <button class=\"danger\" type=\"submit\">Delete {name}</button> <a href=\"{path}\">Cancel</a></form>",
            notice(
                "error",
                "The record, the allocation, the API sessions and the history go; a Linux account diycloud created is removed. This cannot be undone."
            ),
            csrf_field(&visitor.csrf),
            name = esc(&name),
            path = esc(&path),
        ),
    )
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    remove_home: Option<String>,
}

impl FormToken for DeleteForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

async fn delete_user(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    name: Result<Path<String>, PathRejection>,
    form: Result<Form<DeleteForm>, FormRejection>,
) -> Response {
    if let Some(refused) = visitor.not_admin() {
        return refused;
    }
    let Ok(Path(name)) = name else {
        return unreadable(&visitor);
    };
    let form = match visitor.checked_form(form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let remove_home = form.remove_home.is_some();
    let deleted = blocking(as_admin(
        Arc::clone(&state),
        visitor.actor(),
        visitor.user.username.to_string(),
        move |admin| Ok(admin.delete(&name, remove_home)?),
    ))
    .await;
    match deleted {
        Ok(_) => Redirect::to("/portal/admin?done=deleted").into_response(),
        Err(e) => error_page(Some(&visitor.viewer()), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libdiycloud::usecases::apply::{ApplyReport, Step, StepOutcome, StepReport};

    fn report(outcome: StepOutcome) -> ApplyReport {
        ApplyReport {
            username: "ann".into(),
            uid: Some(1234),
            steps: vec![StepReport {
                step: Step::Slice,
                outcome,
            }],
            env: Default::default(),
        }
    }

    fn text(response: Response) -> (StatusCode, Option<String>, String) {
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .and_then(|rt| {
                rt.block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                    .map_err(std::io::Error::other)
            })
            .unwrap_or_default();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// Every change that applies (the create form, the edit form, "Apply
    /// the allocation again") says what `apply` reported.
    #[test]
    fn every_change_reports_what_apply_reported() {
        let viewer = Viewer {
            name: "boss",
            admin: true,
            csrf: "token",
        };
        let failed = report(StepOutcome::Failed {
            target: Some("user-1234.slice".into()),
            error: "cannot reach systemd on the system bus: <gone>".into(),
        });
        let applied = report(StepOutcome::Applied {
            target: "user-1234.slice".into(),
            settings: vec!["MemoryMax=1G".into()],
            changed: true,
            warning: None,
        });
        let skipped = report(StepOutcome::Skipped {
            reason: "no system account".into(),
        });
        for (change, done, said) in [
            (
                Change::Created,
                "created",
                "The user was created, but applying their allocation failed",
            ),
            (
                Change::Saved,
                "saved",
                "The change was saved, but applying it failed",
            ),
            (Change::Applied, "applied", "Applying the allocation failed"),
        ] {
            let (status, location, page) = text(after_apply(&viewer, "ann", change, Some(&failed)));
            assert_eq!(
                (status, location),
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            );
            assert!(page.contains(said), "{change:?}: {page}");
            assert!(
                page.contains(
                    "user-1234.slice: cannot reach systemd on the system bus: &lt;gone&gt;"
                ),
                "{page}"
            );
            assert!(page.contains("slicectl apply ann"), "{page}");
            assert!(
                !page.contains("notice ok"),
                "{change:?}: no success beside it"
            );

            let (status, location, _) = text(after_apply(&viewer, "ann", change, Some(&applied)));
            assert_eq!(status, StatusCode::SEE_OTHER);
            assert_eq!(
                location.as_deref(),
                Some(format!("/portal/admin/users/ann?done={done}").as_str())
            );

            let (status, _, page) = text(after_apply(&viewer, "ann", change, Some(&skipped)));
            let expected = if change == Change::Applied {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            assert_eq!(status, expected, "{change:?}");
            assert!(
                page.contains("Nothing was applied: no system account"),
                "{page}"
            );
        }
        // No limit changed (nothing applied, nothing to report): saved.
        let (status, location, _) = text(after_apply(&viewer, "ann", Change::Saved, None));
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            location.as_deref(),
            Some("/portal/admin/users/ann?done=saved")
        );
    }
}
