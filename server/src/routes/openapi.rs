//! The API's OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes and the bodies' types (`ToSchema`): a route or a field added
//! in the code is in the document, and the test below fails for a route of
//! the router that the document lacks (or the other way round).
//!
//! The limits are the one part read from a table rather than a type: each
//! limit of [`LIMITS`] is a property of the bodies that take limits and of
//! the user's view, with its help and syntax.

use std::sync::OnceLock;

use libdiycloud::model::limits::{Number, LIMITS};
use serde_json::{json, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::error::ErrorBody;

/// Any error: `{"error", "detail"}`.
#[derive(ToResponse)]
#[response(description = "an error")]
pub(crate) struct Failure(#[allow(dead_code)] ErrorBody);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "diycloud API",
        version = "1",
        description = "Users, limits and usage of a diycloud node. Log in at /api/v1/auth/login; send the token as Authorization: Bearer TOKEN (or the session cookie). Errors are {\"error\", \"detail\"}."
    ),
    paths(
        super::healthz,
        super::openapi,
        super::sessions::login,
        super::sessions::logout,
        super::sessions::me,
        super::sessions::change_password,
        super::users::list_users,
        super::users::add_user,
        super::users::show_user,
        super::users::modify_user,
        super::users::delete_user,
        super::users::apply_user,
        super::users::unlock_user,
        super::usage::usage,
        super::usage::user_history,
        super::usage::node_history,
        super::usage::metrics,
    ),
    components(schemas(ErrorBody), responses(Failure)),
    modifiers(&Credentials)
)]
struct ApiDoc;

/// The two ways to send a session: the bearer token or the cookie.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::client::COOKIE_NAME))),
        );
    }
}

/// The document, as served at `/api/v1/openapi.json` (made once).
pub fn openapi_document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        with_limits(&mut document["components"]["schemas"]);
        document.to_string()
    })
}

/// One property per limit in the bodies that take limits (a text, or a
/// number where the limit takes one) and in the user's view (required).
fn with_limits(schemas: &mut Value) {
    for limit in LIMITS {
        let text = json!({"type": "string"});
        let request = match limit.number.schema_type() {
            Some(number) => json!({"oneOf": [text, {"type": number}]}),
            None => text,
        };
        let view = json!({"type": match limit.number {
            Number::Integer => "integer",
            Number::No | Number::Any => "string",
        }});
        let described = |mut schema: Value| {
            schema["description"] = json!(format!("{} ({})", limit.help, limit.syntax));
            schema
        };
        for body in ["NewUser", "UserChanges"] {
            schemas[body]["properties"][limit.key] = described(request.clone());
        }
        schemas["User"]["properties"][limit.key] = described(view);
        match schemas["User"]["required"].as_array_mut() {
            Some(required) => required.push(json!(limit.key)),
            None => schemas["User"]["required"] = json!([limit.key]),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The document and the router list the same (method, path) pairs: a
    /// route added without its `#[utoipa::path]` (and its listing above)
    /// fails here, and so does a documented route that is not served.
    #[test]
    fn the_document_lists_every_route_of_the_router() {
        let document: Value = serde_json::from_str(openapi_document()).unwrap_or_default();
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(path, item)| {
                item.as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(key, _)| {
                        ["get", "put", "post", "delete", "patch"].contains(&key.as_str())
                    })
                    .map(move |(method, _)| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = crate::routes::api_routes()
            .into_iter()
            .map(|(method, path, _)| (method.to_string(), path.to_owned()))
            .collect();
        assert_eq!(documented, served);
    }
}
