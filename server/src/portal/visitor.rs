//! Who is asking, and what a handler may take for granted: the extractors
//! that refuse a request with its page before the handler runs, and the
//! pages for what went wrong.
//!
//! A handler's arguments are its checks, run in their order: `Visitor` (or
//! `AdminVisitor`) first, then `UserPath`, then `CheckedForm` last (it reads
//! the body). So a visitor without a session is sent to log in, an admin's
//! page refuses anyone else before it looks at the address or the form, and
//! a form's token is checked before the handler can change anything.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use libdiycloud::model::user::{Role, User};
use libdiycloud::usecases::auth;
use maud::html;
use serde::de::DeserializeOwned;

use super::html::{notice, page, Viewer};
use crate::client::{token, Client};
use crate::csrf::same_form_token;
use crate::error::ApiError;
use crate::work::blocking;
use crate::AppState;

/// A logged-in visitor; anyone else is sent to the login page. Looked up
/// once per request: the other extractors find it in the request.
#[derive(Clone)]
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
            admin: self.is_admin(),
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

    /// The refusal of a form that does not carry this session's token.
    pub(super) fn expired_form(&self) -> Response {
        page(
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
        )
    }
}

impl FromRequestParts<Arc<AppState>> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(visitor) = parts.extensions.get::<Visitor>() {
            return Ok(visitor.clone());
        }
        let to_login = || Redirect::to("/portal/login").into_response();
        let https = match Client::from_request_parts(parts, state).await {
            Ok(client) => client.https,
            Err(never) => match never {},
        };
        let token = token(&parts.headers, https).ok_or_else(to_login)?;
        let work = Arc::clone(state);
        let looked_up = token.clone();
        let user = blocking(move || {
            let store = work.store()?;
            Ok(auth::session_user(
                &store,
                &work.config.lockout,
                &looked_up,
                work.now(),
            )?)
        })
        .await
        .map_err(IntoResponse::into_response)?
        .ok_or_else(to_login)?;
        let visitor = Visitor {
            user,
            csrf: auth::form_token(&token),
            token,
        };
        parts.extensions.insert(visitor.clone());
        Ok(visitor)
    }
}

/// A logged-in admin. Anyone else logged in gets the "Admins only" page
/// (403), whatever else they sent; a visitor without a session the login
/// page.
pub(super) struct AdminVisitor(pub(super) Visitor);

impl FromRequestParts<Arc<AppState>> for AdminVisitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        if visitor.is_admin() {
            return Ok(AdminVisitor(visitor));
        }
        Err(page(
            StatusCode::FORBIDDEN,
            "Admins only",
            Some(&visitor.viewer()),
            html! {
                h1 { "Admins only" }
                (notice("error", "This page needs the admin role."))
                p { a href="/portal/" { "Back to your account" } }
            },
        ))
    }
}

/// The user an admin's page is about: `{name}` in its address, as sent
/// (the use case says whether such a user exists). An address that cannot
/// be read gets a 400 page.
pub(super) struct UserPath(pub(super) String);

impl FromRequestParts<Arc<AppState>> for UserPath {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Ok(Path(name)) = Path::<String>::from_request_parts(parts, state).await {
            return Ok(UserPath(name));
        }
        let visitor = Visitor::from_request_parts(parts, state).await?;
        // A page says what is wrong with its address; a form posted to such
        // an address is a form that could not be read.
        Err(if parts.method == Method::GET {
            error_page(
                Some(&visitor.viewer()),
                &ApiError::bad_request("bad user name in the address"),
            )
        } else {
            unreadable(&visitor)
        })
    }
}

/// A form that carries the session's form token.
pub(super) trait FormToken: DeserializeOwned {
    fn token(&self) -> &str;

    /// The page for this form when it could not be read (a field missing,
    /// not a form): a 400 that says so.
    fn unreadable(visitor: &Visitor) -> Response {
        unreadable(visitor)
    }
}

/// A posted form of the visitor's, read, with this session's form token
/// (checked in constant time, [`same_form_token`]). Else the page that
/// refuses it, and the handler does not run: nothing is changed.
pub(super) struct CheckedForm<F>(pub(super) F);

impl<F: FormToken + Send> FromRequest<Arc<AppState>> for CheckedForm<F> {
    type Rejection = Response;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, state).await?;
        let Ok(Form(form)) = Form::<F>::from_request(Request::from_parts(parts, body), state).await
        else {
            return Err(F::unreadable(&visitor));
        };
        if same_form_token(form.token(), &visitor.csrf) {
            Ok(CheckedForm(form))
        } else {
            Err(visitor.expired_form())
        }
    }
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
