//! The routes of DESIGN §11. JSON fields are named like `slicectl`'s flags.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use libdiycloud::model::limits::{Number, LIMITS};
use libdiycloud::system::SystemAdmin;
use libdiycloud::usecases::admin::Admin;
use serde_json::{json, Value};

use crate::client::Caller;
use crate::error::ApiError;
use crate::AppState;

mod csrf;
mod sessions;
mod usage;
mod users;

use csrf::same_site_only;
pub(crate) use sessions::{
    change_own_password, clear_session_cookie, end_session, open_session, set_session_cookie,
    settle,
};
use sessions::{change_password, login, logout, me};
use usage::{metrics, node_history, usage, user_history};
use users::{add_user, apply_user, delete_user, list_users, modify_user, show_user, unlock_user};

/// The largest request body: a user record is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The OpenAPI document of these routes.
const OPENAPI: &str = include_str!("../openapi.json");

/// One route: its method, its path and what serves it.
pub(crate) type Route = (Method, &'static str, MethodRouter<Arc<AppState>>);

/// The route of `method` on `path` to `handler`.
pub(crate) fn at<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or_else(|_| {
        unreachable!("a route's method is one of GET, POST, PUT, PATCH, DELETE")
    });
    (method, path, on(filter, handler))
}

/// Every route, the API's and the portal's. The router is made from this
/// list and nothing else, and [`routes`] hands it to the tests: the CSRF
/// matrix walks every state-changing route, so a new one cannot escape it.
fn table() -> Vec<Route> {
    let mut table = vec![
        at(Method::GET, "/healthz", healthz),
        at(Method::GET, "/api/v1/openapi.json", openapi),
        at(Method::POST, "/api/v1/auth/login", login),
        at(Method::POST, "/api/v1/auth/logout", logout),
        at(Method::GET, "/api/v1/me", me),
        at(Method::PUT, "/api/v1/me/password", change_password),
        at(Method::GET, "/api/v1/users", list_users),
        at(Method::POST, "/api/v1/users", add_user),
        at(Method::GET, "/api/v1/users/{name}", show_user),
        at(Method::PATCH, "/api/v1/users/{name}", modify_user),
        at(Method::DELETE, "/api/v1/users/{name}", delete_user),
        at(Method::POST, "/api/v1/users/{name}/apply", apply_user),
        at(Method::POST, "/api/v1/users/{name}/unlock", unlock_user),
        at(Method::GET, "/api/v1/usage", usage),
        at(Method::GET, "/api/v1/users/{name}/history", user_history),
        at(Method::GET, "/api/v1/history", node_history),
        at(Method::GET, "/metrics", metrics),
    ];
    table.extend(crate::portal::routes());
    table
}

/// Every route the router serves: (method, path).
pub fn routes() -> Vec<(Method, &'static str)> {
    table()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

pub fn router(state: Arc<AppState>) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .fallback(|| async { ApiError::not_found("no such route: see /api/v1/openapi.json") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(same_site_only))
        .with_state(state)
}

/// Runs `work` with the admin use cases as `caller`, on the blocking pool.
async fn with_admin<T: Send + 'static>(
    state: Arc<AppState>,
    caller: &Caller,
    work: impl FnOnce(&mut SystemAdmin<'_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let name = caller.user.username.to_string();
    blocking(as_admin(state, caller.actor(), name, work)).await
}

/// `work` with the admin use cases as `actor` (for the audit log), for the
/// admin whose user name is `caller`, as blocking work.
pub(crate) fn as_admin<T>(
    state: Arc<AppState>,
    actor: String,
    caller: String,
    work: impl FnOnce(&mut SystemAdmin<'_>) -> Result<T, ApiError>,
) -> impl FnOnce() -> Result<T, ApiError> {
    move || {
        let mut store = state.store()?;
        let mut admin = Admin::new(&mut store, &state.config, &state.ports, &actor, state.now())
            .from_the_web(&caller);
        work(&mut admin)
    }
}

/// Runs blocking work (argon2, SQLite, D-Bus) on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

/// Runs blocking work that hashes a password (argon2) once it has a
/// hashing slot: one hash per CPU at a time (see `hashing`).
pub(crate) async fn hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let slot = state.hashing.slot().await?;
    blocking(move || slot.run(work)).await
}

/// [`hashing`] for a login: 503 with Retry-After at once where
/// `[api] login_queue` checks wait already.
async fn login_hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let slot = state.hashing.login_slot().await?;
    blocking(move || slot.run(work)).await
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let db = blocking(move || Ok(state.store().map(|_| ())?)).await;
    match db {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "detail": e.detail})),
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        openapi_document(),
    )
        .into_response()
}

/// The API's OpenAPI document: the hand-written one (`openapi.json`) with
/// one property per limit ([`LIMITS`]) in the request bodies that take
/// limits and in the user's view, so the schema lists what the code does.
pub fn openapi_document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document: Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        let schemas = &mut document["components"]["schemas"];
        for limit in LIMITS {
            let text = json!({"type": "string"});
            let request = match limit.number.schema_type() {
                Some(number) => json!({"oneOf": [text, {"type": number}]}),
                None => text,
            };
            let view = json!({"type": match limit.number {
                Number::Integer => "integer",
                Number::No | Number::Any => "string",
            }});
            let described = |mut schema: Value| {
                schema["description"] = json!(format!("{} ({})", limit.help, limit.syntax));
                schema
            };
            for body in ["NewUser", "UserChanges"] {
                schemas[body]["properties"][limit.key] = described(request.clone());
            }
            schemas["User"]["properties"][limit.key] = described(view);
            if let Some(required) = schemas["User"]["required"].as_array_mut() {
                required.push(json!(limit.key));
            }
        }
        document.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_list_is_the_router() {
        let routes = routes();
        let mut seen = std::collections::BTreeSet::new();
        for (method, path) in &routes {
            assert!(
                seen.insert((method.to_string(), *path)),
                "{method} {path} twice"
            );
        }
        assert!(routes.len() >= 30, "{}", routes.len());
    }
}
