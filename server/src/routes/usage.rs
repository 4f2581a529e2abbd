//! Usage now, its history, and the Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use libdiycloud::config::ApiConfig;
use libdiycloud::model::history::Point;
use libdiycloud::model::time::Timestamp;
use libdiycloud::usecases::admin::UsageEntry;
use libdiycloud::usecases::history;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::extract::{AdminCaller, Params, UserPath};
use super::openapi::Failure;
use super::with_admin;
use crate::client::{Caller, DirectLocal};
use crate::error::ApiError;
use crate::work::blocking;
use crate::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct UsageQuery {
    /// Only this user (an admin; a user may name only themself).
    user: Option<String>,
}

/// Usage: an admin's of everyone (or `?user=NAME`), a user's of themself.
#[utoipa::path(get, path = "/api/v1/usage", tag = "usage", operation_id = "usage",
    summary = "CPU, memory, tasks, disk and GPU use, limit events and idle GPU grants (admin: everyone or ?user=NAME; a user: themself)",
    security(("bearer" = []), ("cookie" = [])),
    params(UsageQuery),
    responses(
        (status = 200, description = "one entry per user", body = Vec<UsageEntry>),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 404, response = Failure),
        (status = 500, response = Failure),
    ))]
pub(super) async fn usage(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Params(query): Params<UsageQuery>,
) -> Result<Json<Vec<UsageEntry>>, ApiError> {
    let me = caller.user.username.as_str().to_owned();
    let name = match (caller.is_admin(), query.user) {
        (true, name) => name,
        (false, None) => Some(me),
        (false, Some(name)) if name == me => Some(me),
        (false, Some(_)) => return Err(ApiError::forbidden()),
    };
    with_admin(state, &caller, move |admin| {
        let rows = admin.usage(name.as_deref())?;
        Ok(Json(rows.iter().map(|row| row.entry()).collect()))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RangeQuery {
    /// unix seconds; default: an hour before `to`
    from: Option<i64>,
    /// unix seconds; default: now
    to: Option<i64>,
}

/// The range a history request asks for: `to` defaults to now, `from` to
/// an hour before `to`.
fn range(query: &RangeQuery, now: Timestamp) -> Result<(Timestamp, Timestamp), ApiError> {
    let to = query.to.unwrap_or(now.0);
    let from = query.from.unwrap_or(to.saturating_sub(3600));
    if from > to {
        return Err(ApiError::invalid("from: must not be after to"));
    }
    Ok((Timestamp(from), Timestamp(to)))
}

/// A usage history: at most 300 points from `from` to `to`, each standing
/// for a bucket of samples.
#[derive(Serialize, ToSchema)]
pub(super) struct History {
    /// null: the node
    username: Option<String>,
    /// Unix seconds.
    #[schema(value_type = i64)]
    from: Timestamp,
    /// Unix seconds.
    #[schema(value_type = i64)]
    to: Timestamp,
    /// seconds between samples ([history] interval)
    interval: u64,
    points: Vec<Point>,
}

impl History {
    fn of(
        state: &AppState,
        username: Option<String>,
        (from, to): (Timestamp, Timestamp),
        points: Vec<Point>,
    ) -> Self {
        Self {
            username,
            from,
            to,
            interval: state.config.history.interval,
            points,
        }
    }
}

/// A user's usage history: an admin's of anyone, a user's of themself.
#[utoipa::path(get, path = "/api/v1/users/{name}/history", tag = "usage", operation_id = "userHistory",
    summary = "A user's usage history (admin: anyone; a user: themself)",
    security(("bearer" = []), ("cookie" = [])),
    params(("name" = String, Path), RangeQuery),
    responses(
        (status = 200, description = "the history", body = History),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 404, response = Failure),
        (status = 422, response = Failure), (status = 500, response = Failure),
    ))]
pub(super) async fn user_history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    UserPath(name): UserPath,
    Params(query): Params<RangeQuery>,
) -> Result<Json<History>, ApiError> {
    if !caller.is_admin() && caller.user.username.as_str() != name {
        return Err(ApiError::forbidden());
    }
    let (from, to) = range(&query, state.now())?;
    blocking(move || {
        let store = state.store()?;
        if store.user(&name)?.is_none() {
            return Err(ApiError::not_found(format!("no such user: {name}")));
        }
        let points = history::series(&store, &state.config, Some(&name), from, to)?;
        Ok(Json(History::of(&state, Some(name), (from, to), points)))
    })
    .await
}

