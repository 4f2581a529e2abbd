//! The routes of DESIGN §11. JSON fields are named like `slicectl`'s flags.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use libdiycloud::admin::{AddUser, Admin, SystemAccount, UserView};
use libdiycloud::auth::{self, ApiSession, Authenticator, PasswordChange, Refusal};
use libdiycloud::history;
use libdiycloud::model::limits::{Cpu, GpuList, Size, Tasks, Weight};
use libdiycloud::model::time::{Date, Timestamp};
use libdiycloud::model::user::Role;
use libdiycloud::model::{LimitChanges, Username};
use libdiycloud::store::UserChanges;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::client::{Caller, Client, DirectLocal, COOKIE_NAME};
use crate::error::ApiError;
use crate::AppState;

/// The largest request body: a user record is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The OpenAPI document of these routes.
const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/password", put(change_password))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route(
            "/api/v1/users/{name}",
            get(show_user).patch(modify_user).delete(delete_user),
        )
        .route("/api/v1/users/{name}/apply", post(apply_user))
        .route("/api/v1/users/{name}/unlock", post(unlock_user))
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/users/{name}/history", get(user_history))
        .route("/api/v1/history", get(node_history))
        .route("/metrics", get(metrics))
        .merge(crate::portal::routes())
        .fallback(|| async { ApiError::not_found("no such route: see /api/v1/openapi.json") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Runs `work` with the admin use cases as `caller`, on the blocking pool.
async fn with_admin<T: Send + 'static>(
    state: Arc<AppState>,
    caller: &Caller,
    work: impl FnOnce(&mut Admin<'_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(as_admin(state, caller.actor(), work)).await
}

/// `work` with the admin use cases as `actor` (for the audit log), as
/// blocking work.
pub(crate) fn as_admin<T>(
    state: Arc<AppState>,
    actor: String,
    work: impl FnOnce(&mut Admin<'_>) -> Result<T, ApiError>,
) -> impl FnOnce() -> Result<T, ApiError> {
    move || {
        let mut store = state.store()?;
        let mut admin = Admin::new(&mut store, &state.config, &state.ports, &actor, state.now());
        work(&mut admin)
    }
}

/// Runs blocking work (argon2, SQLite, D-Bus) on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

/// Runs blocking work that hashes a password (argon2) once it has a
/// hashing slot: one hash per CPU at a time (see `hashing`).
pub(crate) async fn hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let slot = state.hashing.slot().await?;
    blocking(move || slot.run(work)).await
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let db = blocking(move || Ok(state.store().map(|_| ())?)).await;
    match db {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "detail": e.detail})),
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

// ------------------------------------------------------------ sessions

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

async fn login(
    State(state): State<Arc<AppState>>,
    client: Client,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let password = Zeroizing::new(request.password);
    let now = state.now();
    state
        .limiter
        .attempt(client.ip, now)
        .map_err(ApiError::too_many)?;
    let ttl = state.config.api.session_ttl;
    match open_session(&state, client, "api", request.username, password, now).await? {
        Ok(session) => {
            let user = UserView::of(&session.user, &state.config, now);
            let mut response =
                Json(json!({"token": *session.token, "expires_in": ttl, "user": user}))
                    .into_response();
            set_session_cookie(&mut response, &session.token, ttl, client.https);
            Ok(response)
        }
        // The reason is in the log; the client learns only that it failed.
        Err(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "login refused: wrong username or password, or the account cannot log in now",
        )),
    }
}

/// A login at a front door (`api` or `portal`): the password checked on a
/// hashing slot, the session opened with the login's bookkeeping. A refusal
/// is logged with its reason; the front door decides what the client hears.
pub(crate) async fn open_session(
    state: &Arc<AppState>,
    client: Client,
    front: &'static str,
    name: String,
    password: Zeroizing<String>,
    now: Timestamp,
) -> Result<Result<ApiSession, Refusal>, ApiError> {
    let work = Arc::clone(state);
    let asked = name.clone();
    let opened = hashing(state, move || {
        let mut store = work.store()?;
        let actor = format!("{front}:{}", client.ip);
        let ttl_secs = i64::try_from(work.config.api.session_ttl).unwrap_or(i64::MAX);
        Ok(
            Authenticator::new(&mut store, &work.config, actor)?.open_api_session(
                &asked,
                password.as_bytes(),
                now,
                ttl_secs,
            )?,
        )
    })
    .await?;
    if let Err(refusal) = &opened {
        eprintln!(
            "diycloud-server: {front} login refused for {:?} from {}: {:?}",
            name.chars().take(40).collect::<String>(),
            client.ip,
            refusal.outcome
        );
    }
    Ok(opened)
}

/// A user's own password change, the current password checked like a
/// login, on a hashing slot.
pub(crate) async fn change_own_password(
    state: &Arc<AppState>,
    name: String,
    actor: String,
    old: Zeroizing<String>,
    new: Zeroizing<String>,
) -> Result<PasswordChange, ApiError> {
    let work = Arc::clone(state);
    hashing(state, move || {
        let mut store = work.store()?;
        Ok(
            Authenticator::new(&mut store, &work.config, actor)?.change_password(
                &name,
                old.as_bytes(),
                new.as_bytes(),
                work.now(),
            )?,
        )
    })
    .await
}

