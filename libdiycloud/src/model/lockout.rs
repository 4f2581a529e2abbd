//! Lockout after repeated wrong passwords (like pam_faillock's deny,
//! fail_interval and unlock_time), as pure functions of the stored state and
//! the time passed in.

use super::time::Timestamp;

/// The three knobs of the lockout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures (within `fail_interval`) that lock the account; 0 disables lockout.
    pub deny: u32,
    /// Failures further apart than this start a new count, in seconds.
    pub fail_interval: u64,
    /// How long a lock lasts, in seconds; 0 = until an admin unlocks.
    pub unlock_time: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            deny: 5,
            fail_interval: 15 * 60,
            unlock_time: 10 * 60,
        }
    }
}

/// The failure bookkeeping stored with each user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureState {
    /// Failures counted in the current window.
    pub count: u32,
    /// When the current window's first failure happened.
    pub window_start: Option<Timestamp>,
    /// When the account was locked, if it is.
    pub locked_at: Option<Timestamp>,
}

impl LockoutPolicy {
    /// Whether the account refuses logins at `now`.
    pub fn is_locked(&self, state: &FailureState, now: Timestamp) -> bool {
        match state.locked_at {
            None => false,
            Some(_) if self.unlock_time == 0 => true,
            Some(at) => now < at.plus(self.unlock_time),
        }
    }

    /// The state after one more wrong password at `now`.
    pub fn after_failure(&self, state: &FailureState, now: Timestamp) -> FailureState {
        // An expired lock or a stale window starts a fresh count.
        let stale_window = state
            .window_start
            .is_none_or(|start| now >= start.plus(self.fail_interval));
        let expired_lock = state.locked_at.is_some() && !self.is_locked(state, now);
        let mut next = if expired_lock || (stale_window && state.locked_at.is_none()) {
            FailureState {
                count: 0,
                window_start: Some(now),
                locked_at: None,
            }
        } else {
            *state
        };
        next.count = next.count.saturating_add(1);
        if self.deny > 0 && next.count >= self.deny && next.locked_at.is_none() {
            next.locked_at = Some(now);
        }
        next
    }

    /// Whether `after_failure` locked an account that was open before.
    pub fn newly_locked(before: &FailureState, after: &FailureState) -> bool {
        after.locked_at.is_some() && after.locked_at != before.locked_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        deny: 3,
        fail_interval: 900,
        unlock_time: 600,
    };

    fn fail_times(policy: &LockoutPolicy, times: &[i64]) -> FailureState {
        times.iter().fold(FailureState::default(), |s, t| {
            policy.after_failure(&s, Timestamp(*t))
        })
    }

    #[test]
    fn deny_failures_within_the_interval_lock() {
        let s = fail_times(&POLICY, &[100, 200]);
        assert!(!POLICY.is_locked(&s, Timestamp(201)));
        let s = POLICY.after_failure(&s, Timestamp(300));
        assert_eq!(s.locked_at, Some(Timestamp(300)));
        assert!(POLICY.is_locked(&s, Timestamp(899)));
        assert!(!POLICY.is_locked(&s, Timestamp(900)), "unlock_time passed");
    }

    #[test]
    fn failures_spread_wider_than_the_interval_never_lock() {
        let s = fail_times(&POLICY, &[0, 500, 1000, 1500, 2000]);
        assert!(s.locked_at.is_none());
        assert!(s.count < 3);
    }

    #[test]
    fn failures_while_locked_keep_counting_without_moving_the_lock() {
        let s = fail_times(&POLICY, &[0, 1, 2, 3, 4]);
        assert_eq!(s.count, 5);
        assert_eq!(s.locked_at, Some(Timestamp(2)));
    }

    #[test]
    fn a_failure_after_the_lock_expired_starts_over() {
        let s = fail_times(&POLICY, &[0, 1, 2, 2000]);
        assert_eq!(
            s,
            FailureState {
                count: 1,
                window_start: Some(Timestamp(2000)),
                locked_at: None
            }
        );
    }

    #[test]
    fn unlock_time_zero_locks_until_an_admin_unlocks() {
        let policy = LockoutPolicy {
            unlock_time: 0,
            ..POLICY
        };
        let s = fail_times(&policy, &[0, 1, 2]);
        assert!(policy.is_locked(&s, Timestamp(10_000_000)));
    }

    #[test]
    fn deny_zero_disables_lockout() {
        let policy = LockoutPolicy { deny: 0, ..POLICY };
        let s = fail_times(&policy, &[0, 1, 2, 3, 4, 5]);
        assert!(!policy.is_locked(&s, Timestamp(6)));
    }
}
