//! The admin's routes over users: list, add, show, modify, delete, apply,
//! unlock.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use libdiycloud::model::limits::{Scalar, LIMITS};
use libdiycloud::model::time::Date;
use libdiycloud::model::user::Role;
use libdiycloud::model::{LimitChanges, Username};
use libdiycloud::usecases::admin::{AddUser, SystemAccount, UserChanges, UserView};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::with_admin;
use crate::client::Caller;
use crate::error::ApiError;
use crate::work::{as_admin, hashing};
use crate::AppState;

/// A request body that may carry limits (adding or changing a user): each
/// limit's key ([`LIMITS`]) is taken out and parsed by the limit's rule (a
/// text, or a number where the limit takes one: `"cpu": 1.5` and `"cpu":
/// "150%"` are both natural; `null` keeps it), and the rest is read as `T`,
/// which refuses fields it does not know.
fn body_with_limits<T: serde::de::DeserializeOwned>(
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<(T, LimitChanges), ApiError> {
    let Json(mut body) = body?;
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
    let request = serde_json::from_value(Value::Object(body)).map_err(|e| {
        ApiError::invalid(format!(
            "Failed to deserialize the JSON body into the target type: {e}"
        ))
    })?;
    Ok((request, limits))
}

fn role(value: &Option<String>) -> Result<Option<Role>, ApiError> {
    value
        .as_ref()
        .map(|r| {
            r.parse()
                .map_err(|e| ApiError::invalid(format!("role: {e}")))
        })
        .transpose()
}

/// `email`/`full_name`: checked like the CLI's; empty means none.
fn text(
    name: &str,
    value: &Option<String>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<Option<String>>, ApiError> {
    value
        .as_ref()
        .map(|v| {
            check(v)
                .map(|()| Some(v.clone()).filter(|v| !v.is_empty()))
                .map_err(|e| ApiError::invalid(format!("{name}: {e}")))
        })
        .transpose()
}

/// `expires`: `YYYY-MM-DD`, or `never` to clear it.
fn expires(value: &Option<String>) -> Result<Option<Option<Date>>, ApiError> {
    value
        .as_ref()
        .map(|v| match v.as_str() {
            "never" => Ok(None),
            day => day
                .parse::<Date>()
                .map(Some)
                .map_err(|e| ApiError::invalid(format!("expires: {e}, or 'never'"))),
        })
        .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    username: String,
    password: String,
    role: Option<String>,
    email: Option<String>,
    full_name: Option<String>,
    expires: Option<String>,
    /// false: only the record (like `--no-system-account`).
    system_account: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModifyRequest {
    role: Option<String>,
    email: Option<String>,
    full_name: Option<String>,
    expires: Option<String>,
    active: Option<bool>,
}

/// An admin's view of the users; 403 for anyone else.
pub(super) async fn list_users(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.admin()?;
    with_admin(state, &caller, move |admin| Ok(Json(admin.users()?))).await
}

pub(super) async fn add_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin()?;
    let (request, limits): (AddRequest, _) = body_with_limits(body)?;
    let password = Zeroizing::new(request.password.into_bytes());
    let add = AddUser {
        name: Username::parse_new(&request.username)
            .map_err(|e| ApiError::invalid(format!("username: {e}")))?,
        role: role(&request.role)?.unwrap_or(Role::User),
        email: text("email", &request.email, libdiycloud::model::text::email)?.flatten(),
        full_name: text(
            "full_name",
            &request.full_name,
            libdiycloud::model::text::full_name,
        )?
        .flatten(),
        expires: expires(&request.expires)?.flatten(),
        limits,
        system_account: if request.system_account.unwrap_or(true) {
            SystemAccount::Create
        } else {
            SystemAccount::Link {
                allow_service_account: false,
            }
        },
    };
    let hashes = Arc::clone(&state);
    let name = caller.user.username.to_string();
    let work = as_admin(state, caller.actor(), name, move |admin| {
        let mut source = move || Ok(password.clone());
        let added = admin.add(&add, &mut source)?;
        Ok((
            StatusCode::CREATED,
            Json(json!({
                "user": added.user,
                "warnings": added.warnings,
                "applied": added.applied,
            })),
        ))
    });
    hashing(&hashes, work).await
}

/// An admin sees anyone; a user only themself (403 for others).
pub(super) async fn show_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name?;
    let is_admin = caller.is_admin();
    if !is_admin && caller.user.username.as_str() != name {
        return Err(ApiError::forbidden());
    }
    with_admin(state, &caller, move |admin| {
        let (user, log) = admin.show(&name, 20)?;
        let mut document = json!(user);
        if is_admin {
            document["audit"] = json!(log);
        }
        Ok(Json(document))
    })
    .await
}

pub(super) async fn modify_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name?;
    caller.admin()?;
    let (request, limits): (ModifyRequest, _) = body_with_limits(body)?;
    let changes = UserChanges {
        role: role(&request.role)?,
        email: text("email", &request.email, libdiycloud::model::text::email)?,
        full_name: text(
            "full_name",
            &request.full_name,
            libdiycloud::model::text::full_name,
        )?,
        expires: expires(&request.expires)?,
        active: request.active,
        limits,
    };
    with_admin(state, &caller, move |admin| {
        let modified = admin.modify(&name, &changes)?;
        Ok(Json(json!({
            "user": modified.user,
            "warnings": modified.warnings,
            "applied": modified.applied,
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    remove_home: Option<bool>,
}

pub(super) async fn delete_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name?;
    let Query(query) = query?;
    caller.admin()?;
    with_admin(state, &caller, move |admin| {
        let deleted = admin.delete(&name, query.remove_home.unwrap_or(false))?;
        let mut document = json!(deleted);
        document["username"] = json!(name);
        document["deleted"] = json!(true);
        Ok(Json(document))
    })
    .await
}

pub(super) async fn apply_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name?;
    caller.admin()?;
    with_admin(state, &caller, move |admin| {
        let reports = admin.apply(Some(&name))?;
        let report = reports
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(format!("no such user: {name}")))?;
        let mut document = json!(report);
        document["applied"] = json!(report.error().is_none() && report.skipped().is_none());
        Ok(Json(document))
    })
    .await
}

pub(super) async fn unlock_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name?;
    caller.admin()?;
    with_admin(state, &caller, move |admin| {
        let was_locked = admin.unlock(&name)?;
        Ok(Json(json!({"username": name, "was_locked": was_locked})))
    })
    .await
}