/// Ends the session of `token` (false: it had none).
pub(crate) async fn end_session(
    state: Arc<AppState>,
    token: String,
    actor: String,
) -> Result<bool, ApiError> {
    blocking(move || {
        let mut store = state.store()?;
        Ok(auth::close_api_session(
            &mut store,
            &token,
            &actor,
            state.now(),
        )?)
    })
    .await
}

/// The session cookie on `response`: HttpOnly, SameSite=Strict, Secure
/// where the client came over TLS.
pub(crate) fn set_session_cookie(response: &mut Response, token: &str, ttl: u64, https: bool) {
    let cookie = format!(
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={ttl}{}",
        if https { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

/// The session cookie cleared on `response`.
pub(crate) fn clear_session_cookie(response: &mut Response) {
    let clear = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

async fn logout(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let actor = caller.actor();
    end_session(state, caller.token, actor).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_session_cookie(&mut response);
    Ok(response)
}

async fn me(State(state): State<Arc<AppState>>, caller: Caller) -> Json<UserView> {
    Json(UserView::of(&caller.user, &state.config, state.now()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    current_password: String,
    new_password: String,
}

/// A user's own password change: the current password is checked like a
/// login (a wrong one counts toward the lockout); every session of the
/// user ends, this one too.
async fn change_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<PasswordRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(request) = body?;
    let (old, new) = (
        Zeroizing::new(request.current_password),
        Zeroizing::new(request.new_password),
    );
    let (name, actor) = (caller.user.username.to_string(), caller.actor());
    match change_own_password(&state, name, actor, old, new).await? {
        PasswordChange::Changed => Ok(StatusCode::NO_CONTENT),
        PasswordChange::Denied(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the current password is wrong",
        )),
        PasswordChange::Refused(violation) => {
            Err(ApiError::invalid(format!("new_password: {violation}")))
        }
    }
}

// ------------------------------------------------------------ users

/// A number or a text: `"cpu": 1.5` and `"cpu": "150%"` are both natural.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Integer(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Integer(n) => n.to_string(),
            Scalar::Float(x) => x.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// The limit fields of a request (an API body, a portal form), as given.
#[derive(Default)]
pub(crate) struct LimitFields {
    pub cpu: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub disk: Option<Scalar>,
    pub tasks: Option<Scalar>,
    pub gpus: Option<String>,
    pub cpu_weight: Option<Scalar>,
    pub io_weight: Option<Scalar>,
    pub memory_high: Option<Scalar>,
}

impl LimitFields {
    /// Each field parsed by the rule `slicectl` uses.
    pub(crate) fn changes(&self) -> Result<LimitChanges, ApiError> {
        Ok(LimitChanges {
            cpu: field::<Cpu>("cpu", &self.cpu)?,
            memory: field::<Size>("memory", &self.memory)?,
            disk: field::<Size>("disk", &self.disk)?,
            tasks: field::<Tasks>("tasks", &self.tasks)?,
            gpus: self
                .gpus
                .as_ref()
                .map(|g| {
                    g.parse::<GpuList>()
                        .map_err(|e| ApiError::invalid(format!("gpus: {e}")))
                })
                .transpose()?,
            cpu_weight: field::<Weight>("cpu_weight", &self.cpu_weight)?,
            io_weight: field::<Weight>("io_weight", &self.io_weight)?,
            memory_high: field::<Size>("memory_high", &self.memory_high)?,
        })
    }
}

/// The [`LimitFields`] of a request body: [`AddRequest`] and
/// [`ModifyRequest`] each name them (`deny_unknown_fields` rules out one
/// flattened struct), alike.
macro_rules! limit_fields {
    ($request:expr) => {
        LimitFields {
            cpu: $request.cpu,
            memory: $request.memory,
            disk: $request.disk,
            tasks: $request.tasks,
            gpus: $request.gpus,
            cpu_weight: $request.cpu_weight,
            io_weight: $request.io_weight,
            memory_high: $request.memory_high,
        }
    };
}

fn field<T: std::str::FromStr>(name: &str, value: &Option<Scalar>) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    value
        .as_ref()
        .map(|v| {
            v.text()
                .parse::<T>()
                .map_err(|e| ApiError::invalid(format!("{name}: {e}")))
        })
        .transpose()
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
    cpu: Option<Scalar>,
    memory: Option<Scalar>,
    disk: Option<Scalar>,
    tasks: Option<Scalar>,
    gpus: Option<String>,
    cpu_weight: Option<Scalar>,
    io_weight: Option<Scalar>,
    memory_high: Option<Scalar>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModifyRequest {
    role: Option<String>,
    email: Option<String>,
    full_name: Option<String>,
    expires: Option<String>,
    active: Option<bool>,
    cpu: Option<Scalar>,
    memory: Option<Scalar>,
    disk: Option<Scalar>,
    tasks: Option<Scalar>,
    gpus: Option<String>,
    cpu_weight: Option<Scalar>,
    io_weight: Option<Scalar>,
    memory_high: Option<Scalar>,
}

/// An admin's view of the users; 403 for anyone else.
async fn list_users(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.admin()?;
    with_admin(state, &caller, move |admin| Ok(Json(admin.users()?))).await
}

async fn add_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<AddRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin()?;
    let Json(request) = body?;
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
        limits: limit_fields!(request).changes()?,
        system_account: if request.system_account.unwrap_or(true) {
            SystemAccount::Create
        } else {
            SystemAccount::Link {
                allow_service_account: false,
            }
        },
    };
    let hashes = Arc::clone(&state);
    let work = as_admin(state, caller.actor(), move |admin| {
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
async fn show_user(
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

async fn modify_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<ModifyRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name?;
    caller.admin()?;
    let Json(request) = body?;
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
        limits: limit_fields!(request).changes()?,
    };
    // An admin who disabled or demoted themself could lock everyone out.
    if caller.user.username.as_str() == name
        && (changes.active == Some(false) || changes.role == Some(Role::User))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "an admin cannot disable or demote themself: another admin must",
        ));
    }
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
struct DeleteQuery {
    remove_home: Option<bool>,
}

async fn delete_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name?;
    let Query(query) = query?;
    caller.admin()?;
    if caller.user.username.as_str() == name {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "an admin cannot delete themself: another admin must",
        ));
    }
    with_admin(state, &caller, move |admin| {
        let deleted = admin.delete(&name, query.remove_home.unwrap_or(false))?;
        let mut document = json!(deleted);
        document["username"] = json!(name);
        document["deleted"] = json!(true);
        Ok(Json(document))
    })
    .await
}

