//! The routes of DESIGN §11. JSON fields are named like `slicectl`'s flags.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use libdiycloud::config::ApiConfig;
use libdiycloud::model::limits::{Number, Scalar, LIMITS};
use libdiycloud::model::time::{Date, Timestamp};
use libdiycloud::model::user::Role;
use libdiycloud::model::{LimitChanges, Username};
use libdiycloud::system::SystemAdmin;
use libdiycloud::usecases::admin::{AddUser, Admin, SystemAccount, UserChanges, UserView};
use libdiycloud::usecases::auth::{self, ApiSession, Authenticator, PasswordChange, Refusal};
use libdiycloud::usecases::history;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::client::{cookie_name, Caller, Client, DirectLocal};
use crate::error::ApiError;
use crate::AppState;

/// The largest request body: a user record is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The OpenAPI document of these routes.
const OPENAPI: &str = include_str!("openapi.json");

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

/// Every route, the API's and the portal's. The router is made from this
/// list and nothing else, and [`routes`] hands it to the tests: the CSRF
/// matrix walks every state-changing route, so a new one cannot escape it.
fn table() -> Vec<Route> {
    let mut table = vec![
        at(Method::GET, "/healthz", healthz),
        at(Method::GET, "/api/v1/openapi.json", openapi),
        at(Method::POST, "/api/v1/auth/login", login),
        at(Method::POST, "/api/v1/auth/logout", logout),
        at(Method::GET, "/api/v1/me", me),
        at(Method::PUT, "/api/v1/me/password", change_password),
        at(Method::GET, "/api/v1/users", list_users),
        at(Method::POST, "/api/v1/users", add_user),
        at(Method::GET, "/api/v1/users/{name}", show_user),
        at(Method::PATCH, "/api/v1/users/{name}", modify_user),
        at(Method::DELETE, "/api/v1/users/{name}", delete_user),
        at(Method::POST, "/api/v1/users/{name}/apply", apply_user),
        at(Method::POST, "/api/v1/users/{name}/unlock", unlock_user),
        at(Method::GET, "/api/v1/usage", usage),
        at(Method::GET, "/api/v1/users/{name}/history", user_history),
        at(Method::GET, "/api/v1/history", node_history),
        at(Method::GET, "/metrics", metrics),
    ];
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
    table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .fallback(|| async { ApiError::not_found("no such route: see /api/v1/openapi.json") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(same_site_only))
        .with_state(state)
}

// ------------------------------------------------------------ CSRF

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
            eprintln!(
                "diycloud-server: refused {} {:?}: {why}",
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

/// Why a request is cross-site, or `None` where it may go on (see
/// [`same_site_only`]).
pub(crate) fn cross_site(
    method: &Method,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Option<String> {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return None;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    if bearer {
        return None;
    }
    let shown = |v: &HeaderValue| {
        let text = String::from_utf8_lossy(v.as_bytes());
        format!("{:?}", text.chars().take(100).collect::<String>())
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            _ => Some(format!("Sec-Fetch-Site: {}", shown(site))),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let same = origin
        .to_str()
        .ok()
        .and_then(origin_authority)
        .zip(host)
        .is_some_and(|((scheme, authority), host)| same_authority(scheme, &authority, host));
    if same {
        None
    } else {
        Some(format!("Origin: {}", shown(origin)))
    }
}

/// An `Origin` header's scheme and `host[:port]`; `None` for `null` and
/// anything else that is not `scheme://authority`.
fn origin_authority(origin: &str) -> Option<(&str, String)> {
    let (scheme, authority) = origin.split_once("://")?;
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    valid.then(|| (scheme, authority.to_ascii_lowercase()))
}

/// Whether `authority` (of an Origin of `scheme`) is `host` (a Host header),
/// the scheme's default port written or not.
fn same_authority(scheme: &str, authority: &str, host: &str) -> bool {
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return false,
    };
    let bare = |a: &str| a.strip_suffix(default).unwrap_or(a).to_ascii_lowercase();
    bare(authority) == bare(host)
}

/// Runs `work` with the admin use cases as `caller`, on the blocking pool.
async fn with_admin<T: Send + 'static>(
    state: Arc<AppState>,
    caller: &Caller,
    work: impl FnOnce(&mut SystemAdmin<'_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let name = caller.user.username.to_string();
    blocking(as_admin(state, caller.actor(), name, work)).await
}

/// `work` with the admin use cases as `actor` (for the audit log), for the
/// admin whose user name is `caller`, as blocking work.
pub(crate) fn as_admin<T>(
    state: Arc<AppState>,
    actor: String,
    caller: String,
    work: impl FnOnce(&mut SystemAdmin<'_>) -> Result<T, ApiError>,
) -> impl FnOnce() -> Result<T, ApiError> {
    move || {
        let mut store = state.store()?;
        let mut admin = Admin::new(&mut store, &state.config, &state.ports, &actor, state.now())
            .from_the_web(&caller);
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

/// [`hashing`] for a login: 503 with Retry-After at once where
/// `[api] login_queue` checks wait already.
async fn login_hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let slot = state.hashing.login_slot().await?;
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
        openapi_document(),
    )
        .into_response()
}

/// The API's OpenAPI document: the hand-written one (`openapi.json`) with
/// one property per limit ([`LIMITS`]) in the request bodies that take
/// limits and in the user's view, so the schema lists what the code does.
pub fn openapi_document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document: Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        let schemas = &mut document["components"]["schemas"];
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
            if let Some(required) = schemas["User"]["required"].as_array_mut() {
                required.push(json!(limit.key));
            }
        }
        document.to_string()
    })
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
    // A token of the client's bucket; a failure keeps it (see `limiter`).
    let attempt = state
        .limiter
        .attempt(client.ip)
        .map_err(ApiError::too_many)?;
    let ttl = state.config.api.session_ttl;
    let opened = open_session(&state, client, "api", request.username, password, now).await;
    settle(attempt, &opened);
    let opened = match opened {
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
            return Ok(crate::hashing::unavailable(e))
        }
        opened => opened?,
    };
    match opened {
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

/// Gives a login's token back to its client's bucket unless the login
/// failed: it succeeded, or its password was never checked (503: the
/// queue of password checks was full).
pub(crate) fn settle<T>(
    attempt: crate::limiter::Attempt<'_>,
    opened: &Result<Result<T, Refusal>, ApiError>,
) {
    match opened {
        Ok(Ok(_)) => attempt.not_counted(),
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => attempt.not_counted(),
        _ => {}
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
    let opened = login_hashing(state, move || {
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

/// The session cookie on `response`: HttpOnly, SameSite=Strict, Path=/;
/// where the client came over TLS, Secure and named with the `__Host-`
/// prefix (see [`cookie_name`]).
pub(crate) fn set_session_cookie(response: &mut Response, token: &str, ttl: u64, https: bool) {
    session_cookie(response, token, ttl, https);
}

/// The session cookie cleared on `response` (by the name it has over
/// `https` or not).
pub(crate) fn clear_session_cookie(response: &mut Response, https: bool) {
    session_cookie(response, "", 0, https);
}

fn session_cookie(response: &mut Response, token: &str, max_age: u64, https: bool) {
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        cookie_name(https),
        if https { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

async fn logout(
    State(state): State<Arc<AppState>>,
    client: Client,
    caller: Caller,
) -> Result<Response, ApiError> {
    let actor = caller.actor();
    end_session(state, caller.token, actor).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_session_cookie(&mut response, client.https);
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
            Some(_) => Err(match limit.number {
                Number::No => format!("{}: expected a text", limit.key),
                Number::Integer | Number::Any => {
                    format!("{}: expected a text or a number", limit.key)
                }
            }),
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

/// Prometheus's scrape. The per-user series go to the scrape token of
/// `[api] metrics_token_file`, to an admin's session and, with `[api]
/// metrics_public`, to a local process asking directly; another local
/// process gets the series that name no user; anyone else needs a
/// credential (401). A credential that is not good is 401 (403 for a user's
/// session), never quietly answered with less.
async fn metrics(
    State(state): State<Arc<AppState>>,
    local: DirectLocal,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    let per_user = if headers.contains_key(header::AUTHORIZATION) {
        let sent = bearer(&headers).map(|t| Zeroizing::new(t.to_owned()));
        let work = Arc::clone(&state);
        let scraper = match sent {
            Some(sent) => blocking(move || Ok(is_scrape_token(&work.config.api, &sent))).await?,
            None => false,
        };
        if !scraper {
            caller?.admin()?;
        }
        true
    } else if local.0 {
        state.config.api.metrics_public || caller.is_ok_and(|c| c.is_admin())
    } else {
        caller?.admin()?;
        true
    };
    let text = blocking(move || {
        let store = state.store()?;
        let now = state.now();
        let mut scrape = crate::metrics::scrape(&store, &state.config, &state.ports, now)?;
        if let Ok(totals) = state.limit_totals.lock() {
            scrape.limit_totals = totals.clone();
        }
        let text = crate::metrics::render(&scrape, &state.config, now);
        let mut text = if per_user {
            text
        } else {
            crate::metrics::aggregates_only(&text)
        };
        crate::metrics::per_user_family(&mut text, per_user);
        Ok(text)
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

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `sent` is the scrape token of `[api] metrics_token_file` (read at
/// each scrape, as Prometheus reads its `credentials_file`), compared in
/// constant time. A file that every user may read or write, that cannot be
/// read, or that is empty, is no credential, and the log says why.
fn is_scrape_token(api: &ApiConfig, sent: &str) -> bool {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use subtle::ConstantTimeEq;

    let Some(path) = &api.metrics_token_file else {
        return false;
    };
    let refuse = |why: String| {
        eprintln!(
            "diycloud-server: [api] metrics_token_file {}: {why}; no scrape token is accepted",
            path.display()
        );
        false
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return refuse(e.to_string()),
    };
    match file.metadata() {
        Ok(meta) if meta.permissions().mode() & 0o006 != 0 => {
            return refuse(format!(
                "every user may read or change it (mode {:o}): `chmod o-rw` it",
                meta.permissions().mode() & 0o7777
            ))
        }
        Ok(_) => {}
        Err(e) => return refuse(e.to_string()),
    }
    let mut text = Zeroizing::new(String::new());
    if let Err(e) = file.read_to_string(&mut text) {
        return refuse(e.to_string());
    }
    let token = text.trim();
    if token.is_empty() {
        return refuse("it is empty".into());
    }
    token.as_bytes().ct_eq(sent.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, pairs: &[(&'static str, &str)]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        cross_site(&method, &headers, &axum::http::Uri::from_static("/x"))
    }

    #[test]
    fn an_origin_is_this_host_or_another_site() {
        let host = ("host", "portal.example.org");
        for origin in [
            "https://portal.example.org",
            "https://PORTAL.example.org",
            "https://portal.example.org:443",
            "http://portal.example.org",
        ] {
            assert_eq!(
                check(Method::POST, &[host, ("origin", origin)]),
                None,
                "{origin}"
            );
        }
        let with_port = ("host", "127.0.0.1:8480");
        assert_eq!(
            check(
                Method::POST,
                &[with_port, ("origin", "http://127.0.0.1:8480")]
            ),
            None
        );
        let v6 = ("host", "[::1]:8480");
        assert_eq!(
            check(Method::POST, &[v6, ("origin", "http://[::1]:8480")]),
            None
        );
        for origin in [
            "null",
            "https://evil.example",
            "https://portal.example.org.evil.example",
            "https://portal.example.org:8443",
            "http://127.0.0.1:8480",
            "file://",
            "https://portal.example.org/path",
            "https://user@portal.example.org",
        ] {
            let why = check(Method::DELETE, &[host, ("origin", origin)]);
            assert!(why.is_some_and(|w| w.starts_with("Origin")), "{origin}");
        }
        // No Host to compare with: refused.
        assert!(check(Method::POST, &[("origin", "https://portal.example.org")]).is_some());
    }

    #[test]
    fn fetch_metadata_decides_where_a_browser_sends_it() {
        let host = ("host", "portal.example.org");
        for site in ["same-origin", "none"] {
            assert_eq!(check(Method::POST, &[host, ("sec-fetch-site", site)]), None);
        }
        for site in ["same-site", "cross-site", "bogus"] {
            // Even beside an Origin of this host.
            let why = check(
                Method::PATCH,
                &[
                    host,
                    ("sec-fetch-site", site),
                    ("origin", "https://portal.example.org"),
                ],
            );
            assert!(
                why.is_some_and(|w| w.starts_with("Sec-Fetch-Site")),
                "{site}"
            );
        }
    }

    #[test]
    fn safe_methods_and_bearer_tokens_pass() {
        let foreign = [("host", "a.example"), ("origin", "https://evil.example")];
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(check(method, &foreign), None);
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(check(method.clone(), &foreign).is_some(), "{method}");
            let mut bearer = foreign.to_vec();
            bearer.push(("authorization", "Bearer abc"));
            assert_eq!(check(method.clone(), &bearer), None, "{method}");
            let mut basic = foreign.to_vec();
            basic.push(("authorization", "Basic abc"));
            assert!(check(method.clone(), &basic).is_some(), "{method}");
        }
        // Neither Origin nor Sec-Fetch-Site: not a browser's cross-site
        // request.
        assert_eq!(check(Method::POST, &[("host", "a.example")]), None);
    }

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
