//! How long to wait before trying again: exponential backoff with full jitter, capped,
//! and never shorter than what the server asked for (`Retry-After`).
//!
//! Watchers reconnecting, sinks redelivering and the outbox resending all use this
//! one rule, so a fleet of accounts that failed together does not retry together
//! (jitter) and no retry runs in a tight loop (a floor).
//!
//! The wait for attempt `n` (0-based) is a uniformly random time in
//! `[floor, min(cap, base * 2^n)]` ("full jitter"), then raised to the server's
//! `Retry-After` when it asked for longer (and capped at [`MAX_RETRY_AFTER`]).
//! Randomness is passed in, so tests are exact.

use std::time::Duration;

/// The longest `Retry-After` honoured; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_hours(24);

/// A backoff rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The shortest wait.
    pub floor: Duration,
    /// The upper end of the first attempt's range.
    pub base: Duration,
    /// The upper end of any attempt's range.
    pub cap: Duration,
}

impl Backoff {
    /// For reconnecting to a mail server: 1 s to 2 s at first, doubling, at most 5 min.
    pub const RECONNECT: Backoff = Backoff {
        floor: Duration::from_secs(1),
        base: Duration::from_secs(2),
        cap: Duration::from_mins(5),
    };
    /// For redelivering to a sink or resending from the outbox: from 5 s, at most 1 h.
    pub const DELIVERY: Backoff = Backoff {
        floor: Duration::from_secs(5),
        base: Duration::from_secs(10),
        cap: Duration::from_hours(1),
    };

    /// The upper end of attempt `attempt`'s range.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
            .max(self.floor)
    }

    /// The wait before attempt `attempt + 1`, given `unit`, a random number in
    /// `[0, 1)`, and the server's `Retry-After` if it sent one.
    pub fn wait(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt);
        let span = ceiling.saturating_sub(self.floor);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = self.floor + span.mul_f64(unit);
        match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_doubles_up_to_the_cap() {
        let b = Backoff::RECONNECT;
        assert_eq!(b.ceiling(0), Duration::from_secs(2));
        assert_eq!(b.ceiling(1), Duration::from_secs(4));
        assert_eq!(b.ceiling(7), Duration::from_secs(256));
        assert_eq!(b.ceiling(8), Duration::from_mins(5));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_mins(5));
    }

    #[test]
    fn jitter_spreads_between_floor_and_ceiling() {
        let b = Backoff::RECONNECT;
        assert_eq!(b.wait(3, 0.0, None), Duration::from_secs(1));
        assert_eq!(b.wait(3, 0.5, None), Duration::from_millis(8500));
        assert!(b.wait(3, 0.999_999, None) <= Duration::from_secs(16));
        // Nonsense randomness is the floor, never a panic or a zero wait.
        assert_eq!(b.wait(3, f64::NAN, None), Duration::from_secs(1));
        assert_eq!(b.wait(3, -4.0, None), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_a_floor_with_a_cap() {
        let b = Backoff::DELIVERY;
        assert_eq!(
            b.wait(0, 0.0, Some(Duration::from_mins(2))),
            Duration::from_mins(2)
        );
        // A shorter Retry-After does not shorten the backoff.
        assert_eq!(b.wait(5, 1.0, Some(Duration::from_secs(1))), b.ceiling(5));
        assert_eq!(
            b.wait(0, 0.0, Some(Duration::from_hours(1000))),
            MAX_RETRY_AFTER
        );
    }
}
