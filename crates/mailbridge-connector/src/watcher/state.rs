//! The watcher's states and the pure rule that moves between them.
//!
//! A watcher is always in one [`WatcherState`]. What happened (a session opened, a
//! round delivered, a failure of the source or of a sink) goes through
//! [`Machine`], which answers the next state: no I/O, no clock of its own, the
//! randomness for the jitter passed in, so every transition is tested exactly.

use std::collections::BTreeSet;
use std::time::Duration;

use mailbridge_types::ErrorClass;
use mailbridge_types::backoff::Backoff;
use serde::Serialize;
use time::OffsetDateTime;

/// Where a watcher is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum WatcherState {
    /// Opening a session with the account's incoming side and signing in.
    Connecting,
    /// Listing what is new and delivering it.
    Syncing,
    /// Waiting for new mail (IMAP IDLE, or the time to the next poll).
    Idle,
    /// A failure: nothing is tried before `until`.
    WaitingUntil {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
        /// What failed, one line (no secrets: error texts never carry them).
        reason: String,
    },
    /// The source refused the sign-in: the watcher stopped until someone signs the
    /// account in again.
    NeedsSignIn {
        /// What the server said, one line.
        reason: String,
    },
    /// Stopped: download switched off or the daemon shutting down (no reason), or a
    /// delivery whose outcome is unknown (an SMTP relay that may or may not have the
    /// message) that a person must decide about before anything is resent.
    Disabled {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// A state change, as published to whoever listens (API, SSE, metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatcherEvent {
    /// The account's name.
    pub account: String,
    pub state: WatcherState,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Which side failed: the mail source (connection, sign-in, listing, fetching, the
/// source action) or a sink (or the store) while delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    /// The source refused the sign-in itself (whatever class its answer had: an IMAP
    /// server saying `AUTHENTICATE failed` is "misconfigured" to the IMAP client).
    SignIn,
    Delivery,
}

/// How long to back off after failures of each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoffs {
    /// After a failure of the source (reconnecting).
    pub source: Backoff,
    /// After a failure of a sink or the store (redelivering).
    pub delivery: Backoff,
}

impl Default for Backoffs {
    fn default() -> Self {
        Self {
            source: Backoff::RECONNECT,
            delivery: Backoff::DELIVERY,
        }
    }
}

/// The transition rule: counts failures in a row and answers each event's state.
#[derive(Debug, Clone)]
pub struct Machine {
    backoffs: Backoffs,
    attempt: u32,
}

impl Machine {
    pub fn new(backoffs: Backoffs) -> Self {
        Self {
            backoffs,
            attempt: 0,
        }
    }

    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A round delivered everything it listed: the failure count starts over.
    pub fn succeeded(&mut self) -> WatcherState {
        self.attempt = 0;
        WatcherState::Idle
    }

    /// A failure of `side` with `class` at `now`; `unit` is a random number in
    /// `[0, 1)` for the jitter. A source refusing the sign-in ([`Side::SignIn`], or
    /// an answer classed needs-sign-in or needs-admin) stops the watcher
    /// ([`WatcherState::NeedsSignIn`]); a sink whose outcome is unknown stops it too
    /// ([`WatcherState::Disabled`] with the reason: resending could deliver twice);
    /// anything else waits (exponential backoff with
    /// full jitter, never shorter than a `Retry-After`) and tries again. A sink's
    /// sign-in failure (an SMTP relay refusing its password) says nothing about the
    /// account: it waits like any delivery failure.
    pub fn failed(
        &mut self,
        side: Side,
        class: ErrorClass,
        reason: String,
        now: OffsetDateTime,
        unit: f64,
    ) -> WatcherState {
        if side == Side::SignIn
            || (side == Side::Source
                && matches!(class, ErrorClass::NeedsSignIn | ErrorClass::NeedsAdmin))
        {
            return WatcherState::NeedsSignIn { reason };
        }
        if side == Side::Delivery && class == ErrorClass::OutcomeUnknown {
            return WatcherState::Disabled {
                reason: Some(format!(
                    "{reason}; the message may have been delivered: the watcher stopped so that it is not sent twice (check the receiver, then start the watcher again)"
                )),
            };
        }
        let backoff = match side {
            Side::Source | Side::SignIn => self.backoffs.source,
            Side::Delivery => self.backoffs.delivery,
        };
        let retry_after = match class {
            ErrorClass::Throttled { retry_after } => retry_after,
            _ => None,
        };
        let wait = backoff.wait(self.attempt, unit, retry_after);
        self.attempt = self.attempt.saturating_add(1);
        WatcherState::WaitingUntil {
            until: now + wait,
            reason,
        }
    }
}