async fn apply_user(
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

async fn unlock_user(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    user: Option<String>,
}

/// Usage: an admin's of everyone (or `?user=NAME`), a user's of themself.
async fn usage(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let Query(query) = query?;
    let me = caller.user.username.as_str().to_owned();
    let name = match (caller.is_admin(), query.user) {
        (true, name) => name,
        (false, None) => Some(me),
        (false, Some(name)) if name == me => Some(me),
        (false, Some(_)) => return Err(ApiError::forbidden()),
    };
    with_admin(state, &caller, move |admin| {
        let rows = admin.usage(name.as_deref())?;
        Ok(Json(rows.iter().map(|row| row.document()).collect()))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// The range a history request asks for: `to` defaults to now, `from` to
/// an hour before `to`.
fn range(query: &RangeQuery, now: Timestamp) -> Result<(Timestamp, Timestamp), ApiError> {
    let to = query.to.unwrap_or(now.0);
    let from = query.from.unwrap_or(to.saturating_sub(3600));
    if from > to {
        return Err(ApiError::invalid("from: must not be after to"));
    }
    Ok((Timestamp(from), Timestamp(to)))
}

fn history_document(
    state: &AppState,
    user: Option<&str>,
    from: Timestamp,
    to: Timestamp,
    points: Vec<libdiycloud::model::history::Point>,
) -> Value {
    json!({
        "username": user,
        "from": from,
        "to": to,
        "interval": state.config.history.interval,
        "points": points,
    })
}

/// A user's usage history: an admin's of anyone, a user's of themself.
async fn user_history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name?;
    let Query(query) = query?;
    if !caller.is_admin() && caller.user.username.as_str() != name {
        return Err(ApiError::forbidden());
    }
    let (from, to) = range(&query, state.now())?;
    blocking(move || {
        let store = state.store()?;
        if store.user(&name)?.is_none() {
            return Err(ApiError::not_found(format!("no such user: {name}")));
        }
        let points = history::series(&store, &state.config, Some(&name), from, to)?;
        Ok(Json(history_document(
            &state,
            Some(&name),
            from,
            to,
            points,
        )))
    })
    .await
}

/// The node's usage history (every user's added up): admins only.
async fn node_history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    caller.admin()?;
    let (from, to) = range(&query, state.now())?;
    blocking(move || {
        let store = state.store()?;
        let points = history::series(&store, &state.config, None, from, to)?;
        Ok(Json(history_document(&state, None, from, to, points)))
    })
    .await
}

/// Prometheus's scrape: for a direct local client, or an admin's token.
async fn metrics(
    State(state): State<Arc<AppState>>,
    local: DirectLocal,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    if !local.0 {
        caller?.admin()?;
    }
    let text = blocking(move || {
        let store = state.store()?;
        let now = state.now();
        let mut scrape = crate::metrics::scrape(&store, &state.config, &state.ports, now)?;
        if let Ok(totals) = state.limit_totals.lock() {
            scrape.limit_totals = totals.clone();
        }
        Ok(crate::metrics::render(&scrape, &state.config, now))
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
