//! The web portal under `/portal/`: pages rendered on the server, over the
//! same use cases as the REST API (`auth` for logins and passwords, `admin`
//! for users, `history` for the charts), with the same session cookie.
//!
//! - No script: forms post and the server answers with a redirect (after a
//!   change) or the page again (with what was wrong). Keyboard use is the
//!   browser's own; the layout folds to one column at phone width.
//! - Pages are maud templates (`html.rs` has the frame and the shared
//!   pieces): every value spliced in is escaped unless it is markup
//!   already; no page is put together from strings.
//! - A handler's arguments are its checks (the extractors of
//!   `visitor.rs`): logged in, an admin, the user in the address, the form
//!   and its token, in that order; a refused request never reaches the
//!   handler.
//! - CSRF: the session cookie is `SameSite=Strict` (and `__Host-` over
//!   HTTPS), every POST from another site is refused before it reaches a
//!   page (`Origin`/`Sec-Fetch-Site`, the login form's too: see
//!   `routes::same_site_only`), and every form carries a token derived from
//!   the session ([`libdiycloud::usecases::auth::form_token`]), checked before anything
//!   changes.
//! - What a change did is what the use case reported: where applying the
//!   allocation failed, or there was nothing to apply, the page says so
//!   and what to run, never "applied".
//! - A login names the reason of a refusal only to whoever gave the right
//!   password (locked, disabled); anyone else reads "wrong username or
//!   password".

mod admin;
mod applied;
mod chart;
mod home;
mod html;
mod login;
mod user_form;
mod users;
mod visitor;

use axum::http::Method;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use self::html::{notice, page};
use crate::route::Route;

use admin::admin_page;
use home::{change_password, home};
use login::{login, login_page, logout};
use users::{
    change_state, create_user, delete_page, delete_user, new_user_page, save_user, user_page,
};

const STYLE: &str = include_str!("style.css");

/// The portal's routes (the router is made in `routes`).
pub(crate) fn routes() -> Vec<Route> {
    use crate::route::at;
    vec![
        at(Method::GET, "/portal", || async {
            Redirect::permanent("/portal/")
        }),
        at(Method::GET, "/portal/", home),
        at(Method::GET, "/portal/style.css", style),
        at(Method::GET, "/portal/login", login_page),
        at(Method::POST, "/portal/login", login),
        at(Method::POST, "/portal/logout", logout),
        at(Method::POST, "/portal/password", change_password),
        at(Method::GET, "/portal/admin", admin_page),
        at(Method::GET, "/portal/admin/new", new_user_page),
        at(Method::POST, "/portal/admin/new", create_user),
        at(Method::GET, "/portal/admin/users/{name}", user_page),
        at(Method::POST, "/portal/admin/users/{name}", save_user),
        at(
            Method::POST,
            "/portal/admin/users/{name}/state",
            change_state,
        ),
        at(
            Method::GET,
            "/portal/admin/users/{name}/delete",
            delete_page,
        ),
        at(
            Method::POST,
            "/portal/admin/users/{name}/delete",
            delete_user,
        ),
    ]
}

/// The page for a form sent from another site (see
/// `routes::same_site_only`): nothing was done.
pub(crate) fn cross_site_page() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Refused",
        None,
        html! {
            h1 { "Refused" }
            (notice(
                "error",
                "Cross-site request refused: the form was sent from another site, or from another address of this one. Nothing was done. Open the portal at its own address and use its pages.",
            ))
            p { a href="/portal/" { "Go to the portal" } }
        },
    )
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        STYLE,
    )
        .into_response()
}