/// The node's usage history (every user's added up): admins only.
#[utoipa::path(get, path = "/api/v1/history", tag = "usage", operation_id = "nodeHistory",
    summary = "The node's usage history: every user's added up (admin)",
    security(("bearer" = []), ("cookie" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "the history", body = History),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 422, response = Failure),
        (status = 500, response = Failure),
    ))]
pub(super) async fn node_history(
    State(state): State<Arc<AppState>>,
    AdminCaller(_): AdminCaller,
    Params(query): Params<RangeQuery>,
) -> Result<Json<History>, ApiError> {
    let (from, to) = range(&query, state.now())?;
    blocking(move || {
        let store = state.store()?;
        let points = history::series(&store, &state.config, None, from, to)?;
        Ok(Json(History::of(&state, None, (from, to), points)))
    })
    .await
}

/// Prometheus's scrape. The per-user series go to the scrape token of
/// `[api] metrics_token_file`, to an admin's session and, with `[api]
/// metrics_public`, to a local process asking directly; another local
/// process gets the series that name no user; anyone else needs a
/// credential (401). A credential that is not good is 401 (403 for a user's
/// session), never quietly answered with less.
#[utoipa::path(get, path = "/metrics", tag = "usage", operation_id = "metrics",
    summary = "Prometheus metrics, text format 0.0.4: users, their usage and GPUs, limit events, logins and lockouts (a direct local client, or an admin's token)",
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the metrics", content_type = "text/plain", body = String),
        (status = 401, response = Failure), (status = 403, response = Failure),
        (status = 500, response = Failure),
    ))]
pub(super) async fn metrics(
    State(state): State<Arc<AppState>>,
    local: DirectLocal,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    let per_user = if headers.contains_key(header::AUTHORIZATION) {
        let sent = bearer(&headers).map(|t| Zeroizing::new(t.to_owned()));
        let work = Arc::clone(&state);
        let scraper = match sent {
            Some(sent) => blocking(move || Ok(is_scrape_token(&work.config.api, &sent))).await?,
            None => false,
        };
        if !scraper {
            caller?.admin()?;
        }
        true
    } else if local.0 {
        state.config.api.metrics_public || caller.is_ok_and(|c| c.is_admin())
    } else {
        caller?.admin()?;
        true
    };
    let text = blocking(move || {
        let store = state.store()?;
        let now = state.now();
        let mut scrape = crate::metrics::scrape(&store, &state.config, &state.ports, now)?;
        if let Ok(totals) = state.limit_totals.lock() {
            scrape.limit_totals = totals.clone();
        }
        let text = crate::metrics::render(&scrape, &state.config, now);
        let mut text = if per_user {
            text
        } else {
            crate::metrics::aggregates_only(&text)
        };
        crate::metrics::per_user_family(&mut text, per_user);
        Ok(text)
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `sent` is the scrape token of `[api] metrics_token_file` (read at
/// each scrape, as Prometheus reads its `credentials_file`), compared in
/// constant time. A file that every user may read or write, that cannot be
/// read, or that is empty, is no credential, and the log says why.
fn is_scrape_token(api: &ApiConfig, sent: &str) -> bool {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use subtle::ConstantTimeEq;

    let Some(path) = &api.metrics_token_file else {
        return false;
    };
    let refuse = |why: String| {
        tracing::warn!(
            "[api] metrics_token_file {}: {why}; no scrape token is accepted",
            path.display()
        );
        false
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return refuse(e.to_string()),
    };
    match file.metadata() {
        Ok(meta) if meta.permissions().mode() & 0o006 != 0 => {
            return refuse(format!(
                "every user may read or change it (mode {:o}): `chmod o-rw` it",
                meta.permissions().mode() & 0o7777
            ))
        }
        Ok(_) => {}
        Err(e) => return refuse(e.to_string()),
    }
    let mut text = Zeroizing::new(String::new());
    if let Err(e) = file.read_to_string(&mut text) {
        return refuse(e.to_string());
    }
    let token = text.trim();
    if token.is_empty() {
        return refuse("it is empty".into());
    }
    token.as_bytes().ct_eq(sent.as_bytes()).into()
}
