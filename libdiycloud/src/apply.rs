//! The apply use case: bring a user's slice to their allocation. Session
//! open, `slicectl apply` (and later the REST API) all call this.

use crate::cgroup::{self, Hierarchy, SliceProperty};
use crate::model::User;
use crate::platform::{self, AccountError};
use crate::systemd::{Systemd, SystemdError};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0} has no system account, so there is no slice to size")]
    NoSystemAccount(String),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("cannot detect the cgroup hierarchy: {0}")]
    Hierarchy(std::io::Error),
    #[error(transparent)]
    Systemd(#[from] SystemdError),
}

/// What was applied, for output and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedSlice {
    pub uid: u32,
    pub unit: String,
    pub properties: Vec<SliceProperty>,
}

/// The user's uid: recorded at `user add`, else looked up (an account made
/// after the record, or linked with --no-system-account).
pub fn resolve_uid(user: &User) -> Result<u32, ApplyError> {
    match user.uid {
        Some(uid) => Ok(uid),
        None => platform::system_uid(user.username.as_str())?
            .ok_or_else(|| ApplyError::NoSystemAccount(user.username.to_string())),
    }
}

/// Sizes `user-UID.slice` for `user` (runtime properties; systemd changes a
/// running slice live and remembers the values for one that has not started).
pub fn apply_slice(user: &User, systemd: &Systemd) -> Result<AppliedSlice, ApplyError> {
    let applied = slice_for(user)?;
    systemd.set_unit_properties(&applied.unit, &applied.properties)?;
    Ok(applied)
}

/// The slice `user` gets and its properties: what applying sends.
fn slice_for(user: &User) -> Result<AppliedSlice, ApplyError> {
    let uid = resolve_uid(user)?;
    let hierarchy = Hierarchy::detect().map_err(ApplyError::Hierarchy)?;
    Ok(AppliedSlice {
        uid,
        unit: cgroup::user_slice(uid),
        properties: cgroup::slice_properties(&user.allocation, hierarchy),
    })
}

/// A failure of the caller's lookup, or of applying.
#[derive(Debug)]
pub enum LookupOr<E> {
    Lookup(E),
    Apply(ApplyError),
}

impl<E> From<SystemdError> for LookupOr<E> {
    fn from(e: SystemdError) -> Self {
        LookupOr::Apply(ApplyError::Systemd(e))
    }
}

/// Like [`apply_slice`] for the user `lookup` finds, looked up while the
/// connection to systemd is being made, so the two overlap (session open:
/// a database lookup). `Ok(None)`: `lookup` found no user, nothing is sent.
pub fn apply_slice_of<E>(
    systemd: &Systemd,
    lookup: impl FnOnce() -> Result<Option<User>, E>,
) -> Result<Option<AppliedSlice>, LookupOr<E>> {
    let prepared = systemd.set_unit_properties_prepared(|| -> Result<_, LookupOr<E>> {
        let Some(user) = lookup().map_err(LookupOr::Lookup)? else {
            return Ok(None);
        };
        let slice = slice_for(&user).map_err(LookupOr::Apply)?;
        Ok(Some((slice.unit, slice.properties, slice.uid)))
    })?;
    Ok(prepared.map(|(unit, properties, uid)| AppliedSlice {
        uid,
        unit,
        properties,
    }))
}
