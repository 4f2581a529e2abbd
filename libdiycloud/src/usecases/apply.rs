//! The apply use case: bring a user to their allocation, one step per
//! outside system (the slice, then the disk quota on each configured
//! filesystem; GPUs next), each through a small port and each reporting its
//! own result. Session open, `slicectl apply`, `user add`/`mod` (and later
//! the REST API) all call this.
//!
//! The slice port is async so that the use case decides what overlaps:
//! session open starts the connection to systemd, and the bus daemon
//! answers the handshake while the database lookup runs; the quota calls
//! (quick syscalls) run while systemd works on the slice. Everything runs
//! inside one `block_on` per call, so no connection (and no thread of one)
//! outlives it.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::task::Poll;

use crate::config::Config;
use crate::model::gpu::{self, GpuPlan};
use crate::model::quota::{QuotaLimits, QuotaState};
use crate::model::slice::{
    device_properties, slice_notes, slice_properties, user_slice, CgroupVersion, SliceProperty,
    SliceUsage,
};
use crate::model::{Allocation, User};
use crate::ports::{AccountPort, GpuPort, PortError, Ports, QuotaPort, SliceLink, SlicePort};

/// The outside systems a user is brought to their allocation on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// CPU, memory and tasks on `user-UID.slice`.
    Slice,
    /// The disk quota on one filesystem.
    Quota,
    /// The GPUs a user may open: the slice's device policy, the session's
    /// `CUDA_VISIBLE_DEVICES`.
    Gpus,
}

/// What one step came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum StepOutcome {
    /// `target` (the unit, the filesystem) now has `settings`; `changed`
    /// is false where it already had them and nothing was written.
    Applied {
        target: String,
        settings: Vec<String>,
        changed: bool,
        /// Applied, but probably not what was meant (a quota under use).
        #[serde(skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepReport {
    pub step: Step,
    #[serde(flatten)]
    pub outcome: StepOutcome,
}

/// What applying a user's allocation did, step by step, and what the
/// session needs beyond that.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

    /// What was applied, one `target settings` per step, for output and logs.
    pub fn applied(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| match &s.outcome {
                StepOutcome::Applied {
                    target,
                    settings,
                    changed,
                    ..
                } => Some(format!(
                    "{}{target} {}{}",
                    s.step.label(),
                    settings.join(" "),
                    if *changed { "" } else { " (already set)" }
                )),
                _ => None,
            })
            .collect()
    }

    /// The warnings of applied steps, each naming its target.
    pub fn warnings(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| match &s.outcome {
                StepOutcome::Applied {
                    target,
                    warning: Some(warning),
                    ..
                } => Some(format!("{}: {target}: {warning}", self.username)),
                _ => None,
            })
            .collect()
    }
}

impl Step {
    /// What a report line says before the target.
    fn label(self) -> &'static str {
        match self {
            Step::Slice => "",
            Step::Quota => "quota on ",
            Step::Gpus => "GPUs on ",
        }
    }
}

/// Brings `user` to their allocation, as `config` says for this node.
pub fn apply<S: SlicePort, A: AccountPort, Q: QuotaPort, G: GpuPort>(
    ports: &Ports<S, A, Q, G>,
    config: &Config,
    user: &User,
) -> ApplyReport {
    ports.slice.block_on(async {
        let connecting = pin!(ports.slice.connect());
        run_steps(ports, config, user, Poll::Pending, connecting).await
    })
}

/// Like [`apply`] for the user `lookup` finds (session open: a database
/// lookup), run while the connection to systemd is being made, so the two
/// overlap. `Ok(None)`: `lookup` found no user and nothing was sent.
pub fn apply_looked_up<S: SlicePort, A: AccountPort, Q: QuotaPort, G: GpuPort, E>(
    ports: &Ports<S, A, Q, G>,
    config: &Config,
    lookup: impl FnOnce() -> Result<Option<User>, E>,
) -> Result<Option<ApplyReport>, E> {
    ports.slice.block_on(async {
        let mut connecting = pin!(ports.slice.connect());
        // One poll sends the handshake; the lookup runs while it is answered.
        let early = std::future::poll_fn(|cx| Poll::Ready(connecting.as_mut().poll(cx))).await;
        let Some(user) = lookup()? else {
            return Ok(None);
        };
        Ok(Some(
            run_steps(ports, config, &user, early, connecting).await,
        ))
    })
}