/// What a round does with a message a sink did not accept ([`Parking::refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The round ends with the error: the watcher backs off (or stops, for an unknown
    /// outcome) and the next round delivers the message again.
    Retry,
    /// Park the message (`attempts` failed attempts so far) and go on with the next.
    Park { attempts: u32 },
}

/// The parking policy of one watcher: when a message a sink refuses is retried by
/// the round's backoff and when it is parked so the messages behind it go on.
///
/// - A passing failure (transient, throttled) is retried with the round's backoff;
///   the message is parked once it failed `park_after` times in a row.
/// - A refusal of this message for good (permanent, over a limit) parks it at once;
///   the sink is not taken for down.
/// - A sink that cannot work as configured (misconfigured, its own sign-in refused)
///   parks the message at once and is taken for down.
/// - While a sink is down (a message was parked because of it and no delivery to it
///   succeeded since), a message that fails on it is parked at once: one outage costs
///   each message one attempt, not a backoff each.
/// - An unknown outcome (the sink may have the message) is never parked: the round
///   ends and the watcher stops until a person decides.
///
/// No I/O and no clock: the counts live as long as the watcher's task.
#[derive(Debug, Clone)]
pub struct Parking {
    park_after: u32,
    /// The message that failed last (its idempotency key) and how often in a row.
    head: Option<(String, u32)>,
    /// Sinks taken for down.
    down: BTreeSet<String>,
}

impl Parking {
    /// Parks after `park_after` passing failures in a row (at least one).
    pub fn new(park_after: u32) -> Self {
        Self {
            park_after: park_after.max(1),
            head: None,
            down: BTreeSet::new(),
        }
    }

    /// The sink `sink` did not take the message `key` (its idempotency key), failing
    /// with `class`: retry the round, or park the message.
    pub fn refused(&mut self, key: &str, sink: &str, class: ErrorClass) -> Refusal {
        let failures = match &self.head {
            Some((k, n)) if k == key => n.saturating_add(1),
            _ => 1,
        };
        let park = |this: &mut Self, down: bool| {
            if down {
                this.down.insert(sink.to_owned());
            }
            this.head = None;
            Refusal::Park { attempts: failures }
        };
        match class {
            ErrorClass::OutcomeUnknown => {
                self.head = Some((key.to_owned(), failures));
                Refusal::Retry
            }
            ErrorClass::Permanent | ErrorClass::LimitExceeded => park(self, false),
            ErrorClass::Misconfigured | ErrorClass::NeedsSignIn | ErrorClass::NeedsAdmin => {
                park(self, true)
            }
            // Transient, throttled, and any class added later: a passing failure.
            _ => {
                if self.down.contains(sink) || failures >= self.park_after {
                    park(self, true)
                } else {
                    self.head = Some((key.to_owned(), failures));
                    Refusal::Retry
                }
            }
        }
    }

    /// `sink` accepted a message: it is up.
    pub fn accepted(&mut self, sink: &str) {
        self.down.remove(sink);
    }

    /// The message `key` got through (or was passed): its count starts over.
    pub fn delivered(&mut self, key: &str) {
        if self.head.as_ref().is_some_and(|(k, _)| k == key) {
            self.head = None;
        }
    }

    /// Whether `sink` is taken for down.
    pub fn is_down(&self, sink: &str) -> bool {
        self.down.contains(sink)
    }
}

/// A random number in `[0, 1)` for the jitter (0.5 where the OS gives no randomness:
/// still a wait, never a tight loop).
pub fn jitter_unit() -> f64 {
    match getrandom::u64() {
        Ok(n) => f64::from(u32::try_from(n >> 32).unwrap_or(u32::MAX)) / 4_294_967_296.0,
        Err(_) => 0.5,
    }
}

