//! The apply use case: bring a user to their allocation, one step per
//! outside system (the slice now; the disk quota and GPUs next), each
//! through a small port and each reporting its own result. Session open,
//! `slicectl apply`, `user add`/`mod` (and later the REST API) all call this.
//!
//! The ports are async so that the use case decides what overlaps: session
//! open starts the connection to systemd, and the bus daemon answers the
//! handshake while the database lookup runs. Everything runs inside one
//! `block_on` per call, so no connection (and no thread of one) outlives it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;

use crate::model::slice::{slice_properties, user_slice, SliceProperty, SliceUsage};
use crate::model::User;
use crate::platform;
use crate::systemd::Systemd;

/// A failure of an outside system, as a port reports it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PortError(Box<dyn std::error::Error + Send + Sync>);

impl PortError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }

    /// An error that is only a message (fakes, simple adapters).
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

/// Where users' slices are sized and read: systemd.
pub trait SlicePort {
    type Link: SliceLink;
    /// Connects. The first poll must start the connection without waiting
    /// for an answer, so a caller can do other work while it completes.
    fn connect(&self) -> impl Future<Output = Result<Self::Link, PortError>>;
}

/// One connection made by a [`SlicePort`]; closed by its user.
pub trait SliceLink {
    /// Sets `properties` on `unit` (at run time, also before it exists).
    fn set_properties(
        &self,
        unit: &str,
        properties: &[SliceProperty],
    ) -> impl Future<Output = Result<(), PortError>>;
    /// Usage and limits of `unit`.
    fn usage(&self, unit: &str) -> impl Future<Output = Result<SliceUsage, PortError>>;
    fn close(self) -> impl Future<Output = ()>;
}

/// Where system accounts are looked up (NSS).
pub trait AccountPort {
    fn uid(&self, name: &str) -> Result<Option<u32>, PortError>;
}

/// The machine's own accounts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemAccounts;

impl AccountPort for SystemAccounts {
    fn uid(&self, name: &str) -> Result<Option<u32>, PortError> {
        platform::system_uid(name).map_err(PortError::new)
    }
}

/// Every outside system apply talks to.
#[derive(Debug, Clone, Default)]
pub struct Ports<S = Systemd, A = SystemAccounts> {
    pub slice: S,
    pub accounts: A,
}

impl Ports {
    /// The real ones: systemd on the system bus, the system's accounts.
    pub fn system() -> Self {
        Self::default()
    }
}

/// The outside systems a user is brought to their allocation on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// CPU, memory and tasks on `user-UID.slice`.
    Slice,
}

/// What one step came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum StepOutcome {
    /// `target` (e.g. the unit) now has `settings`.
    Applied {
        target: String,
        settings: Vec<String>,
    },
    /// Nothing to do for this user here, and why.
    Skipped { reason: String },
    /// The step failed; the allocation in the database is unchanged.
    Failed {
        target: Option<String>,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepReport {
    pub step: Step,
    #[serde(flatten)]
    pub outcome: StepOutcome,
}

/// What applying a user's allocation did, step by step, and what the
/// session needs beyond that.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    pub username: String,
    pub uid: Option<u32>,
    pub steps: Vec<StepReport>,
    /// Environment variables for the user's session (`pam_putenv`).
    pub env: BTreeMap<String, String>,
}

impl ApplyReport {
    pub fn failures(&self) -> impl Iterator<Item = (&StepReport, &str)> {
        self.steps.iter().filter_map(|s| match &s.outcome {
            StepOutcome::Failed { error, .. } => Some((s, error.as_str())),
            _ => None,
        })
    }