/// Every step for `user`; `connecting` is the connection to systemd, already
/// polled once where `early` is not `Pending` (then it must not be again).
async fn run_steps<S: SlicePort, A: AccountPort, Q: QuotaPort, G: GpuPort>(
    ports: &Ports<S, A, Q, G>,
    config: &Config,
    user: &User,
    early: Poll<Result<S::Link, PortError>>,
    connecting: Pin<&mut impl Future<Output = Result<S::Link, PortError>>>,
) -> ApplyReport {
    let filesystems = &config.quota.filesystems;
    let uid = uid_of(ports, user);
    let mut env = BTreeMap::new();
    let steps = match &uid {
        Err(_) | Ok(None) => std::iter::once(without_uid(Step::Slice, None, &uid))
            .chain(quota_steps_without_uid(filesystems, &uid))
            .collect(),
        Ok(Some(uid)) => {
            // The device policy goes in the slice's one SetUnitProperties.
            let plan = ports
                .gpu
                .node()
                .map_err(|e| e.to_string())
                .and_then(|node| {
                    gpu::plan(&user.allocation.gpus, &node).map_err(|e| e.to_string())
                });
            let devices = match &plan {
                Ok(GpuPlan::Grant { rules, .. }) => device_properties(rules),
                _ => Vec::new(),
            };
            let version = ports
                .slice
                .cgroup_version()
                .map_err(|e| PortError::msg(format!("cannot tell the node's cgroup version: {e}")));
            let slice = async {
                let link = match early {
                    Poll::Ready(link) => link,
                    Poll::Pending => connecting.await,
                };
                slice_step(link, *uid, version, &user.allocation, &devices).await
            };
            // The quota calls run while systemd works on the slice.
            let limits = config.quota.policy.limits(user.allocation.disk);
            let (slice, quota) = alongside(slice, || {
                quota_steps(&ports.quota, filesystems, *uid, &limits)
            })
            .await;
            let gpus = gpu_step(plan, &slice, &mut env);
            std::iter::once(slice).chain(quota).chain(gpus).collect()
        }
    };
    ApplyReport {
        username: user.username.to_string(),
        uid: uid.ok().flatten(),
        steps,
        env,
    }
}

/// The GPU step's report, from the plan and what the slice step did (the
/// device policy was part of it): none on a node without GPUs. A grant
/// applied puts its environment into `env`.
fn gpu_step(
    plan: Result<GpuPlan, String>,
    slice: &StepReport,
    env: &mut BTreeMap<String, String>,
) -> Option<StepReport> {
    let (granted, grant_env) = match plan {
        Ok(GpuPlan::NoGpus) => return None,
        Err(e) => return Some(failed(Step::Gpus, None, e)),
        Ok(GpuPlan::Grant { granted, env, .. }) => (granted, env),
    };
    Some(match &slice.outcome {
        StepOutcome::Applied { target, .. } => {
            env.extend(grant_env);
            let mut settings: Vec<String> = granted
                .iter()
                .map(|g| match g.migs.as_slice() {
                    [] => format!("/dev/nvidia{}", g.minor),
                    migs => {
                        let names: Vec<String> =
                            migs.iter().map(|m| format!("{}/{}", m.gi, m.ci)).collect();
                        format!("/dev/nvidia{} MIG {}", g.minor, names.join(" "))
                    }
                })
                .collect();
            if settings.is_empty() {
                settings.push("none".into());
            }
            StepReport {
                step: Step::Gpus,
                outcome: StepOutcome::Applied {
                    target: target.clone(),
                    settings,
                    changed: true,
                    warning: None,
                },
            }
        }
        // The device policy went with the slice's properties: the slice
        // step's failure says why (not said twice).
        StepOutcome::Failed { .. } => skipped(Step::Gpus, "not applied: the slice step failed"),
        StepOutcome::Skipped { reason } => skipped(Step::Gpus, reason),
    })
}

