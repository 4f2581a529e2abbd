//! The API's extractors: what a handler needs, refused before it runs with
//! the API's own error body (`{"error", "detail"}`), so that each handler
//! reads as what it does.
//!
//! Axum runs them in the order of the handler's arguments, the body last:
//! who is asking (401) comes first, then whether they may (403), then the
//! address, the query and the body (400/413/415/422).

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::Json;
use libdiycloud::model::limits::{Scalar, LIMITS};
use libdiycloud::model::LimitChanges;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::client::Caller;
use crate::error::ApiError;
use crate::AppState;

/// A caller with the admin role; 401 without a session, 403 for a user.
pub(crate) struct AdminCaller(pub Caller);

impl FromRequestParts<Arc<AppState>> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.admin()?;
        Ok(Self(caller))
    }
}

/// The `{name}` of a user's address, as sent (the use case says whether
/// such a user exists).
pub(crate) struct UserPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(name))
    }
}

/// The query string as `T`, which refuses parameters it does not know.
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(params) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(params))
    }
}

/// A JSON body as `T`.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(body) = Json::<T>::from_request(request, state).await?;
        Ok(Self(body))
    }
}

/// A body that may carry limits (adding or changing a user): each limit's
/// key ([`LIMITS`]) is taken out and parsed by the limit's rule (a text, or
/// a number where the limit takes one: `"cpu": 1.5` and `"cpu": "150%"` are
/// both natural; `null` keeps it), and the rest is read as `T`, which
/// refuses fields it does not know.
pub(crate) struct WithLimits<T>(pub T, pub LimitChanges);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for WithLimits<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Body(body) = Body::<Map<String, Value>>::from_request(request, state).await?;
        let (fields, limits) = split_limits(body)?;
        Ok(Self(fields, limits))
    }
}

fn split_limits<T: DeserializeOwned>(
    mut body: Map<String, Value>,
) -> Result<(T, LimitChanges), ApiError> {
    let mut limits = LimitChanges::default();
    for limit in LIMITS {
        let set = match body.remove(limit.key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(text)) => limits.set_scalar(limit, Scalar::Text(&text)),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(n) => limits.set_scalar(limit, Scalar::Integer(n)),
                None => limits.set_scalar(limit, Scalar::Float(n.as_f64().unwrap_or(f64::NAN))),
            },
            Some(_) => Err(format!(
                "{}: expected {}",
                limit.key,
                limit.number.expected()
            )),
        };
        set.map_err(ApiError::invalid)?;
    }
    let fields = serde_json::from_value(Value::Object(body)).map_err(|e| {
        ApiError::invalid(format!(
            "Failed to deserialize the JSON body into the target type: {e}"
        ))
    })?;
    Ok((fields, limits))
}
