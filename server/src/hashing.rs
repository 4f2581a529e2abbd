//! The gate of the password hashing: at most one argon2 run per CPU at a
//! time, each on a CPU of its own.
//!
//! Logins, password changes and new users each run one argon2 hash (19 MiB,
//! ~17 ms of one core). Two things cost throughput when many arrive at once,
//! both measured on 2 cores (bench_api):
//! - More hashes than CPUs only time-slice the CPUs between their working
//!   sets (4 at once: 88-93% of the throughput of 2; 8 at once: 77%), and
//!   each holds its memory: a flood from many clients would start a
//!   blocking thread and a hash per request. So a hash waits for a slot.
//! - The kernel places a woken thread near its waker, so two hashes often
//!   shared one CPU while the other idled until the load balancer moved one:
//!   logins reached 79-81% of cores / verify time. Pinned for the length of
//!   the hash, each slot to a CPU of its own: 91-95%.
//!
//! The pin lasts one hash and is undone after it; a CPU that can no longer
//! be had (the service's CPU set changed) is not an error: the hash then
//! runs wherever the kernel puts it.

use std::sync::{Arc, Mutex};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;

pub struct Hashing {
    permits: Arc<Semaphore>,
    /// The CPUs no hash runs on now (empty where they cannot be known).
    free: Arc<Mutex<Vec<usize>>>,
}

impl Hashing {
    /// One slot per CPU the process may use, at most as many as
    /// `available_parallelism` (which heeds a CPU quota).
    pub fn new() -> Self {
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut cpus = allowed_cpus();
        cpus.truncate(parallelism);
        let slots = if cpus.is_empty() {
            parallelism
        } else {
            cpus.len()
        };
        Self {
            permits: Arc::new(Semaphore::new(slots)),
            free: Arc::new(Mutex::new(cpus)),
        }
    }

    /// Waits for a slot. Move it into the blocking work and run the hash
    /// with [`HashSlot::run`]: the slot is given back when the work ends,
    /// also if the client went away meanwhile.
    pub async fn slot(&self) -> Result<HashSlot, ApiError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let cpu = self.free.lock().ok().and_then(|mut free| free.pop());
        Ok(HashSlot {
            _permit: permit,
            cpu,
            free: Arc::clone(&self.free),
        })
    }
}

/// The CPUs in this process's affinity mask, in order.
fn allowed_cpus() -> Vec<usize> {
    sched_getaffinity(Pid::from_raw(0))
        .map(|set| {
            (0..CpuSet::count())
                .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

/// The right to run one hash now, on `cpu` where one was free.
pub struct HashSlot {
    _permit: OwnedSemaphorePermit,
    cpu: Option<usize>,
    free: Arc<Mutex<Vec<usize>>>,
}

impl HashSlot {
    /// Runs `work` (on a blocking thread) with the thread pinned to this
    /// slot's CPU; the thread's own CPU set is restored after.
    pub fn run<T>(self, work: impl FnOnce() -> T) -> T {
        let _pinned = self.cpu.and_then(Pinned::to);
        work()
    }
}

impl Drop for HashSlot {
    fn drop(&mut self) {
        if let (Some(cpu), Ok(mut free)) = (self.cpu, self.free.lock()) {
            free.push(cpu);
        }
    }
}

/// The calling thread on one CPU until dropped.
struct Pinned {
    before: CpuSet,
}

impl Pinned {
    fn to(cpu: usize) -> Option<Self> {
        let this = Pid::from_raw(0);
        let before = sched_getaffinity(this).ok()?;
        let mut one = CpuSet::new();
        one.set(cpu).ok()?;
        sched_setaffinity(this, &one).ok()?;
        Some(Self { before })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity() -> Vec<usize> {
        let set = sched_getaffinity(Pid::from_raw(0)).unwrap();
        (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_hash_runs_on_its_slots_cpu_and_the_thread_gets_its_cpus_back() {
        let hashing = Hashing::new();
        let slot = hashing.slot().await.unwrap();
        let cpu = slot.cpu.expect("a CPU from the affinity mask");
        let before = tokio::task::spawn_blocking(affinity).await.unwrap();
        let (during, after) = tokio::task::spawn_blocking(move || {
            let during = slot.run(affinity);
            (during, affinity())
        })
        .await
        .unwrap();
        assert_eq!(during, vec![cpu]);
        assert_eq!(after, before);
    }

    #[tokio::test]
    async fn no_more_slots_than_cpus_and_each_on_another_cpu() {
        let hashing = Hashing::new();
        let cpus = allowed_cpus()
            .len()
            .min(std::thread::available_parallelism().unwrap().get());
        let mut slots = Vec::new();
        for _ in 0..cpus {
            slots.push(hashing.slot().await.unwrap());
        }
        let mut taken: Vec<usize> = slots.iter().filter_map(|s| s.cpu).collect();
        taken.sort_unstable();
        taken.dedup();
        assert_eq!(taken.len(), cpus);
        // All taken: the next waits until one is given back.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), hashing.slot());
        assert!(waiting.await.is_err());
        let freed = slots.pop().unwrap().cpu;
        let next = hashing.slot().await.unwrap();
        assert_eq!(next.cpu, freed);
    }
}
