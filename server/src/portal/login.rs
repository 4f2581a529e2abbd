//! Logging in and out.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use libdiycloud::usecases::auth::{LoginOutcome, Refusal};
use maud::html;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::html::{input, notice, page};
use super::visitor::{CheckedForm, FormToken, Visitor};
use crate::client::Client;
use crate::session::{clear_session_cookie, end_session, open_session, set_session_cookie, settle};
use crate::AppState;

#[derive(Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
}

fn login_form(status: StatusCode, message: Option<&str>, username: &str) -> Response {
    page(
        status,
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            @if let Some(message) = message {
                (notice("error", message))
            }
            form class="card narrow" method="post" action="/portal/login" {
                (input("username", "Username", "text", username)
                    .autocomplete("username")
                    .required()
                    .autofocus())
                (input("password", "Password", "password", "")
                    .autocomplete("current-password")
                    .required())
                button type="submit" { "Log in" }
            }
        },
    )
}

pub(super) async fn login_page() -> Response {
    login_form(StatusCode::OK, None, "")
}

pub(super) async fn login(
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
pub(super) struct CsrfForm {
    csrf: String,
}

impl FormToken for CsrfForm {
    fn token(&self) -> &str {
        &self.csrf
    }

    /// A logout without a readable token is refused as one with the wrong
    /// token.
    fn unreadable(visitor: &Visitor) -> Response {
        visitor.expired_form()
    }
}

pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    client: Client,
    visitor: Visitor,
    _: CheckedForm<CsrfForm>,
) -> Response {
    let actor = visitor.actor();
    let _ = end_session(state, visitor.token, actor).await;
    let mut response = Redirect::to("/portal/login").into_response();
    clear_session_cookie(&mut response, client.https);
    response
}