/// Runs `work` while `future` waits on an outside system: polls `future`
/// once (it sends its request), runs `work`, then awaits `future`.
async fn alongside<F: Future, T>(future: F, work: impl FnOnce() -> T) -> (F::Output, T) {
    let mut future = pin!(future);
    let early = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    let done = work();
    let output = match early {
        Poll::Ready(output) => output,
        Poll::Pending => future.await,
    };
    (output, done)
}

/// One quota step per filesystem in `mount_points`, each bringing `uid`'s
/// quota there to `limits`.
fn quota_steps<Q: QuotaPort>(
    quota: &Q,
    mount_points: &[PathBuf],
    uid: u32,
    limits: &QuotaLimits,
) -> Vec<StepReport> {
    found_filesystems(quota, mount_points)
        .map(|(mount_point, found)| {
            let target = mount_point.display().to_string();
            match found {
                Ok(filesystem) => quota_step(quota, &filesystem, target, uid, limits),
                Err(e) => failed(Step::Quota, Some(target), e.to_string()),
            }
        })
        .collect()
}

/// Each of `mount_points` with what the port found there; the port is not
/// asked at all where none are configured (quotas off).
fn found_filesystems<'m, Q: QuotaPort>(
    quota: &Q,
    mount_points: &'m [PathBuf],
) -> impl Iterator<Item = (&'m PathBuf, Result<Q::Filesystem, PortError>)> {
    let found = if mount_points.is_empty() {
        Vec::new()
    } else {
        quota.filesystems(mount_points)
    };
    mount_points.iter().zip(found)
}

/// Brings `uid`'s quota on `filesystem` to `limits`: read, compare, and
/// write only where they differ (a session open usually finds them set).
fn quota_step<Q: QuotaPort>(
    quota: &Q,
    filesystem: &Q::Filesystem,
    target: String,
    uid: u32,
    limits: &QuotaLimits,
) -> StepReport {
    let state = match quota.get(filesystem, uid) {
        Ok(state) => state,
        Err(e) => return failed(Step::Quota, Some(target), e.to_string()),
    };
    let changed = state.limits != *limits;
    if changed {
        if let Err(e) = quota.set(filesystem, uid, limits) {
            return failed(Step::Quota, Some(target), e.to_string());
        }
    }
    StepReport {
        step: Step::Quota,
        outcome: StepOutcome::Applied {
            target,
            settings: limits.settings(),
            changed,
            warning: changed.then(|| state.over(limits)).flatten(),
        },
    }
}

/// Takes `user`'s quota limits off every configured filesystem (`user
/// del`): their uid may be given to someone else later.
pub fn clear_quotas<S, A: AccountPort, Q: QuotaPort, G>(
    ports: &Ports<S, A, Q, G>,
    config: &Config,
    user: &User,
) -> ApplyReport {
    let filesystems = &config.quota.filesystems;
    let uid = uid_of(ports, user);
    let steps = match &uid {
        Ok(Some(uid)) => quota_steps(&ports.quota, filesystems, *uid, &QuotaLimits::NONE),
        Err(_) | Ok(None) => quota_steps_without_uid(filesystems, &uid),
    };
    ApplyReport {
        username: user.username.to_string(),
        uid: uid.ok().flatten(),
        steps,
        env: BTreeMap::new(),
    }
}

/// A step that cannot run for want of a uid: failed where looking the
/// account up failed, skipped where there is no system account.
fn without_uid(
    step: Step,
    target: Option<String>,
    lookup: &Result<Option<u32>, PortError>,
) -> StepReport {
    match lookup {
        Err(e) => failed(
            step,
            target,
            format!("cannot look up the system account: {e}"),
        ),
        Ok(_) => skipped(step, "no system account"),
    }
}

/// [`without_uid`] for the quota step of each filesystem.
fn quota_steps_without_uid(
    filesystems: &[PathBuf],
    lookup: &Result<Option<u32>, PortError>,
) -> Vec<StepReport> {
    filesystems
        .iter()
        .map(|fs| without_uid(Step::Quota, Some(fs.display().to_string()), lookup))
        .collect()
}

