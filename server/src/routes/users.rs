//! The admin's routes over users: list, add, show, modify, delete, apply,
//! unlock.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use libdiycloud::model::time::Date;
use libdiycloud::model::user::Role;
use libdiycloud::model::Username;
use libdiycloud::store::AuditEntry;
use libdiycloud::usecases::admin::{AddUser, Deleted, SystemAccount, UserChanges, UserView};
use libdiycloud::usecases::apply::ApplyReport;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::extract::{AdminCaller, Params, UserPath, WithLimits};
use super::openapi::Failure;
use super::with_admin;
use crate::client::Caller;
use crate::error::ApiError;
use crate::work::{as_admin, hashing};
use crate::AppState;

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

// The limits' keys (`LIMITS`) come beside these fields: `WithLimits` takes
// them out, and the document lists them (`openapi::with_limits`).
/// A new user, with any of the limits (the others: `[defaults]`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUser)]
pub(super) struct AddRequest {
    username: String,
    password: String,
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
    /// empty: none
    email: Option<String>,
    /// empty: none
    full_name: Option<String>,
    /// YYYY-MM-DD, or "never"
    expires: Option<String>,
    /// false: only the record (like --no-system-account)
    system_account: Option<bool>,
}

/// What a change sets: a field or limit left out stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserChanges)]
pub(super) struct ModifyRequest {
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
    /// empty: none
    email: Option<String>,
    /// empty: none
    full_name: Option<String>,
    /// YYYY-MM-DD, or "never"
    expires: Option<String>,
    active: Option<bool>,
}

/// A user added or changed, what to know about it, and what applying their
/// allocation did (`null`: nothing was applied).
#[derive(Serialize, ToSchema)]
pub(super) struct Changed {
    user: UserView,
    warnings: Vec<String>,
    applied: Option<ApplyReport>,
}

/// A user as `GET /users/{name}` shows them: an admin also reads the audit
/// log's newest entries about them.
#[derive(Serialize, ToSchema)]
pub(super) struct ShownUser {
    #[serde(flatten)]
    user: UserView,
    /// Newest first (admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<Vec<AuditEntry>>,
}

/// What deleting a user did.
#[derive(Serialize, ToSchema)]
pub(super) struct DeletedUser {
    username: String,
    /// Always true: an error answers otherwise.
    deleted: bool,
    #[serde(flatten)]
    report: Deleted,
}

/// What applying a user's allocation did, and whether every step applied.
#[derive(Serialize, ToSchema)]
pub(super) struct AppliedUser {
    /// No step failed and none was skipped.
    applied: bool,
    #[serde(flatten)]
    report: ApplyReport,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Unlocked {
    username: String,
    /// Whether the user was locked out before.
    was_locked: bool,
}

/// An admin's view of the users; 403 for anyone else.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "listUsers",
    summary = "Every user (admin)",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the users", body = Vec<UserView>),
        (status = 401, response = Failure), (status = 403, response = Failure),
    ))]
pub(super) async fn list_users(
    State(state): State<Arc<AppState>>,
    AdminCaller(caller): AdminCaller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    with_admin(state, &caller, move |admin| Ok(Json(admin.users()?))).await
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", operation_id = "addUser",
    summary = "Create a user (admin); the allocation is applied at once",
    security(("bearer" = []), ("cookie" = [])),
    request_body = AddRequest,
    responses(
        (status = 201, description = "created", body = Changed),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 409, response = Failure),
        (status = 413, response = Failure), (status = 415, response = Failure),
        (status = 422, response = Failure), (status = 500, response = Failure),
    ))]
pub(super) async fn add_user(
    State(state): State<Arc<AppState>>,
    AdminCaller(caller): AdminCaller,
    WithLimits(request, limits): WithLimits<AddRequest>,
) -> Result<(StatusCode, Json<Changed>), ApiError> {
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
            Json(Changed {
                user: added.user,
                warnings: added.warnings,
                applied: Some(added.applied),
            }),
        ))
    });
    hashing(&hashes, work).await
}

/// An admin sees anyone; a user only themself (403 for others).
#[utoipa::path(get, path = "/api/v1/users/{name}", tag = "users", operation_id = "showUser",
    summary = "One user (admin: anyone, with the audit log; a user: themself)",
    security(("bearer" = []), ("cookie" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "the user", body = ShownUser),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 404, response = Failure),
    ))]
