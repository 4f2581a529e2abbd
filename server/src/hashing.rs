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
//!
//! The wait is bounded: while `[api] login_queue` hashes wait for a slot, a
//! login is answered 503 with Retry-After at once, and a login that waited
//! `[api] login_wait` (1 s) gets 503 then. A flood of logins (240 at once made a
//! login wait 6.7 s) cannot make a login hang. The work of a session
//! (a password change, a new user) always waits its turn (the semaphore is
//! fair: behind at most that queue).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;

/// What a shed request is told to wait, in seconds: a queue's worth of
/// hashes takes well under that.
pub const RETRY_AFTER: u64 = 1;

pub struct Hashing {
    permits: Arc<Semaphore>,
    /// How many may wait for a slot, and how many do.
    queue: u32,
    /// The longest a login waits for a slot before 503.
    wait: std::time::Duration,
    waiting: Arc<AtomicU32>,
    /// The CPUs no hash runs on now (empty where they cannot be known).
    free: Arc<Mutex<Vec<usize>>>,
}

impl Hashing {
    /// One slot per CPU the process may use, at most as many as
    /// `available_parallelism` (which heeds a CPU quota); at most `queue`
    /// logins waiting for one, each at most `wait`.
    pub fn new(queue: u32, wait: std::time::Duration) -> Self {
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
            queue,
            wait,
            waiting: Arc::new(AtomicU32::new(0)),
            free: Arc::new(Mutex::new(cpus)),
        }
    }

    /// Waits for a slot. Move it into the blocking work and run the hash
    /// with [`HashSlot::run`]: the slot is given back when the work ends,
    /// also if the client went away meanwhile.
    pub async fn slot(&self) -> Result<HashSlot, ApiError> {
        self.take(u32::MAX, None).await
    }

    /// A slot for a login: with `[api] login_queue` waiting already, 503
    /// with Retry-After at once; after `[api] login_wait` in the queue, 503.
    pub async fn login_slot(&self) -> Result<HashSlot, ApiError> {
        self.take(self.queue, Some(self.wait)).await
    }

    async fn take(
        &self,
        queue: u32,
        wait: Option<std::time::Duration>,
    ) -> Result<HashSlot, ApiError> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let _waiting = Waiting::join(&self.waiting, queue).ok_or_else(busy)?;
                let acquired = Arc::clone(&self.permits).acquire_owned();
                match wait {
                    Some(wait) => tokio::time::timeout(wait, acquired)
                        .await
                        .map_err(|_| busy())?,
                    None => acquired.await,
                }
                .map_err(ApiError::internal)?
            }
            Err(e) => return Err(ApiError::internal(e)),
        };
        let cpu = self.free.lock().ok().and_then(|mut free| free.pop());
        Ok(HashSlot {
            _permit: permit,
            cpu,
            free: Arc::clone(&self.free),
        })
    }
}

/// 503: the queue for the hashing slots is full.
pub fn busy() -> ApiError {
    ApiError {
        retry_after: Some(RETRY_AFTER),
        ..ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("the server is busy checking other passwords: try again in {RETRY_AFTER} s"),
        )
    }
}

/// A place in the queue, left when dropped (also when the waiting request
/// is dropped because its client went away).
struct Waiting(Arc<AtomicU32>);

impl Waiting {
    fn join(waiting: &Arc<AtomicU32>, queue: u32) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < queue).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(waiting)))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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

    const WAIT: std::time::Duration = std::time::Duration::from_secs(1);

    #[tokio::test]
    async fn a_hash_runs_on_its_slots_cpu_and_the_thread_gets_its_cpus_back() {
        let hashing = Hashing::new(8, WAIT);
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
        let hashing = Hashing::new(8, WAIT);
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

    #[tokio::test]
    async fn past_the_queue_a_request_is_shed_at_once_with_retry_after() {
        let hashing = Arc::new(Hashing::new(3, WAIT));
        let slots = hashing.permits.available_permits();
        let mut held = Vec::new();
        for _ in 0..slots {
            held.push(hashing.slot().await.unwrap());
        }
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let hashing = Arc::clone(&hashing);
                tokio::spawn(async move { hashing.login_slot().await.map(drop) })
            })
            .collect();
        while hashing.waiting.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        let shed = tokio::time::timeout(std::time::Duration::from_secs(1), hashing.login_slot())
            .await
            .expect("shed at once, not queued");
        let shed = shed.err().expect("503");
        assert_eq!(shed.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.retry_after, Some(RETRY_AFTER));
        // A login that waited its longest gets 503 too.
        let waited = tokio::time::Instant::now();
        let late = hashing.take(u32::MAX, Some(WAIT / 10)).await;
        assert_eq!(
            late.err().map(|e| e.status),
            Some(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        );
        assert!(waited.elapsed() >= WAIT / 10);
        // A session's work (a new user, a password change) waits its turn.
        let session_work = {
            let hashing = Arc::clone(&hashing);
            tokio::spawn(async move { hashing.slot().await.map(drop) })
        };
        drop(held);
        session_work.await.unwrap().unwrap();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(hashing.waiting.load(Ordering::Acquire), 0);
        drop(hashing.slot().await.unwrap());
    }
}
