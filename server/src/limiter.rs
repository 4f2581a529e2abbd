//! Failed logins per client: a token bucket per client (governor's GCRA),
//! `rate` tokens deep, refilled at `rate` a minute. A login attempt takes a
//! token before its password is checked and gives it back if the login
//! succeeded (or was never checked): failures count, successes do not, and
//! attempts still in progress count, so a burst of parallel guesses from one
//! client cannot outrun the limit. An empty bucket is 429 with the seconds
//! until the next token.
//!
//! A client is its address, IPv6 ones per /64: a host gets a whole /64 and
//! can pick any address in it (privacy extensions, SLAAC). In memory (a
//! restart forgets); a client's state is dropped once its bucket is full
//! again, swept as the number of clients grows.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

/// Past this many remembered clients, the full buckets are swept, at most
/// once per `SWEEP_EVERY`.
const SWEEP_AT: usize = 10_000;
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The key a client's attempts count under: an IPv4 address as it is (an
/// IPv4-mapped IPv6 address as the IPv4 one), an IPv6 address's /64.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The limiter's time: a monotonic clock in the server, the test's clock in
/// tests (as time since some fixed point).
#[derive(Clone)]
pub struct Ticks(Arc<dyn Fn() -> Duration + Send + Sync>);

impl Ticks {
    pub fn new(now: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }
}

impl Clock for Ticks {
    type Instant = Duration;

    fn now(&self) -> Duration {
        (self.0)()
    }
}

/// The buckets, shared by the limiter (which takes tokens) and the refunds
/// (which give them back).
struct Shared(Arc<DashMapStateStore<IpAddr>>);

impl StateStore for Shared {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for Shared {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

pub struct Limiter {
    buckets: RateLimiter<IpAddr, Shared, Ticks, NoOpMiddleware<Duration>>,
    store: Arc<DashMapStateStore<IpAddr>>,
    clock: Ticks,
    /// The time one token stands for (a minute / rate).
    token: Nanos,
    /// When the next sweep may run (the clock's nanoseconds).
    next_sweep: AtomicU64,
}

impl Limiter {
    /// `rate` failed logins per minute and client, all of them at once.
    pub fn new(rate: u32, clock: Ticks) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN));
        let store = Arc::new(DashMapStateStore::default());
        Self {
            buckets: RateLimiter::new(quota, Shared(Arc::clone(&store)), clock.clone()),
            store,
            clock,
            token: Nanos::from(quota.replenish_interval()),
            next_sweep: AtomicU64::new(0),
        }
    }

    /// Takes a token for an attempt of `client`: `Err(seconds)` until the
    /// next one when its bucket is empty (the attempt is refused).
    pub fn attempt(&self, client: IpAddr) -> Result<Attempt<'_>, u64> {
        self.sweep();
        let key = key(client);
        match self.buckets.check_key(&key) {
            Ok(()) => Ok(Attempt {
                limiter: self,
                key,
                counted: true,
            }),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(seconds.max(1))
            }
        }
    }

    /// Gives `key` its token back (at most the bucket's depth: a bucket
    /// that refilled meanwhile stays full).
    fn refund(&self, key: &IpAddr) {
        let token = self.token;
        let _ = self.store.measure_and_replace(key, |tat| {
            Ok::<_, Infallible>(((), tat.unwrap_or_default().saturating_sub(token)))
        });
    }

    /// Drops the clients whose buckets are full again once there are many.
    /// A client stays at most two minutes after its last failure, so the
    /// map holds the clients of the last minutes, not of the server's life.
    fn sweep(&self) {
        if self.store.len() < SWEEP_AT {
            return;
        }
        let now = u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX);
        let next = self.next_sweep.load(Ordering::Relaxed);
        let after = now.saturating_add(Nanos::from(SWEEP_EVERY).as_u64());
        if now < next
            || self
                .next_sweep
                .compare_exchange(next, after, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.buckets.retain_recent();
    }
}

/// An attempt that holds one of its client's tokens: kept when it fails
/// (or ends without a verdict: the client went away), given back by
/// [`Attempt::not_counted`].
pub struct Attempt<'a> {
    limiter: &'a Limiter,
    key: IpAddr,
    counted: bool,
}

