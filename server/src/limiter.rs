//! Login attempts per client: at most `rate` in a fixed window, then 429
//! with the seconds until the window ends. In memory (a restart forgets),
//! bounded: past `MAX_CLIENTS` remembered clients, finished windows are
//! dropped, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use libdiycloud::model::time::Timestamp;

const MAX_CLIENTS: usize = 10_000;

pub struct Limiter {
    rate: u32,
    window: i64,
    clients: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl Limiter {
    pub fn new(rate: u32, window_secs: i64) -> Self {
        Self {
            rate,
            window: window_secs,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt of `client` at `now`: `Err(seconds)` when it is
    /// over the rate (the attempt is refused, not counted).
    pub fn attempt(&self, client: IpAddr, now: Timestamp) -> Result<(), u64> {
        let mut clients = match self.clients.lock() {
            Ok(guard) => guard,
            // A panic elsewhere while holding the lock: the counts are still
            // numbers; go on with them.
            Err(poisoned) => poisoned.into_inner(),
        };
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            let window = self.window;
            clients.retain(|_, (start, _)| now.0 - *start < window);
            if clients.len() >= MAX_CLIENTS {
                if let Some(oldest) = clients.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                    clients.remove(&oldest);
                }
            }
        }
        let entry = clients.entry(client).or_insert((now.0, 0));
        if now.0 - entry.0 >= self.window || now.0 < entry.0 {
            *entry = (now.0, 0);
        }
        if entry.1 >= self.rate {
            let left = self.window - (now.0 - entry.0);
            return Err(u64::try_from(left.max(1)).unwrap_or(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_rate_attempts_per_window() {
        let limiter = Limiter::new(3, 60);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        for _ in 0..3 {
            assert_eq!(limiter.attempt(a, Timestamp(100)), Ok(()));
        }
        assert_eq!(limiter.attempt(a, Timestamp(110)), Err(50));
        assert_eq!(limiter.attempt(b, Timestamp(110)), Ok(()), "another client");
        assert_eq!(limiter.attempt(a, Timestamp(159)), Err(1));
        assert_eq!(limiter.attempt(a, Timestamp(160)), Ok(()), "a new window");
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = Limiter::new(1, 60);
        for i in 0..(MAX_CLIENTS as u32 + 50) {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(limiter.attempt(ip, Timestamp(1)), Ok(()));
        }
        let len = limiter.clients.lock().map(|c| c.len()).unwrap_or(0);
        assert!(len <= MAX_CLIENTS, "{len}");
    }
}
