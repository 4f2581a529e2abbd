//! Logins, logouts, the caller's own record and password: the API's sessions
//! and what the portal shares of them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use libdiycloud::usecases::admin::UserView;
use libdiycloud::usecases::auth::PasswordChange;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::extract::Body;
use super::openapi::Failure;
use crate::client::{Caller, Client};
use crate::error::ApiError;
use crate::session::{
    change_own_password, clear_session_cookie, end_session, open_session, set_session_cookie,
    settle,
};
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Login)]
pub(super) struct LoginRequest {
    username: String,
    password: String,
}

/// A login's answer: the token is also set as the session cookie.
#[derive(Serialize, ToSchema)]
pub(super) struct Session<'a> {
    token: &'a str,
    /// Seconds the session lasts without use.
    expires_in: u64,
    user: UserView,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "sessions", operation_id = "login",
    summary = "Log in: a token, also set as an HttpOnly, SameSite=Strict cookie",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "logged in", body = Session),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 413, response = Failure), (status = 415, response = Failure),
        (status = 422, response = Failure), (status = 429, response = Failure),
        (status = 503, response = Failure),
    ))]
pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    client: Client,
    Body(request): Body<LoginRequest>,
) -> Result<Response, ApiError> {
    let password = Zeroizing::new(request.password);
    let now = state.now();
    // A token of the client's bucket; a failure keeps it (see `limiter`).
    let attempt = state
        .limiter
        .attempt(client.ip)
        .map_err(ApiError::too_many)?;
    let ttl = state.config.api.session_ttl;
    let opened = open_session(&state, client, "api", request.username, password, now).await;
    settle(attempt, &opened);
    // A full hashing queue is the error's own 503 with Retry-After.
    match opened? {
        Ok(session) => {
            let user = UserView::of(&session.user, &state.config, now);
            let mut response = Json(Session {
                token: &session.token,
                expires_in: ttl,
                user,
            })
            .into_response();
            set_session_cookie(&mut response, &session.token, ttl, client.https);
            Ok(response)
        }
        // The reason is in the log; the client learns only that it failed.
        Err(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "login refused: wrong username or password, or the account cannot log in now",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "sessions", operation_id = "logout",
    summary = "End this session",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 204, description = "logged out"), (status = 401, response = Failure)))]
pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    client: Client,
    caller: Caller,
) -> Result<Response, ApiError> {
    let actor = caller.actor();
    end_session(state, caller.token, actor).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_session_cookie(&mut response, client.https);
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "sessions", operation_id = "me",
    summary = "The caller's own record",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the caller", body = UserView),
        (status = 401, response = Failure),
    ))]
pub(super) async fn me(State(state): State<Arc<AppState>>, caller: Caller) -> Json<UserView> {
    Json(UserView::of(&caller.user, &state.config, state.now()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasswordChange)]
pub(super) struct PasswordRequest {
    current_password: String,
    new_password: String,
}

/// A user's own password change: the current password is checked like a
/// login (a wrong one counts toward the lockout); every session of the
/// user ends, this one too.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "sessions", operation_id = "changePassword",
    summary = "Change one's own password (ends every session of the user)",
    security(("bearer" = []), ("cookie" = [])),
    request_body = PasswordRequest,
    responses(
        (status = 204, description = "changed"),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 413, response = Failure),
        (status = 415, response = Failure), (status = 422, response = Failure),
        (status = 503, response = Failure),
    ))]
pub(super) async fn change_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(request): Body<PasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let (old, new) = (
        Zeroizing::new(request.current_password),
        Zeroizing::new(request.new_password),
    );
    let (name, actor) = (caller.user.username.to_string(), caller.actor());
    match change_own_password(&state, name, actor, old, new).await? {
        PasswordChange::Changed => Ok(StatusCode::NO_CONTENT),
        PasswordChange::Denied(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the current password is wrong",
        )),
        PasswordChange::Refused(violation) => {
            Err(ApiError::invalid(format!("new_password: {violation}")))
        }
    }
}
