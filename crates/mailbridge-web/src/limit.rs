//! Sign-in rate limiting, per user name and per client address: after
//! [`FREE_FAILURES`] failures in a row a key is refused for [`FIRST_WAIT`], doubling
//! with every further failure up to [`LONGEST_WAIT`]; a success clears the name's
//! count. Kept in memory: a restart forgets it, and several instances each count
//! their own. The map is bounded ([`MAX_KEYS`]): quiet keys are forgotten first.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures allowed before a key waits.
pub const FREE_FAILURES: u32 = 5;
/// The first wait.
pub const FIRST_WAIT: Duration = Duration::from_secs(30);
/// The longest wait.
pub const LONGEST_WAIT: Duration = Duration::from_mins(15);
/// The most keys kept.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Option<Instant>,
    last: Instant,
}

/// The failure counts of sign-in keys (`name:alice`, `addr:192.0.2.1`).
#[derive(Debug, Default)]
pub struct Limiter {
    keys: Mutex<HashMap<String, Entry>>,
}

impl Limiter {
    /// How long `key` must still wait at `now`, if it must.
    pub fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.get(key)
            .and_then(|e| e.blocked_until)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Counts a failure of `key` at `now`.
    pub fn failed(&self, key: &str, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            forget_quietest(&mut keys);
        }
        let entry = keys.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            blocked_until: None,
            last: now,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if entry.failures >= FREE_FAILURES {
            let doublings = (entry.failures - FREE_FAILURES).min(16);
            let wait = FIRST_WAIT.saturating_mul(1 << doublings).min(LONGEST_WAIT);
            entry.blocked_until = Some(now + wait);
        }
    }

    /// Clears `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Removes the tenth of the keys seen longest ago.
fn forget_quietest(keys: &mut HashMap<String, Entry>) {
    let mut by_age: Vec<(Instant, String)> =
        keys.iter().map(|(k, e)| (e.last, k.clone())).collect();
    by_age.sort();
    for (_, k) in by_age.into_iter().take(MAX_KEYS / 10) {
        keys.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_then_waits_that_double_up_to_the_longest() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            limiter.failed("name:alice", t0);
            assert_eq!(limiter.wait("name:alice", t0), None);
        }
        limiter.failed("name:alice", t0);
        assert_eq!(limiter.wait("name:alice", t0), Some(FIRST_WAIT));
        // Another key is not affected.
        assert_eq!(limiter.wait("name:bob", t0), None);
        // After the wait it may try again; one more failure waits twice as long.
        let t1 = t0 + FIRST_WAIT;
        assert_eq!(limiter.wait("name:alice", t1), None);
        limiter.failed("name:alice", t1);
        assert_eq!(limiter.wait("name:alice", t1), Some(FIRST_WAIT * 2));
        for _ in 0..40 {
            limiter.failed("name:alice", t1);
        }
        assert_eq!(limiter.wait("name:alice", t1), Some(LONGEST_WAIT));
        // A success clears it.
        limiter.succeeded("name:alice");
        assert_eq!(limiter.wait("name:alice", t1), None);
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_KEYS + 50 {
            limiter.failed(&format!("addr:{i}"), t0 + Duration::from_millis(i as u64));
        }
        let len = limiter.keys.lock().unwrap().len();
        assert!(len <= MAX_KEYS, "{len}");
        // The newest keys are kept.
        let newest = format!("addr:{}", MAX_KEYS + 49);
        assert!(limiter.keys.lock().unwrap().contains_key(&newest));
    }
}
