//! What each account's watcher did lately, for the dashboard: messages per hour over
//! the last [`HOURS`] hours, the delivery latencies of the last hour, and the time of
//! the last round that got through.
//!
//! Kept in memory by the daemon ([`crate::daemon::DaemonHandle::activity`]) from the
//! watchers' [`MessageHook`] and their state changes: a restart starts it empty.
//! Bounded: at most [`HOURS`] hour buckets and [`LATENCIES`] latencies per account.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mailbridge_connector::watcher::{MessageHook, MessageOutcome};
use time::OffsetDateTime;

/// How many hours of message counts are kept (the dashboard shows 24 of them).
pub const HOURS: usize = 48;
const HOURS_I64: i64 = 48;

/// At most this many delivery latencies are kept per account (the last hour's).
pub const LATENCIES: usize = 1000;

/// One account's activity.
#[derive(Debug, Default, Clone)]
struct Account {
    /// `(hour, messages)`, oldest first; `hour` is the Unix time divided by 3600.
    hours: VecDeque<(i64, u32)>,
    /// `(when, latency)` of delivered messages, oldest first.
    latencies: VecDeque<(OffsetDateTime, Duration)>,
    last_sync: Option<OffsetDateTime>,
}

/// What the watchers did, per account name (cheap to clone).
#[derive(Debug, Default, Clone)]
pub struct Activity(Arc<Mutex<HashMap<String, Account>>>);

/// One account's activity as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountActivity {
    /// Messages handled in each of the last `hours` hours, oldest first; the last is
    /// the current hour.
    pub per_hour: Vec<u32>,
    /// The median delivery latency of the last hour; `None`: nothing delivered.
    pub median_latency: Option<Duration>,
    /// When the watcher's last round got through.
    pub last_sync: Option<OffsetDateTime>,
}

fn hour_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(3600)
}

impl Activity {
    /// Counts one message of `account` handled at `now` (`took`: its delivery time,
    /// kept when it was delivered).
    pub fn record(
        &self,
        account: &str,
        outcome: MessageOutcome,
        took: Duration,
        now: OffsetDateTime,
    ) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let a = all.entry(account.to_owned()).or_default();
        let hour = hour_of(now);
        match a.hours.back_mut() {
            Some((h, n)) if *h == hour => *n = n.saturating_add(1),
            _ => a.hours.push_back((hour, 1)),
        }
        while a.hours.front().is_some_and(|(h, _)| *h <= hour - HOURS_I64) {
            a.hours.pop_front();
        }
        while a.hours.len() > HOURS {
            a.hours.pop_front();
        }
        if outcome == MessageOutcome::Delivered {
            a.latencies.push_back((now, took));
            let since = now - Duration::from_hours(1);
            while a.latencies.front().is_some_and(|(t, _)| *t < since) {
                a.latencies.pop_front();
            }
            while a.latencies.len() > LATENCIES {
                a.latencies.pop_front();
            }
        }
    }

    /// Notes that a round of `account`'s watcher got through at `at`.
    pub fn synced(&self, account: &str, at: OffsetDateTime) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let a = all.entry(account.to_owned()).or_default();
        if a.last_sync.is_none_or(|t| t < at) {
            a.last_sync = Some(at);
        }
    }

    /// `account`'s activity at `now`: messages in each of the last `hours` hours
    /// (at most [`HOURS`]), the median latency of the last hour, the last sync.
    pub fn of(&self, account: &str, hours: usize, now: OffsetDateTime) -> AccountActivity {
        let hours = hours.min(HOURS);
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(a) = all.get(account) else {
            return AccountActivity {
                per_hour: vec![0; hours],
                median_latency: None,
                last_sync: None,
            };
        };
        let current = hour_of(now);
        let per_hour = (0..hours)
            .map(|i| {
                let h = current - i64::try_from(hours - 1 - i).unwrap_or(0);
                a.hours.iter().find(|(x, _)| *x == h).map_or(0, |(_, n)| *n)
            })
            .collect();
        let since = now - Duration::from_hours(1);
        let mut last: Vec<Duration> = a
            .latencies
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, d)| *d)
            .collect();
        last.sort_unstable();
        let median_latency = last.get(last.len() / 2).copied();
        AccountActivity {
            per_hour,
            median_latency,
            last_sync: a.last_sync,
        }
    }

    /// The hook that counts every message a watcher handled, at `clock`'s time.
    pub fn hook(&self, clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> MessageHook {
        let this = self.clone();
        MessageHook(Arc::new(move |account, outcome, took| {
            this.record(account, outcome, took, clock());
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64, minutes: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid time")
            + time::Duration::hours(hours)
            + time::Duration::minutes(minutes)
    }

    #[test]
    fn counts_per_hour_oldest_first() {
        let a = Activity::default();
        let d = Duration::from_millis(10);
        a.record("a", MessageOutcome::Delivered, d, at(0, 5));
        a.record("a", MessageOutcome::Delivered, d, at(0, 50));
        a.record("a", MessageOutcome::Unrouted, d, at(2, 1));
        let got = a.of("a", 4, at(2, 30));
        assert_eq!(got.per_hour, vec![0, 2, 0, 1]);
        assert_eq!(a.of("b", 3, at(2, 30)).per_hour, vec![0, 0, 0]);
    }

    #[test]
    fn keeps_at_most_48_hours() {
        let a = Activity::default();
        for h in 0..100 {
            a.record("a", MessageOutcome::Delivered, Duration::ZERO, at(h, 0));
        }
        let all = a.0.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(all["a"].hours.len(), HOURS);
        drop(all);
        let got = a.of("a", 100, at(99, 0));
        assert_eq!(got.per_hour.len(), HOURS);
        assert!(got.per_hour.iter().all(|n| *n == 1));
    }

    #[test]
    fn median_of_the_last_hour_of_deliveries() {
        let a = Activity::default();
        a.record(
            "a",
            MessageOutcome::Delivered,
            Duration::from_secs(100),
            at(0, 0),
        );
        for (m, ms) in [(30, 300), (40, 100), (50, 200)] {
            a.record(
                "a",
                MessageOutcome::Delivered,
                Duration::from_millis(ms),
                at(1, m),
            );
        }
        a.record(
            "a",
            MessageOutcome::Parked,
            Duration::from_secs(50),
            at(1, 55),
        );
        assert_eq!(
            a.of("a", 24, at(1, 59)).median_latency,
            Some(Duration::from_millis(200))
        );
        assert_eq!(a.of("a", 24, at(3, 0)).median_latency, None);
    }

    #[test]
    fn last_sync_keeps_the_latest() {
        let a = Activity::default();
        a.synced("a", at(1, 0));
        a.synced("a", at(0, 0));
        assert_eq!(a.of("a", 1, at(2, 0)).last_sync, Some(at(1, 0)));
    }
}
