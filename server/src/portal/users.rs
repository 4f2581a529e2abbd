//! The admin's pages over one user: create, show, edit, enable or disable,
//! delete.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use libdiycloud::model::history::Point;
use libdiycloud::model::time::Timestamp;
use libdiycloud::model::user::User;
use libdiycloud::model::Username;
use libdiycloud::usecases::admin::{AddUser, Admin, SystemAccount, UserChanges, UserView};
use libdiycloud::usecases::history;
use maud::{html, Markup};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::applied::{after_apply, Change};
use super::home::{charts, done_message, limit_events, range_of, usage_now, PageQuery};
use super::html::{csrf_field, facts, notice, page, segment};
use super::user_form::{limit_fields, user_form, UserForm};
use super::visitor::{error_page, AdminVisitor, CheckedForm, FormToken, UserPath, Visitor};
use crate::error::ApiError;
use crate::work::{as_admin, blocking, hashing};
use crate::AppState;

pub(super) async fn new_user_page(
    State(state): State<Arc<AppState>>,
    AdminVisitor(visitor): AdminVisitor,
) -> Response {
    let defaults = &state.config.defaults;
    let form = UserForm {
        role: "user".into(),
        limits: limit_fields(defaults),
        ..UserForm::default()
    };
    page(
        StatusCode::OK,
        "New user",
        Some(&visitor.viewer()),
        html! {
            h1 { "New user" }
            (user_form(&visitor.csrf, &form, None))
        },
    )
}

pub(super) async fn create_user(
    State(state): State<Arc<AppState>>,
    AdminVisitor(visitor): AdminVisitor,
    CheckedForm(form): CheckedForm<UserForm>,
) -> Response {
    let again = |error: &ApiError, form: &UserForm| {
        page(
            error.status,
            "New user",
            Some(&visitor.viewer()),
            html! {
                h1 { "New user" }
                (notice("error", &error.detail))
                (user_form(&visitor.csrf, form, None))
            },
        )
    };
    let request = (|| {
        let name = Username::parse_new(form.username.trim())
            .map_err(|e| ApiError::invalid(format!("username: {e}")))?;
        let profile = form.profile()?;
        Ok::<_, ApiError>(AddUser {
            name,
            role: form.role()?,
            email: profile.email,
            full_name: profile.full_name,
            expires: profile.expires,
            limits: form.limits()?,
            system_account: if form.system_account.is_some() {
                SystemAccount::Create
            } else {
                SystemAccount::Link {
                    allow_service_account: false,
                }
            },
        })
    })();
    let request = match request {
        Ok(request) => request,
        Err(e) => return again(&e, &form),
    };
    let password = Zeroizing::new(form.password.clone().into_bytes());
    let work = as_admin(
        Arc::clone(&state),
        visitor.actor(),
        visitor.user.username.to_string(),
        move |admin| {
            let mut source = move || Ok(password.clone());
            Ok(admin.add(&request, &mut source)?)
        },
    );
    let added = hashing(&state, work).await;
    match added {
        Ok(added) => after_apply(
            &visitor.viewer(),
            &added.user.username,
            Change::Created,
            Some(&added.applied),
        ),
        Err(e) => again(&e, &form),
    }
}

/// One user, for an admin: the edit form, the state actions, the charts.
pub(super) async fn user_page(
    State(state): State<Arc<AppState>>,
    AdminVisitor(visitor): AdminVisitor,
    UserPath(name): UserPath,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let (range, secs) = range_of(&query);
    let now = state.now();
    let work = Arc::clone(&state);
    let asked = name.clone();
    let loaded = blocking(move || {
        let mut store = work.store()?;
        let user = store
            .user(&asked)?
            .ok_or_else(|| ApiError::not_found(format!("no such user: {asked}")))?;
        let points = history::series(
            &store,
            &work.config,
            Some(&asked),
            Timestamp(now.0 - secs),
            now,
        )?;
        let admin = Admin::new(&mut store, &work.config, &work.ports, "portal", now);
        let usage = admin
            .usage(Some(&asked))
            .ok()
            .and_then(|u| u.into_iter().next());
        Ok((user, points, usage))
    })
    .await;
    let (user, points, usage) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return error_page(Some(&visitor.viewer()), &e),
    };
    let view = UserView::of(&user, &state.config, now);
    let body = user_body(
        &visitor,
        &view,
        &user,
        None,
        &query,
        range,
        &points,
        usage.as_ref(),
        now,
        secs,
    );
    page(
        StatusCode::OK,
        &view.username,
        Some(&visitor.viewer()),
        body,
    )
}

