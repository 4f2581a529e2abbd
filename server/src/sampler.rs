//! The usage history's sampler: every `[history] interval`, every active
//! user's usage into the database (`libdiycloud::usecases::history::sample`), off
//! the async workers.

use std::sync::Arc;
use std::time::Duration;

use libdiycloud::model::time::Timestamp;
use libdiycloud::usecases::history;
use tokio::time::MissedTickBehavior;

use crate::AppState;

/// Samples until the runtime stops, logging as [`Said`] does.
pub async fn sample_forever(state: Arc<AppState>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(state.config.history.interval));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut said = Said::new("usage history", "sampling", "cannot sample");
    loop {
        ticks.tick().await;
        let work = Arc::clone(&state);
        let sampled = tokio::task::spawn_blocking(move || {
            let mut store = work.store()?;
            history::sample(&work.ports, &work.config, &mut store, work.now())
        })
        .await;
        match sampled {
            Ok(Ok(report)) => said.worked(report.errors),
            Ok(Err(e)) => said.failed(&e),
            Err(e) => said.failed(&e),
        }
    }
}

/// Prunes the audit log every `[audit] interval` to its `keep` and
/// `max_rows` until the runtime stops: every API and portal login adds an
/// entry, so without this the database grows with logins for ever.
pub async fn prune_audit_forever(state: Arc<AppState>) {
    let audit = state.config.audit;
    let mut ticks = tokio::time::interval(Duration::from_secs(audit.interval));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut said = Said::new("audit log", "pruning", "cannot prune");
    loop {
        ticks.tick().await;
        let work = Arc::clone(&state);
        let pruned = tokio::task::spawn_blocking(move || {
            let mut store = work.store()?;
            let keep = i64::try_from(audit.keep).unwrap_or(i64::MAX);
            let oldest = Timestamp(work.now().0.saturating_sub(keep));
            store.write(|tx| tx.prune_audit_log(oldest, audit.max_rows))
        })
        .await;
        match pruned {
            Ok(Ok(_)) => said.worked(Vec::new()),
            Ok(Err(e)) => said.failed(&e),
            Err(e) => said.failed(&e),
        }
    }
}

/// What a background loop logs: a failure once until a round works again,
/// and the per-user errors of a round when they change (a node without
/// systemd would otherwise log every interval).
pub(crate) struct Said {
    what: &'static str,
    doing: &'static str,
    cannot: &'static str,
    failing: bool,
    errors: Vec<String>,
}

impl Said {
    /// `what` names the loop in each line, `doing` what works again,
    /// `cannot` what failed.
    pub(crate) fn new(what: &'static str, doing: &'static str, cannot: &'static str) -> Self {
        Self {
            what,
            doing,
            cannot,
            failing: false,
            errors: Vec::new(),
        }
    }

    /// A round worked, with these per-user `errors`.
    pub(crate) fn worked(&mut self, errors: Vec<String>) {
        if self.failing {
            tracing::info!("{}: {} works again", self.what, self.doing);
            self.failing = false;
        }
        if errors != self.errors {
            for error in &errors {
                tracing::warn!("{}: {error}", self.what);
            }
            self.errors = errors;
        }
    }

    /// A round failed as a whole.
    pub(crate) fn failed(&mut self, error: &dyn std::fmt::Display) {
        if !self.failing {
            tracing::warn!(
                "{}: {}: {error} (said once until it works again)",
                self.what,
                self.cannot
            );
            self.failing = true;
        }
    }
}