/// The user's uid: the one this node's accounts (NSS) give for the name
/// now; `None`: no system account. Limits bind to it, never to the uid the
/// record kept: after `userdel` and `useradd`, or on a node whose uids
/// differ, that uid is someone else's. A record whose uid differs from the
/// account's is an error, which fails a managed user's session closed.
pub fn uid_of<S, A: AccountPort, Q, G>(
    ports: &Ports<S, A, Q, G>,
    user: &User,
) -> Result<Option<u32>, PortError> {
    let name = user.username.as_str();
    let now = ports.accounts.uid(name)?;
    match (user.uid, now) {
        (Some(recorded), Some(now)) if recorded != now => Err(PortError::msg(format!(
            "{name}: the record says uid {recorded}, but this node's accounts give uid {now} \
             (the account was made again, or uids differ between nodes): nothing is applied to \
             either; if uid {now} is {name}'s, run `slicectl user relink {name}`"
        ))),
        (Some(recorded), None) => Err(PortError::msg(format!(
            "{name}: the record says uid {recorded}, but this node has no account {name}: \
             nothing is applied; create the account (with uid {recorded}) or run \
             `slicectl user del {name}`"
        ))),
        (_, now) => Ok(now),
    }
}

/// Sets `allocation`'s properties for the node's cgroup `version` and
/// `devices` (the GPU step's, reported there) on `uid`'s slice in one call.
async fn slice_step<L: SliceLink>(
    link: Result<L, PortError>,
    uid: u32,
    version: Result<CgroupVersion, PortError>,
    allocation: &Allocation,
    devices: &[SliceProperty],
) -> StepReport {
    let unit = user_slice(uid);
    let link = match link {
        Ok(link) => link,
        Err(e) => return failed(Step::Slice, Some(unit), e.to_string()),
    };
    let version = match version {
        Ok(version) => version,
        Err(e) => {
            link.close().await;
            return failed(Step::Slice, Some(unit), e.to_string());
        }
    };
    let properties = slice_properties(allocation, version);
    let all: Vec<SliceProperty> = properties.iter().chain(devices).cloned().collect();
    let set = link.set_properties(&unit, &all).await;
    link.close().await;
    match set {
        Ok(()) => StepReport {
            step: Step::Slice,
            outcome: StepOutcome::Applied {
                target: unit,
                settings: properties.iter().map(ToString::to_string).collect(),
                changed: true,
                warning: slice_notes(allocation, version),
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

/// A user's disk usage and quota on one configured filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    pub filesystem: PathBuf,
    /// What the kernel holds, or why it could not be read.
    pub quota: Result<QuotaState, String>,
}

/// `user`'s usage and quota on every configured filesystem; empty when
/// they have no system account.
pub fn disk_usage<S, A: AccountPort, Q: QuotaPort, G>(
    ports: &Ports<S, A, Q, G>,
    config: &Config,
    user: &User,
) -> Result<Vec<DiskUsage>, PortError> {
    let Some(uid) = uid_of(ports, user)? else {
        return Ok(Vec::new());
    };
    Ok(found_filesystems(&ports.quota, &config.quota.filesystems)
        .map(|(mount_point, found)| DiskUsage {
            filesystem: mount_point.clone(),
            quota: found
                .and_then(|fs| ports.quota.get(&fs, uid))
                .map_err(|e| e.to_string()),
        })
        .collect())
}

/// Usage of `user`'s slice: `Ok(None)` when they have no system account.
pub fn usage<S: SlicePort, A: AccountPort, Q, G>(
    ports: &Ports<S, A, Q, G>,
    user: &User,
) -> Result<Option<SliceUsage>, PortError> {
    let Some(uid) = uid_of(ports, user)? else {
        return Ok(None);
    };
    ports.slice.block_on(async {
        let link = ports.slice.connect().await?;
        let usage = link.usage(&user_slice(uid)).await;
        link.close().await;
        usage.map(Some)
    })
}

#[cfg(test)]
mod tests;