pub(super) async fn show_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    UserPath(name): UserPath,
) -> Result<Json<ShownUser>, ApiError> {
    let is_admin = caller.is_admin();
    if !is_admin && caller.user.username.as_str() != name {
        return Err(ApiError::forbidden());
    }
    with_admin(state, &caller, move |admin| {
        let (user, log) = admin.show(&name, 20)?;
        Ok(Json(ShownUser {
            user,
            audit: is_admin.then_some(log),
        }))
    })
    .await
}

#[utoipa::path(patch, path = "/api/v1/users/{name}", tag = "users", operation_id = "modifyUser",
    summary = "Change a user's profile, state or limits (admin); limits are applied at once",
    security(("bearer" = []), ("cookie" = [])),
    params(("name" = String, Path)),
    request_body = ModifyRequest,
    responses(
        (status = 200, description = "changed", body = Changed),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 404, response = Failure),
        (status = 409, response = Failure), (status = 413, response = Failure),
        (status = 415, response = Failure), (status = 422, response = Failure),
        (status = 500, response = Failure),
    ))]
pub(super) async fn modify_user(
    State(state): State<Arc<AppState>>,
    AdminCaller(caller): AdminCaller,
    UserPath(name): UserPath,
    WithLimits(request, limits): WithLimits<ModifyRequest>,
) -> Result<Json<Changed>, ApiError> {
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
        Ok(Json(Changed {
            user: modified.user,
            warnings: modified.warnings,
            applied: modified.applied,
        }))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteQuery {
    /// Also remove the home directory of the system account slicectl made.
    remove_home: Option<bool>,
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", operation_id = "deleteUser",
    summary = "Delete a user (admin), and the system account slicectl created",
    security(("bearer" = []), ("cookie" = [])),
    params(("name" = String, Path), DeleteQuery),
    responses(
        (status = 200, description = "deleted: what was removed", body = DeletedUser),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 404, response = Failure),
        (status = 409, response = Failure), (status = 500, response = Failure),
    ))]
pub(super) async fn delete_user(
    State(state): State<Arc<AppState>>,
    AdminCaller(caller): AdminCaller,
    UserPath(name): UserPath,
    Params(query): Params<DeleteQuery>,
) -> Result<Json<DeletedUser>, ApiError> {
    with_admin(state, &caller, move |admin| {
        let report = admin.delete(&name, query.remove_home.unwrap_or(false))?;
        Ok(Json(DeletedUser {
            username: name,
            deleted: true,
            report,
        }))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/users/{name}/apply", tag = "users", operation_id = "applyUser",
    summary = "Bring the user's slice, quotas and GPUs to their allocation now (admin)",
    security(("bearer" = []), ("cookie" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "what each step did", body = AppliedUser),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 404, response = Failure),
        (status = 500, response = Failure),
    ))]
pub(super) async fn apply_user(
    State(state): State<Arc<AppState>>,
    AdminCaller(caller): AdminCaller,
    UserPath(name): UserPath,
) -> Result<Json<AppliedUser>, ApiError> {
    with_admin(state, &caller, move |admin| {
        let reports = admin.apply(Some(&name))?;
        let report = reports
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(format!("no such user: {name}")))?;
        Ok(Json(AppliedUser {
            applied: report.error().is_none() && report.skipped().is_none(),
            report,
        }))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/users/{name}/unlock", tag = "users", operation_id = "unlockUser",
    summary = "Clear a lockout (admin)",
    security(("bearer" = []), ("cookie" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "unlocked", body = Unlocked),
        (status = 400, response = Failure), (status = 401, response = Failure),
        (status = 403, response = Failure), (status = 404, response = Failure),
    ))]
pub(super) async fn unlock_user(
    State(state): State<Arc<AppState>>,
    AdminCaller(caller): AdminCaller,
    UserPath(name): UserPath,
) -> Result<Json<Unlocked>, ApiError> {
    with_admin(state, &caller, move |admin| {
        let was_locked = admin.unlock(&name)?;
        Ok(Json(Unlocked {
            username: name,
            was_locked,
        }))
    })
    .await
}