    /// No step failed.
    pub fn is_complete(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Every step was skipped: there was nothing to apply (the reason of
    /// the first), e.g. a user without a system account.
    pub fn skipped(&self) -> Option<&str> {
        let mut reasons = self.steps.iter().map(|s| match &s.outcome {
            StepOutcome::Skipped { reason } => Some(reason.as_str()),
            _ => None,
        });
        let first = reasons.next()??;
        reasons.all(|r| r.is_some()).then_some(first)
    }

    /// The failures in one line, for an error message.
    pub fn error(&self) -> Option<String> {
        let errors: Vec<String> = self
            .failures()
            .map(|(s, e)| match &s.outcome {
                StepOutcome::Failed {
                    target: Some(target),
                    ..
                } => format!("{target}: {e}"),
                _ => e.to_owned(),
            })
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }

    /// What was applied, one `target: settings` per step, for output and logs.
    pub fn applied(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| match &s.outcome {
                StepOutcome::Applied { target, settings } => {
                    Some(format!("{target} {}", settings.join(" ")))
                }
                _ => None,
            })
            .collect()
    }
}

/// Brings `user` to their allocation.
pub fn apply<S: SlicePort, A: AccountPort>(ports: &Ports<S, A>, user: &User) -> ApplyReport {
    crate::systemd::block_on(async {
        let connecting = pin!(ports.slice.connect());
        run_steps(ports, user, Poll::Pending, connecting).await
    })
}

/// Like [`apply`] for the user `lookup` finds (session open: a database
/// lookup), run while the connection to systemd is being made, so the two
/// overlap. `Ok(None)`: `lookup` found no user and nothing was sent.
pub fn apply_looked_up<S: SlicePort, A: AccountPort, E>(
    ports: &Ports<S, A>,
    lookup: impl FnOnce() -> Result<Option<User>, E>,
) -> Result<Option<ApplyReport>, E> {
    crate::systemd::block_on(async {
        let mut connecting = pin!(ports.slice.connect());
        // One poll sends the handshake; the lookup runs while it is answered.
        let early = std::future::poll_fn(|cx| Poll::Ready(connecting.as_mut().poll(cx))).await;
        let Some(user) = lookup()? else {
            return Ok(None);
        };
        Ok(Some(run_steps(ports, &user, early, connecting).await))
    })
}

/// Every step for `user`; `connecting` is the connection to systemd, already
/// polled once where `early` is not `Pending` (then it must not be again).
async fn run_steps<S: SlicePort, A: AccountPort>(
    ports: &Ports<S, A>,
    user: &User,
    early: Poll<Result<S::Link, PortError>>,
    connecting: Pin<&mut impl Future<Output = Result<S::Link, PortError>>>,
) -> ApplyReport {
    let uid = uid_of(ports, user);
    let slice = match &uid {
        Err(e) => failed(
            Step::Slice,
            None,
            format!("cannot look up the system account: {e}"),
        ),
        Ok(None) => skipped(Step::Slice, "no system account"),
        Ok(Some(uid)) => {
            let link = match early {
                Poll::Ready(link) => link,
                Poll::Pending => connecting.await,
            };
            slice_step(link, *uid, user).await
        }
    };
    ApplyReport {
        username: user.username.to_string(),
        uid: uid.ok().flatten(),
        steps: vec![slice],
        env: BTreeMap::new(),
    }
}

/// The user's uid: recorded at `user add`, else looked up (an account made
/// after the record, or linked without one); `None`: no system account.
fn uid_of<S, A: AccountPort>(ports: &Ports<S, A>, user: &User) -> Result<Option<u32>, PortError> {
    match user.uid {
        Some(uid) => Ok(Some(uid)),
        None => ports.accounts.uid(user.username.as_str()),
    }
}

async fn slice_step<L: SliceLink>(link: Result<L, PortError>, uid: u32, user: &User) -> StepReport {
    let unit = user_slice(uid);
    let link = match link {
        Ok(link) => link,
        Err(e) => return failed(Step::Slice, Some(unit), e.to_string()),
    };
    let properties = slice_properties(&user.allocation);
    let set = link.set_properties(&unit, &properties).await;
    link.close().await;
    match set {
        Ok(()) => StepReport {
            step: Step::Slice,
            outcome: StepOutcome::Applied {
                target: unit,
                settings: properties.iter().map(ToString::to_string).collect(),
            },
        },
        Err(e) => failed(Step::Slice, Some(unit), e.to_string()),
    }
}

fn skipped(step: Step, reason: &str) -> StepReport {
    StepReport {
        step,
        outcome: StepOutcome::Skipped {
            reason: reason.to_owned(),
        },
    }
}

fn failed(step: Step, target: Option<String>, error: String) -> StepReport {
    StepReport {
        step,
        outcome: StepOutcome::Failed { target, error },
    }
}

/// Usage of `user`'s slice: `Ok(None)` when they have no system account.
pub fn usage<S: SlicePort, A: AccountPort>(
    ports: &Ports<S, A>,
    user: &User,
) -> Result<Option<SliceUsage>, PortError> {
    let Some(uid) = uid_of(ports, user)? else {
        return Ok(None);
    };
    crate::systemd::block_on(async {
        let link = ports.slice.connect().await?;
        let usage = link.usage(&user_slice(uid)).await;
        link.close().await;
        usage.map(Some)
    })
}

#[cfg(test)]
pub(crate) mod fakes;
#[cfg(test)]
mod tests;