#[allow(clippy::too_many_arguments)]
fn user_body(
    visitor: &Visitor,
    view: &UserView,
    user: &User,
    error: Option<(&ApiError, &UserForm)>,
    query: &PageQuery,
    range: &str,
    points: &[Point],
    usage: Option<&libdiycloud::usecases::admin::UserUsage>,
    now: Timestamp,
    secs: i64,
) -> Markup {
    let path = format!("/portal/admin/users/{}", segment(&view.username));
    let name = Some(view.username.as_str());
    let state = facts(&[
        ("State", view.state.clone()),
        ("Failed logins", view.failed_logins.to_string()),
        (
            "System account",
            view.uid.map_or("none".into(), |uid| format!("uid {uid}")),
        ),
        (
            "Last login",
            view.last_login.clone().unwrap_or_else(|| "never".into()),
        ),
    ]);
    html! {
        h1 { (view.username) }
        (done_message(query.done.as_deref()))
        @if let Some((e, _)) = error {
            (notice("error", &e.detail))
        }
        section class="card" {
            h2 { "State" }
            (state)
            form class="actions" method="post" action={ (path) "/state" } {
                (csrf_field(&visitor.csrf))
                @if view.active {
                    button type="submit" name="action" value="disable" { "Disable" }
                } @else {
                    button type="submit" name="action" value="enable" { "Enable" }
                }
                @if view.locked || view.failed_logins > 0 {
                    button type="submit" name="action" value="unlock" { "Unlock" }
                }
                button type="submit" name="action" value="apply" { "Apply the allocation again" }
            }
            p { a class="danger" href={ (path) "/delete" } { "Delete this user…" } }
        }
        section {
            h2 { "Profile and limits" }
            @match error {
                Some((_, form)) => (user_form(&visitor.csrf, form, name)),
                None => (user_form(&visitor.csrf, &UserForm::of(view), name)),
            }
        }
        section class="card" {
            h2 { "Using now" }
            (usage_now(usage))
        }
        (limit_events(usage))
        (charts(&format!("{path}?range="), range, points, now.0 - secs, now.0, Some(user)))
    }
}

