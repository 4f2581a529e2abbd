//! Sessions as both front doors open and end them: a login on a hashing
//! slot, a password change, the end of a session, and the session cookie.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use libdiycloud::model::time::Timestamp;
use libdiycloud::usecases::auth::{self, ApiSession, Authenticator, PasswordChange, Refusal};
use zeroize::Zeroizing;

use crate::client::{cookie_name, Client};
use crate::error::ApiError;
use crate::work::{blocking, hashing, login_hashing};
use crate::AppState;

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
        tracing::info!(
            "{front} login refused for {:?} from {}: {:?}",
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
