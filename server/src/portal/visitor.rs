//! Who is asking: the visitor's session, role and form token, and the pages
//! for what went wrong.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use libdiycloud::model::user::{Role, User};
use libdiycloud::usecases::auth;
use maud::html;

use super::html::{notice, page, Viewer};
use crate::client::{token, Client};
use crate::error::ApiError;
use crate::work::blocking;
use crate::AppState;

/// A logged-in visitor; anyone else is sent to the login page.
pub(super) struct Visitor {
    pub(super) user: User,
    /// The session token (from the cookie), and the form token derived from it.
    pub(super) token: String,
    pub(super) csrf: String,
}

impl Visitor {
    pub(super) fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: self.user.username.as_str(),
            admin: self.user.role == Role::Admin,
            csrf: &self.csrf,
        }
    }

    pub(super) fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// For the audit log: `portal:NAME`.
    pub(super) fn actor(&self) -> String {
        format!("portal:{}", self.user.username)
    }

    /// A refusal unless the form's token is this session's.
    pub(super) fn wrong_form_token(&self, sent: &str) -> Option<Response> {
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
                html! {
                    h1 { "This form has expired" }
                    (notice(
                        "error",
                        "The form did not come from this session (it is older than your login, or from another site). Nothing was changed: go back, reload the page and try again.",
                    ))
                },
            ))
        }
    }

    /// A posted form, read and its token checked; else the page that
    /// refuses it.
    pub(super) fn checked_form<F: FormToken>(
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
    pub(super) fn not_admin(&self) -> Option<Response> {
        if self.is_admin() {
            None
        } else {
            Some(page(
                StatusCode::FORBIDDEN,
                "Admins only",
                Some(&self.viewer()),
                html! {
                    h1 { "Admins only" }
                    (notice("error", "This page needs the admin role."))
                    p { a href="/portal/" { "Back to your account" } }
                },
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
pub(super) trait FormToken {
    fn token(&self) -> &str;
}

/// The page for a form (or an address) the server could not read.
pub(super) fn unreadable(visitor: &Visitor) -> Response {
    error_page(
        Some(&visitor.viewer()),
        &ApiError::bad_request("the form could not be read"),
    )
}

/// An error of a use case as a page.
pub(super) fn error_page(viewer: Option<&Viewer<'_>>, error: &ApiError) -> Response {
    page(
        error.status,
        "Error",
        viewer,
        html! {
            h1 { "That did not work" }
            (notice("error", &error.detail))
            p { a href="/portal/" { "Back to your account" } }
        },
    )
}
