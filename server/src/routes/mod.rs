//! The routes of DESIGN §11. JSON fields are named like `slicectl`'s flags.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use libdiycloud::model::limits::{Number, LIMITS};
use libdiycloud::system::SystemAdmin;
use serde_json::{json, Value};

use crate::client::Caller;
use crate::error::ApiError;
use crate::route::{at, Route};
use crate::work::{as_admin, blocking};
use crate::AppState;

mod sessions;
mod usage;
mod users;

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

/// The OpenAPI document of these routes.
const OPENAPI: &str = include_str!("../openapi.json");

/// Runs `work` with the admin use cases as `caller`, on the blocking pool.
async fn with_admin<T: Send + 'static>(
    state: Arc<AppState>,
    caller: &Caller,
    work: impl FnOnce(&mut SystemAdmin<'_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let name = caller.user.username.to_string();
    blocking(as_admin(state, caller.actor(), name, work)).await
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