pub(super) async fn save_user(
    State(state): State<Arc<AppState>>,
    AdminVisitor(visitor): AdminVisitor,
    UserPath(name): UserPath,
    CheckedForm(form): CheckedForm<UserForm>,
) -> Response {
    let changes = (|| {
        let profile = form.profile()?;
        let role = form.role()?;
        Ok(UserChanges {
            role: Some(role),
            email: Some(profile.email),
            full_name: Some(profile.full_name),
            expires: Some(profile.expires),
            active: None,
            limits: form.limits()?,
        })
    })();
    let target = name.clone();
    let saved = match changes {
        Ok(changes) => {
            blocking(as_admin(
                Arc::clone(&state),
                visitor.actor(),
                visitor.user.username.to_string(),
                move |admin| Ok(admin.modify(&target, &changes)?),
            ))
            .await
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(modified) => after_apply(
            &visitor.viewer(),
            &name,
            Change::Saved,
            modified.applied.as_ref(),
        ),
        Err(e) => {
            // The page again, with what was typed and what was wrong.
            let now = state.now();
            let work = Arc::clone(&state);
            let asked = name.clone();
            let user = blocking(move || Ok(work.store()?.user(&asked)?)).await;
            match user {
                Ok(Some(user)) => {
                    let view = UserView::of(&user, &state.config, now);
                    let query = PageQuery::default();
                    let body = user_body(
                        &visitor,
                        &view,
                        &user,
                        Some((&e, &form)),
                        &query,
                        "hour",
                        &[],
                        None,
                        now,
                        3600,
                    );
                    page(e.status, &view.username, Some(&visitor.viewer()), body)
                }
                _ => error_page(Some(&visitor.viewer()), &e),
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct StateForm {
    csrf: String,
    action: String,
}

impl FormToken for StateForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn change_state(
    State(state): State<Arc<AppState>>,
    AdminVisitor(visitor): AdminVisitor,
    UserPath(name): UserPath,
    CheckedForm(form): CheckedForm<StateForm>,
) -> Response {
    let action = form.action.clone();
    let target = name.clone();
    let done = blocking(as_admin(
        Arc::clone(&state),
        visitor.actor(),
        visitor.user.username.to_string(),
        move |admin| {
            let active = |active| UserChanges {
                active: Some(active),
                ..UserChanges::default()
            };
            // What applying reported, for "apply".
            let mut report = None;
            match action.as_str() {
                "disable" => admin.modify(&target, &active(false)).map(drop)?,
                "enable" => admin.modify(&target, &active(true)).map(drop)?,
                "unlock" => admin.unlock(&target).map(drop)?,
                "apply" => report = admin.apply(Some(&target))?.into_iter().next(),
                other => {
                    return Err(ApiError::invalid(format!(
                        "action: {other:?} is not one of disable, enable, unlock, apply"
                    )))
                }
            }
            let done = match action.as_str() {
                "disable" => "disabled",
                "enable" => "enabled",
                "unlock" => "unlocked",
                _ => "applied",
            };
            Ok((done, report))
        },
    ))
    .await;
    match done {
        Ok(("applied", report)) => {
            after_apply(&visitor.viewer(), &name, Change::Applied, report.as_ref())
        }
        Ok((done, _)) => Redirect::to(&format!(
            "/portal/admin/users/{}?done={done}",
            segment(&name)
        ))
        .into_response(),
        Err(e) => error_page(Some(&visitor.viewer()), &e),
    }
}

pub(super) async fn delete_page(
    AdminVisitor(visitor): AdminVisitor,
    UserPath(name): UserPath,
) -> Response {
    let path = format!("/portal/admin/users/{}", segment(&name));
    page(
        StatusCode::OK,
        "Delete user",
        Some(&visitor.viewer()),
        html! {
            h1 { "Delete " (name) "?" }
            (notice(
                "error",
                "The record, the allocation, the API sessions and the history go; a Linux account diycloud created is removed. This cannot be undone.",
            ))
            form class="card narrow" method="post" action={ (path) "/delete" } {
                (csrf_field(&visitor.csrf))
                label class="check" {
                    input type="checkbox" name="remove_home" value="on";
                    " Also remove their home directory (only for an account diycloud created)"
                }
                button class="danger" type="submit" { "Delete " (name) }
                " "
                a href=(path) { "Cancel" }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct DeleteForm {
    csrf: String,
    remove_home: Option<String>,
}

impl FormToken for DeleteForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn delete_user(
    State(state): State<Arc<AppState>>,
    AdminVisitor(visitor): AdminVisitor,
    UserPath(name): UserPath,
    CheckedForm(form): CheckedForm<DeleteForm>,
) -> Response {
    let remove_home = form.remove_home.is_some();
    let deleted = blocking(as_admin(
        Arc::clone(&state),
        visitor.actor(),
        visitor.user.username.to_string(),
        move |admin| Ok(admin.delete(&name, remove_home)?),
    ))
    .await;
    match deleted {
        Ok(_) => Redirect::to("/portal/admin?done=deleted").into_response(),
        Err(e) => error_page(Some(&visitor.viewer()), &e),
    }
}
