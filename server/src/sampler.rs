//! The usage history's sampler: every `[history] interval`, every active
//! user's usage into the database (`libdiycloud::history::sample`), off
//! the async workers.

use std::sync::Arc;
use std::time::Duration;

use libdiycloud::history;
use tokio::time::MissedTickBehavior;

use crate::AppState;

/// Samples until the runtime stops. A failure is logged once, and again
/// only after sampling worked in between (a node without systemd would
/// otherwise log every interval).
pub async fn sample_forever(state: Arc<AppState>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(state.config.history.interval));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut failing = false;
    let mut said: Vec<String> = Vec::new();
    loop {
        ticks.tick().await;
        let work = Arc::clone(&state);
        let sampled = tokio::task::spawn_blocking(move || {
            let mut store = work.store()?;
            history::sample(&work.ports, &work.config, &mut store, work.now())
        })
        .await;
        match sampled {
            Ok(Ok(report)) => {
                if failing {
                    eprintln!("diycloud-server: usage history: sampling works again");
                    failing = false;
                }
                // Users whose usage cannot be read: said when that changes.
                if report.errors != said {
                    for error in &report.errors {
                        eprintln!("diycloud-server: usage history: {error}");
                    }
                    said = report.errors;
                }
            }
            Ok(Err(e)) => failed(&mut failing, &e),
            Err(e) => failed(&mut failing, &e),
        }
    }
}

fn failed(failing: &mut bool, error: &dyn std::fmt::Display) {
    if !*failing {
        eprintln!(
            "diycloud-server: usage history: cannot sample: {error} (said once until it works again)"
        );
        *failing = true;
    }
}