impl Attempt<'_> {
    /// The attempt succeeded, or its password was never checked (the
    /// server was busy): it does not count.
    pub fn not_counted(mut self) {
        self.counted = false;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.counted {
            self.limiter.refund(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> (Arc<AtomicU64>, Ticks) {
        let secs = Arc::new(AtomicU64::new(1_000));
        let read = Arc::clone(&secs);
        (
            secs,
            Ticks::new(move || Duration::from_secs(read.load(Ordering::SeqCst))),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_keyed_per_64_and_ipv4_per_address() {
        assert_eq!(
            key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            key(ip("2001:db8:1:2::1")),
            key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            "one /64: one client"
        );
        assert_ne!(
            key(ip("2001:db8:1:2::1")),
            key(ip("2001:db8:1:3::1")),
            "another /64: another client"
        );
        assert_eq!(key(ip("::1")), ip("::"));
        assert_eq!(key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_ne!(key(ip("192.0.2.7")), key(ip("192.0.2.8")));
        assert_eq!(key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"), "IPv4-mapped");
    }

    #[test]
    fn rotating_inside_one_64_is_limited() {
        let (_, ticks) = clock();
        let limiter = Limiter::new(10, ticks);
        let refused = (1..=30u16)
            .map(|i| {
                let client = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 7, 7, i, i, i, i));
                limiter.attempt(client).is_err()
            })
            .filter(|refused| *refused)
            .count();
        assert_eq!(refused, 20);
    }

    #[test]
    fn failures_empty_the_bucket_and_a_token_comes_back_per_interval() {
        let (secs, ticks) = clock();
        let limiter = Limiter::new(3, ticks);
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            drop(limiter.attempt(a).unwrap());
        }
        assert_eq!(limiter.attempt(a).err(), Some(20), "a token per 20 s");
        assert!(limiter.attempt(ip("10.0.0.2")).is_ok(), "another client");
        secs.fetch_add(19, Ordering::SeqCst);
        assert_eq!(limiter.attempt(a).err(), Some(1));
        secs.fetch_add(1, Ordering::SeqCst);
        drop(limiter.attempt(a).unwrap());
        assert!(limiter.attempt(a).is_err(), "one token, used");
        secs.fetch_add(60, Ordering::SeqCst);
        for _ in 0..3 {
            drop(limiter.attempt(a).unwrap());
        }
        assert!(limiter.attempt(a).is_err(), "never deeper than the rate");
    }

    #[test]
    fn successes_do_not_count() {
        let (_, ticks) = clock();
        let limiter = Limiter::new(3, ticks);
        let a = ip("10.0.0.1");
        for _ in 0..100 {
            limiter.attempt(a).unwrap().not_counted();
        }
        for _ in 0..3 {
            drop(limiter.attempt(a).unwrap());
        }
        assert!(limiter.attempt(a).is_err());
    }

    #[test]
    fn attempts_in_progress_count() {
        let (_, ticks) = clock();
        let limiter = Limiter::new(3, ticks);
        let a = ip("10.0.0.1");
        let held: Vec<_> = (0..3).map(|_| limiter.attempt(a).unwrap()).collect();
        assert!(limiter.attempt(a).is_err(), "three in progress");
        for attempt in held {
            attempt.not_counted();
        }
        assert!(limiter.attempt(a).is_ok(), "all three succeeded");
    }

    #[test]
    fn memory_is_bounded_by_sweeps() {
        let (secs, ticks) = clock();
        let limiter = Limiter::new(1, ticks);
        for i in 0..(SWEEP_AT as u32 + 50) {
            drop(limiter.attempt(IpAddr::from(i.to_be_bytes())).unwrap());
        }
        // Two minutes later every bucket is full again: the next sweep
        // drops them all.
        secs.fetch_add(121, Ordering::SeqCst);
        let last = limiter.attempt(ip("192.0.2.1")).unwrap();
        assert!(limiter.store.len() <= 2, "{}", limiter.store.len());
        drop(last);
    }
}
