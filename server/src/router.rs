//! The router: the API's routes and the portal's, from one table, behind the
//! body limit and the cross-site check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::csrf::cross_site;
use crate::error::ApiError;
use crate::route::Route;
use crate::AppState;

/// The largest request body: a user record is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Every route, the API's and the portal's. The router is made from this
/// list and nothing else, and [`routes`] hands it to the tests: the CSRF
/// matrix walks every state-changing route, so a new one cannot escape it.
fn table() -> Vec<Route> {
    let mut table = crate::routes::api_routes();
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
    let routes = table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .fallback(|| async { ApiError::not_found("no such route: see /api/v1/openapi.json") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(same_site_only));
    with_access_log(routes).with_state(state)
}

/// One line per request, when the request is answered: method, path (no
/// query: it is not needed, and may carry what a client typed), status,
/// time taken, and the peer's address (behind the shipped nginx, nginx;
/// nginx's own log has the client).
fn with_access_log(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(|request: &Request| {
                let peer = request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map_or_else(String::new, |c| c.0.ip().to_string());
                let path: String = request.uri().path().chars().take(200).collect();
                tracing::info_span!("request", method = %request.method(), path, client = peer)
            })
            .on_request(())
            .on_response(
                |response: &Response, took: Duration, span: &tracing::Span| {
                    tracing::info!(
                        parent: span,
                        status = response.status().as_u16(),
                        ms = %format_args!("{:.2}", took.as_secs_f64() * 1000.0),
                        "answered"
                    );
                },
            )
            .on_body_chunk(())
            .on_eos(())
            .on_failure(()),
    )
}

/// Refuses a state-changing request (any method but GET, HEAD, OPTIONS,
/// TRACE) that a browser sent from another site with what it holds for this
/// one: the session cookie, or a login that would set it (login CSRF). Runs
/// before every route, the fallback too.
///
/// - A request with a bearer token passes: a page of another site cannot
///   add one, and a bearer request ignores the cookie.
/// - `Sec-Fetch-Site` (every current browser sends it) must be `same-origin`
///   (or `none`: typed by the user); `same-site` is another site here (a
///   sibling subdomain).
/// - Without it, an `Origin` must name this server's host (`Host`, which
///   the shipped nginx site passes on).
/// - With neither, the request did not come from a browser's cross-site
///   form or fetch (browsers send `Origin` with every cross-origin POST):
///   a script or curl with a cookie jar, which passes.
///
/// The portal's forms carry a token of the session too: two checks, each
/// enough alone.
async fn same_site_only(request: Request, next: Next) -> Response {
    match cross_site(request.method(), request.headers(), request.uri()) {
        None => next.run(request).await,
        Some(why) => {
            let path = request.uri().path();
            tracing::warn!(
                "refused {} {:?}: {why}",
                request.method(),
                path.chars().take(80).collect::<String>()
            );
            if path == "/portal" || path.starts_with("/portal/") {
                crate::portal::cross_site_page()
            } else {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "cross-site request refused ({why}): a request that the session cookie authenticates must come from this site's own pages; a script sends Authorization: Bearer TOKEN"
                    ),
                )
                .into_response()
            }
        }
    }
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
