//! The create and edit forms of a user: their fields as typed, checked into
//! changes, and drawn.

use std::collections::HashMap;

use libdiycloud::model::limits::{Allocation, Limit, LimitChanges, Scalar, LIMITS};
use libdiycloud::model::user::Role;
use libdiycloud::usecases::admin::UserView;
use maud::{html, Markup};
use serde::Deserialize;

use super::html::{csrf_field, input, segment};
use super::visitor::FormToken;
use crate::error::ApiError;

/// The fields of the create and edit forms, as typed.
#[derive(Deserialize, Default)]
pub(super) struct UserForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) username: String,
    #[serde(default)]
    pub(super) password: String,
    #[serde(default)]
    pub(super) role: String,
    #[serde(default)]
    pub(super) full_name: String,
    #[serde(default)]
    pub(super) email: String,
    #[serde(default)]
    pub(super) expires: String,
    /// One field per limit, by its key ([`LIMITS`]); an empty one keeps
    /// the current (or default) value. (Other fields a browser sends land
    /// here too, and are not read.)
    #[serde(flatten)]
    pub(super) limits: HashMap<String, String>,
    /// A checkbox: present when ticked.
    pub(super) system_account: Option<String>,
}

impl UserForm {
    pub(super) fn of(view: &UserView) -> Self {
        Self {
            username: view.username.clone(),
            role: view.role.to_string(),
            full_name: view.full_name.clone().unwrap_or_default(),
            email: view.email.clone().unwrap_or_default(),
            expires: view.expires.clone().unwrap_or_default(),
            limits: limit_fields(&view.allocation),
            ..Self::default()
        }
    }

    /// The limits typed; an empty field keeps the current (or default) value.
    pub(super) fn limits(&self) -> Result<LimitChanges, ApiError> {
        let mut changes = LimitChanges::default();
        for limit in LIMITS {
            let Some(text) = self.limits.get(limit.key).map(|t| t.trim()) else {
                continue;
            };
            if !text.is_empty() {
                changes
                    .set_scalar(limit, Scalar::Text(text))
                    .map_err(ApiError::invalid)?;
            }
        }
        Ok(changes)
    }

    pub(super) fn role(&self) -> Result<Role, ApiError> {
        match self.role.as_str() {
            "admin" => Ok(Role::Admin),
            "user" | "" => Ok(Role::User),
            other => Err(ApiError::invalid(format!(
                "role: {other:?} is neither user nor admin"
            ))),
        }
    }

    /// Full name, email and expiry as changes: an empty field clears it.
    pub(super) fn profile(&self) -> Result<Profile, ApiError> {
        let full_name = Some(self.full_name.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(v) = &full_name {
            libdiycloud::model::text::full_name(v)
                .map_err(|e| ApiError::invalid(format!("full name: {e}")))?;
        }
        let email = Some(self.email.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(v) = &email {
            libdiycloud::model::text::email(v)
                .map_err(|e| ApiError::invalid(format!("email: {e}")))?;
        }
        let expires = match self.expires.trim() {
            "" | "never" => None,
            day => Some(
                day.parse()
                    .map_err(|e| ApiError::invalid(format!("expires: {e}")))?,
            ),
        };
        Ok(Profile {
            full_name,
            email,
            expires,
        })
    }
}

impl FormToken for UserForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

/// The profile fields of a form, checked; `None` clears a field.
pub(super) struct Profile {
    pub(super) full_name: Option<String>,
    pub(super) email: Option<String>,
    pub(super) expires: Option<libdiycloud::model::Date>,
}

/// A form's limit fields, filled with `allocation`.
pub(super) fn limit_fields(allocation: &Allocation) -> HashMap<String, String> {
    allocation
        .texts()
        .into_iter()
        .map(|(key, text)| (key.to_owned(), text))
        .collect()
}

/// The create (no `name`) or edit form.
pub(super) fn user_form(csrf: &str, form: &UserForm, name: Option<&str>) -> Markup {
    let action = match name {
        Some(name) => format!("/portal/admin/users/{}", segment(name)),
        None => "/portal/admin/new".into(),
    };
    let creating = name.is_none();
    let limit_label = |limit: &Limit| {
        format!(
            "{}, e.g. {} (empty: the default)",
            limit.label, limit.example
        )
    };
    html! {
        form class="card grid" method="post" action=(action) {
            (csrf_field(csrf))
            @if creating {
                (input("username", "Username", "text", &form.username)
                    .autocomplete("off")
                    .required()
                    .pattern("[a-z_][a-z0-9_-]*")
                    .maxlength(32))
                (input("password", "Password", "password", "")
                    .autocomplete("new-password")
                    .required())
            }
            label for="f-role" { "Role" }
            select id="f-role" name="role" {
                @for role in ["user", "admin"] {
                    option value=(role) selected[form.role == role] { (role) }
                }
            }
            (input("full_name", "Full name", "text", &form.full_name))
            (input("email", "Email", "email", &form.email))
            (input("expires", "Expires (YYYY-MM-DD, empty: never)", "text", &form.expires)
                .pattern(r"(\d{4}-\d{2}-\d{2}|never)?"))
            @for limit in LIMITS {
                (input(
                    limit.key,
                    &limit_label(limit),
                    "text",
                    form.limits.get(limit.key).map_or("", String::as_str),
                ))
            }
            @if creating {
                label class="check" {
                    input type="checkbox" name="system_account" value="on"
                        checked[form.system_account.is_some() || form.username.is_empty()];
                    " Create the Linux account (untick to link an account that exists)"
                }
            }
            button type="submit" {
                @if creating { "Create user" } @else { "Save" }
            }
        }
    }
}
