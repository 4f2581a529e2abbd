//! Logins, logouts, the caller's own record and password: the API's sessions and what the portal shares of them.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use libdiycloud::model::time::Timestamp;
use libdiycloud::usecases::admin::UserView;
use libdiycloud::usecases::auth::{self, ApiSession, Authenticator, PasswordChange, Refusal};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::{blocking, hashing, login_hashing};
use crate::client::{cookie_name, Caller, Client};
use crate::error::ApiError;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginRequest {
    username: String,
    password: String,
}

pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    client: Client,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
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
    let opened = match opened {
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
            return Ok(crate::hashing::unavailable(e))
        }
        opened => opened?,
    };
    match opened {
        Ok(session) => {
            let user = UserView::of(&session.user, &state.config, now);
            let mut response =
                Json(json!({"token": *session.token, "expires_in": ttl, "user": user}))
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

/// Gives a login's token back to its client's bucket unless the login
/// failed: it succeeded, or its password was never checked (503: the
/// queue of password checks was full).
pub(crate) fn settle<T>(
    attempt: crate::limiter::Attempt<'_>,
    opened: &Result<Result<T, Refusal>, ApiError>,
) {
    match opened {
        Ok(Ok(_)) => attempt.not_counted(),
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => attempt.not_counted(),
        _ => {}
    }
}

/// A login at a front door (`api` or `portal`): the password checked on a
/// hashing slot, the session opened with the login's bookkeeping. A refusal
/// is logged with its reason; the front door decides what the client hears.
pub(crate) async fn open_session(
    state: &Arc<AppState>,
    client: Client,
    front: &'static str,
    name: String,
    password: Zeroizing<String>,
    now: Timestamp,
) -> Result<Result<ApiSession, Refusal>, ApiError> {
    let work = Arc::clone(state);
    let asked = name.clone();
    let opened = login_hashing(state, move || {
        let mut store = work.store()?;
        let actor = format!("{front}:{}", client.ip);
        let ttl_secs = i64::try_from(work.config.api.session_ttl).unwrap_or(i64::MAX);
        Ok(
            Authenticator::new(&mut store, &work.config, actor)?.open_api_session(
                &asked,
                password.as_bytes(),
                now,
                ttl_secs,
            )?,
        )
    })
    .await?;
    if let Err(refusal) = &opened {
        eprintln!(
            "diycloud-server: {front} login refused for {:?} from {}: {:?}",
            name.chars().take(40).collect::<String>(),
            client.ip,
            refusal.outcome
        );
    }
    Ok(opened)
}

/// A user's own password change, the current password checked like a
/// login, on a hashing slot.
pub(crate) async fn change_own_password(
    state: &Arc<AppState>,
    name: String,
    actor: String,
    old: Zeroizing<String>,
    new: Zeroizing<String>,
) -> Result<PasswordChange, ApiError> {
    let work = Arc::clone(state);
    hashing(state, move || {
        let mut store = work.store()?;
        Ok(
            Authenticator::new(&mut store, &work.config, actor)?.change_password(
                &name,
                old.as_bytes(),
                new.as_bytes(),
                work.now(),
            )?,
        )
    })
    .await
}

/// Ends the session of `token` (false: it had none).
pub(crate) async fn end_session(
    state: Arc<AppState>,
    token: String,
    actor: String,
) -> Result<bool, ApiError> {
    blocking(move || {
        let mut store = state.store()?;
        Ok(auth::close_api_session(
            &mut store,
            &token,
            &actor,
            state.now(),
        )?)
    })
    .await
}

/// The session cookie on `response`: HttpOnly, SameSite=Strict, Path=/;
/// where the client came over TLS, Secure and named with the `__Host-`
/// prefix (see [`cookie_name`]).
pub(crate) fn set_session_cookie(response: &mut Response, token: &str, ttl: u64, https: bool) {
    session_cookie(response, token, ttl, https);
}

/// The session cookie cleared on `response` (by the name it has over
/// `https` or not).
pub(crate) fn clear_session_cookie(response: &mut Response, https: bool) {
    session_cookie(response, "", 0, https);
}

fn session_cookie(response: &mut Response, token: &str, max_age: u64, https: bool) {
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        cookie_name(https),
        if https { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

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

pub(super) async fn me(State(state): State<Arc<AppState>>, caller: Caller) -> Json<UserView> {
    Json(UserView::of(&caller.user, &state.config, state.now()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordRequest {
    current_password: String,
    new_password: String,
}

/// A user's own password change: the current password is checked like a
/// login (a wrong one counts toward the lockout); every session of the
/// user ends, this one too.
pub(super) async fn change_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<PasswordRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(request) = body?;
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
