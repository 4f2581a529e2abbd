//! The limit-event watcher (`[events] interval`): each round on a blocking
//! thread, its totals into the app state for `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use libdiycloud::adapters::kernel::SystemKernel;
use libdiycloud::store::node_name;
use libdiycloud::usecases::watch::Watcher;
use tokio::time::MissedTickBehavior;

use crate::sampler::Said;
use crate::AppState;

/// Watches until the runtime stops, logging as [`Said`] does.
pub async fn watch_forever(state: Arc<AppState>) {
    let kernel = match SystemKernel::open() {
        Ok((kernel, None)) => kernel,
        Ok((kernel, Some(why))) => {
            tracing::warn!(
                "limit events: {why}; OOM kills are counted without the processes' names"
            );
            kernel
        }
        Err(e) => {
            tracing::warn!("limit events: not watched: {e}");
            return;
        }
    };
    let mut watcher = Some(Watcher::new(kernel, node_name()));
    let mut ticks = tokio::time::interval(Duration::from_secs(state.config.events.interval));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut said = Said::new("limit events", "watching", "cannot record");
    loop {
        ticks.tick().await;
        let Some(mut moved) = watcher.take() else {
            return;
        };
        let work = Arc::clone(&state);
        let round = tokio::task::spawn_blocking(move || {
            let result = work.store().and_then(|mut store| {
                moved.watch(&work.ports, &work.config, &mut store, work.now())
            });
            if let Ok(mut totals) = work.limit_totals.lock() {
                *totals = moved.totals().clone();
            }
            (moved, result)
        })
        .await;
        let (back, result) = match round {
            Ok(done) => done,
            Err(e) => {
                tracing::error!("limit events: the watcher stopped: {e}");
                return;
            }
        };
        watcher = Some(back);
        match result {
            Ok(report) => {
                for event in &report.events {
                    tracing::info!(
                        "limit event: {} {} x{}{}",
                        event.username,
                        event.kind.name(),
                        event.count,
                        match event.processes.is_empty() {
                            true => String::new(),
                            false => format!(" ({})", event.processes.join(", ")),
                        }
                    );
                }
                said.worked(report.errors);
            }
            Err(e) => said.failed(&e),
        }
    }
}
