//! A route as both front doors declare theirs.

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};

use crate::AppState;

/// One route: its method, its path and what serves it.
pub(crate) type Route = (Method, &'static str, MethodRouter<Arc<AppState>>);

/// The route of `method` on `path` to `handler`.
pub(crate) fn at<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or_else(|_| {
        unreachable!("a route's method is one of GET, POST, PUT, PATCH, DELETE")
    });
    (method, path, on(filter, handler))
}