/// How long until `until` from `now` (zero when it passed).
pub fn until(now: OffsetDateTime, until: OffsetDateTime) -> Duration {
    Duration::try_from(until - now).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn waited(state: &WatcherState) -> Duration {
        match state {
            WatcherState::WaitingUntil { until: u, .. } => until(now(), *u),
            other => panic!("not waiting: {other:?}"),
        }
    }

    #[test]
    fn a_transient_failure_waits_with_backoff_and_jitter() {
        let mut m = Machine::new(Backoffs::default());
        let first = m.failed(
            Side::Source,
            ErrorClass::Transient,
            "connection reset".into(),
            now(),
            0.0,
        );
        assert_eq!(waited(&first), Duration::from_secs(1));
        assert!(
            matches!(&first, WatcherState::WaitingUntil { reason, .. } if reason == "connection reset")
        );
        // The range doubles with each failure in a row; the jitter picks within it.
        let second = m.failed(Side::Source, ErrorClass::Transient, "x".into(), now(), 0.5);
        assert_eq!(waited(&second), Duration::from_millis(2500));
        let third = m.failed(Side::Source, ErrorClass::Transient, "x".into(), now(), 1.0);
        assert_eq!(waited(&third), Duration::from_secs(8));
        assert_eq!(m.attempt(), 3);
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut m = Machine::new(Backoffs::default());
        let state = m.failed(
            Side::Delivery,
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_mins(2)),
            },
            "the webhook answered 429".into(),
            now(),
            0.0,
        );
        assert_eq!(waited(&state), Duration::from_mins(2));
        // Without Retry-After, a throttled answer backs off like any other.
        let state = m.failed(
            Side::Delivery,
            ErrorClass::Throttled { retry_after: None },
            "x".into(),
            now(),
            0.0,
        );
        assert_eq!(waited(&state), Backoff::DELIVERY.floor);
    }

    #[test]
    fn a_refused_sign_in_of_the_source_stops_the_watcher() {
        let mut m = Machine::new(Backoffs::default());
        for class in [ErrorClass::NeedsSignIn, ErrorClass::NeedsAdmin] {
            assert_eq!(
                m.failed(
                    Side::Source,
                    class,
                    "AUTHENTICATE failed".into(),
                    now(),
                    0.3
                ),
                WatcherState::NeedsSignIn {
                    reason: "AUTHENTICATE failed".into()
                }
            );
        }
        // A sink's refused sign-in is not the account's: wait and retry.
        let state = m.failed(
            Side::Delivery,
            ErrorClass::NeedsSignIn,
            "relay refused".into(),
            now(),
            0.0,
        );
        assert_eq!(waited(&state), Backoff::DELIVERY.floor);
    }

    #[test]
    fn an_unknown_outcome_of_a_sink_stops_rather_than_resends() {
        let mut m = Machine::new(Backoffs::default());
        let state = m.failed(
            Side::Delivery,
            ErrorClass::OutcomeUnknown,
            "no answer to the final dot".into(),
            now(),
            0.0,
        );
        assert!(
            matches!(&state, WatcherState::Disabled { reason: Some(r) } if r.starts_with("no answer to the final dot")),
            "{state:?}"
        );
        // The source's unknown outcome (a move that may have happened) is retried:
        // the next round lists again and nothing is delivered twice unkeyed.
        let state = m.failed(
            Side::Source,
            ErrorClass::OutcomeUnknown,
            "x".into(),
            now(),
            0.0,
        );
        assert!(
            matches!(state, WatcherState::WaitingUntil { .. }),
            "{state:?}"
        );
    }

    #[test]
    fn sinks_and_sources_back_off_by_their_own_rules() {
        let mut m = Machine::new(Backoffs::default());
        let source = m.failed(Side::Source, ErrorClass::Transient, "x".into(), now(), 1.0);
        assert_eq!(waited(&source), Backoff::RECONNECT.ceiling(0));
        let delivery = m.failed(
            Side::Delivery,
            ErrorClass::Transient,
            "x".into(),
            now(),
            1.0,
        );
        assert_eq!(waited(&delivery), Backoff::DELIVERY.ceiling(1));
    }

    #[test]
    fn success_resets_the_attempt_count() {
        let mut m = Machine::new(Backoffs::default());
        for _ in 0..6 {
            m.failed(Side::Source, ErrorClass::Transient, "x".into(), now(), 1.0);
        }
        assert_eq!(m.attempt(), 6);
        assert_eq!(m.succeeded(), WatcherState::Idle);
        assert_eq!(m.attempt(), 0);
        let state = m.failed(Side::Source, ErrorClass::Transient, "x".into(), now(), 1.0);
        assert_eq!(waited(&state), Backoff::RECONNECT.ceiling(0));
    }

    #[test]
    fn a_passing_failure_is_retried_then_parked_after_park_after() {
        let mut p = Parking::new(3);
        let t = ErrorClass::Transient;
        assert_eq!(p.refused("m1", "hook", t), Refusal::Retry);
        assert_eq!(p.refused("m1", "hook", t), Refusal::Retry);
        assert!(!p.is_down("hook"));
        assert_eq!(p.refused("m1", "hook", t), Refusal::Park { attempts: 3 });
        assert!(p.is_down("hook"));
        // While the sink is down, the next message is parked at its first failure;
        // another sink is not affected.
        assert_eq!(p.refused("m2", "hook", t), Refusal::Park { attempts: 1 });
        assert_eq!(
            p.refused("m3", "relay", ErrorClass::Throttled { retry_after: None }),
            Refusal::Retry
        );
        // A delivery to it brings it back: failures count from the start again.
        p.accepted("hook");
        assert!(!p.is_down("hook"));
        assert_eq!(p.refused("m4", "hook", t), Refusal::Retry);
    }

    #[test]
    fn a_message_that_gets_through_starts_the_count_over() {
        let mut p = Parking::new(2);
        assert_eq!(
            p.refused("m1", "hook", ErrorClass::Transient),
            Refusal::Retry
        );
        p.delivered("m1");
        assert_eq!(
            p.refused("m1", "hook", ErrorClass::Transient),
            Refusal::Retry
        );
        // Another message failing in between does not add to the first one's count.
        assert_eq!(
            p.refused("m2", "hook", ErrorClass::Transient),
            Refusal::Retry
        );
        assert_eq!(
            p.refused("m1", "hook", ErrorClass::Transient),
            Refusal::Retry
        );
        assert_eq!(
            p.refused("m1", "hook", ErrorClass::Transient),
            Refusal::Park { attempts: 2 }
        );
    }

    #[test]
    fn a_refusal_for_good_parks_at_once_and_only_a_broken_sink_is_down() {
        let mut p = Parking::new(3);
        for class in [ErrorClass::Permanent, ErrorClass::LimitExceeded] {
            assert_eq!(
                p.refused("m1", "hook", class),
                Refusal::Park { attempts: 1 }
            );
            assert!(!p.is_down("hook"), "the message is refused, not the sink");
        }
        for class in [
            ErrorClass::Misconfigured,
            ErrorClass::NeedsSignIn,
            ErrorClass::NeedsAdmin,
        ] {
            let mut p = Parking::new(3);
            assert_eq!(
                p.refused("m1", "relay", class),
                Refusal::Park { attempts: 1 }
            );
            assert!(p.is_down("relay"));
        }
    }

    #[test]
    fn an_unknown_outcome_is_never_parked() {
        let mut p = Parking::new(1);
        for _ in 0..5 {
            assert_eq!(
                p.refused("m1", "relay", ErrorClass::OutcomeUnknown),
                Refusal::Retry
            );
        }
        assert!(!p.is_down("relay"));
        // park_after 0 means at the first failure.
        let mut p = Parking::new(0);
        assert_eq!(
            p.refused("m1", "hook", ErrorClass::Transient),
            Refusal::Park { attempts: 1 }
        );
    }

    #[test]
    fn jitter_is_a_unit() {
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    #[test]
    fn events_serialise_without_surprises() {
        let e = WatcherEvent {
            account: "alice".into(),
            state: WatcherState::WaitingUntil {
                until: now(),
                reason: "x".into(),
            },
            at: now(),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["state"]["state"], "waiting-until");
        assert_eq!(json["state"]["until"], "2027-01-15T08:00:00Z");
    }
}
