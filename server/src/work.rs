//! Running the use cases from async handlers: off the runtime, as an admin
//! (with the web's rules), and with a hashing slot for a password check.

use std::sync::Arc;

use libdiycloud::system::SystemAdmin;
use libdiycloud::usecases::admin::Admin;

use crate::error::ApiError;
use crate::AppState;

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
pub(crate) async fn login_hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let slot = state.hashing.login_slot().await?;
    blocking(move || slot.run(work)).await
}
