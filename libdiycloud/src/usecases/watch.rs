//! The limit-event watcher `slicectl serve` runs (`[events]`): every
//! interval, each user's slice counters and the kernel log's OOM kills,
//! into the database as limit events, with a running total per user for
//! `/metrics`.

use std::collections::{BTreeMap, HashMap};

use crate::config::Config;
use crate::model::events::{self, EventKind, LimitEvent, OomKill, SliceCounters};
use crate::model::time::Timestamp;
use crate::ports::{AccountPort, KernelPort, Ports};
use crate::store::{Store, StoreError};
use crate::usecases::apply;

/// What one user's events add up to since the watcher started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTotal {
    pub count: u64,
    pub throttled_usec: u64,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchReport {
    pub events: Vec<LimitEvent>,
    /// Rows written or added to.
    pub recorded: usize,
    /// Old events deleted by the retention bounds.
    pub pruned: u64,
    /// Users whose counters could not be read, and why.
    pub errors: Vec<String>,
}

/// The watcher's memory between rounds.
pub struct Watcher<K> {
    kernel: K,
    node: String,
    /// Each slice's counters at the last round.
    last: HashMap<u32, SliceCounters>,
    /// Whether a round ran: the first only takes the counters as they are
    /// (what happened before the watcher started is not known as events).
    started: bool,
    /// Kills read from the kernel log and not yet recorded (a round whose
    /// write failed leaves them to the next).
    kills: Vec<OomKill>,
    totals: BTreeMap<(String, EventKind), EventTotal>,
    /// Rounds recorded so far.
    rounds: u64,
}

/// How many quiet rounds may pass between two applications of the
/// retention bounds (an hour at the default interval).
const PRUNE_EVERY: u64 = 360;

impl<K: KernelPort> Watcher<K> {
    pub fn new(kernel: K, node: impl Into<String>) -> Self {
        Self {
            kernel,
            node: node.into(),
            last: HashMap::new(),
            started: false,
            kills: Vec::new(),
            totals: BTreeMap::new(),
            rounds: 0,
        }
    }

    /// One round at `now`: reads every user's slice and the kernel log,
    /// records the events, and applies `[events] keep` and `max_rows`.
    pub fn watch<S, A: AccountPort, Q, G>(
        &mut self,
        ports: &Ports<S, A, Q, G>,
        config: &Config,
        store: &mut Store,
        now: Timestamp,
    ) -> Result<WatchReport, StoreError> {
        let users = store.users()?;
        self.kills.extend(self.kernel.new_kills());
        let mut kills: HashMap<u32, Vec<String>> = HashMap::new();
        for kill in &self.kills {
            kills
                .entry(kill.slice_uid)
                .or_default()
                .push(kill.process.clone());
        }
        let mut report = WatchReport::default();
        let mut seen = HashMap::new();
        for user in &users {
            let uid = match apply::uid_of(ports, user) {
                Ok(Some(uid)) => uid,
                Ok(None) => continue,
                Err(e) => {
                    report.errors.push(format!("{}: {e}", user.username));
                    continue;
                }
            };
            let counters = match self.kernel.counters(uid) {
                Ok(counters) => counters,
                Err(e) => {
                    report.errors.push(format!("{}: {e}", user.username));
                    // Keep the last reading: the next round compares to it.
                    if let Some(last) = self.last.get(&uid) {
                        seen.insert(uid, *last);
                    }
                    continue;
                }
            };
            let delta = match (&counters, self.started) {
                (Some(now), true) => {
                    // A slice not seen at the last round is new: all of
                    // its counters happened since.
                    let before = self.last.get(&uid).copied().unwrap_or_default();
                    events::delta(&before, now)
                }
                _ => events::CounterDelta::default(),
            };
            if let Some(counters) = counters {
                seen.insert(uid, counters);
            }
            let killed = kills.remove(&uid).unwrap_or_default();
            report.events.extend(events::round_events(
                user.username.as_str(),
                &self.node,
                now,
                &user.allocation,
                delta,
                &killed,
            ));
        }
        let oldest = Timestamp(now.0.saturating_sub(seconds(config.events.keep)));
        let max_rows = config.events.max_rows;
        let events = &report.events;
        // A quiet round writes nothing; the bounds are applied with events,
        // and every PRUNE_EVERY rounds.
        let prune = self.rounds.is_multiple_of(PRUNE_EVERY);
        let (recorded, pruned) = match events.is_empty() && !prune {
            true => (0, 0),
            false => store.write(|tx| {
                let recorded = match events.is_empty() {
                    true => 0,
                    false => tx.record_limit_events(events)?,
                };
                Ok::<_, StoreError>((recorded, tx.prune_limit_events(oldest, max_rows)?))
            })?,
        };
        self.rounds += 1;
        // Recorded: the next round starts from here. (A failed write left
        // the last readings, so the next round's events include these.)
        self.last = seen;
        self.started = true;
        self.kills.clear();
        report.recorded = recorded;
        report.pruned = pruned;
        for event in &report.events {
            let total = self
                .totals
                .entry((event.username.clone(), event.kind))
                .or_default();
            total.count += event.count;
            total.throttled_usec += event.throttled_usec;
        }
        Ok(report)
    }

    /// Every user's events by kind since the watcher started.
    pub fn totals(&self) -> &BTreeMap<(String, EventKind), EventTotal> {
        &self.totals
    }
}

fn seconds(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
