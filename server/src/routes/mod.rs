//! The routes of DESIGN §11. JSON fields are named like `slicectl`'s flags.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use libdiycloud::system::SystemAdmin;
use serde::Serialize;
use utoipa::ToSchema;

use crate::client::Caller;
use crate::error::ApiError;
use crate::route::{at, Route};
use crate::work::{as_admin, blocking};
use crate::AppState;

mod extract;
mod openapi;
mod sessions;
mod usage;
mod users;

pub use openapi::openapi_document;

use sessions::{change_password, login, logout, me};
use usage::{metrics, node_history, usage, user_history};
use users::{add_user, apply_user, delete_user, list_users, modify_user, show_user, unlock_user};

/// The API's routes (the router adds the portal's: `router.rs`).
pub(crate) fn api_routes() -> Vec<Route> {
    vec![
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
    ]
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

/// Whether the server can open the database.
#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok` or `unavailable`.
    status: &'static str,
    /// Why not (when unavailable).
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "server", operation_id = "healthz",
    summary = "Whether the server can open the database",
    responses(
        (status = 200, description = "healthy", body = Health),
        (status = 503, description = "the database cannot be opened", body = Health),
    ))]
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let db = blocking(move || Ok(state.store().map(|_| ())?)).await;
    let (status, health) = match db {
        Ok(()) => (
            StatusCode::OK,
            Health {
                status: "ok",
                detail: None,
            },
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Health {
                status: "unavailable",
                detail: Some(e.detail),
            },
        ),
    };
    (status, Json(health)).into_response()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "server", operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
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
