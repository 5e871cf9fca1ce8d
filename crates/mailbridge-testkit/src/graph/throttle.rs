//! Outlook service limits in Graph (`microsoft-protocols.md` §3.8): at most
//! `graph_concurrency_per_mailbox` requests in flight and `graph_budget_per_mailbox`
//! requests per window for each app and mailbox, and the injected `graph_429` /
//! `graph_503` faults.
//!
//! <https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits>

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::http::{StatusCode, header};
use time::OffsetDateTime;
use uuid::Uuid;

use super::errors::GraphError;
use crate::emulator::Emulator;

/// The 429 text for the concurrency limit.
pub const CONCURRENCY_MESSAGE: &str = "Application is over its MailboxConcurrency limit.";
/// The 429 text for the request budget.
pub const BUDGET_MESSAGE: &str = "Application is over its request limit.";

type Key = (Uuid, String);

/// Counters per app and mailbox.
#[derive(Debug)]
pub struct Throttle {
    counters: Mutex<Counters>,
    /// While `true`, admitted requests wait before doing their work (tests use it to
    /// hold requests in flight deterministically).
    hold: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Counters {
    in_flight: HashMap<Key, u32>,
    budget: HashMap<Key, (OffsetDateTime, u32)>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            counters: Mutex::new(Counters::default()),
            hold: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Throttle {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests of any app now in flight for `mailbox`.
    pub fn in_flight(&self, mailbox: &str) -> u32 {
        self.counters()
            .in_flight
            .iter()
            .filter(|((_, m), _)| m.eq_ignore_ascii_case(mailbox))
            .map(|(_, n)| *n)
            .sum()
    }
}

/// A request's place among the in-flight requests of its app and mailbox; released on
/// drop.
#[derive(Debug)]
pub struct Permit {
    emulator: Emulator,
    key: Key,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let throttle = &self.emulator.graph_state().throttle;
        let mut c = throttle.counters();
        if let Some(n) = c.in_flight.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.in_flight.remove(&self.key);
            }
        }
    }
}

/// Fires the injected faults, then admits the request or answers 429.
pub fn admit(emulator: &Emulator, app_id: Uuid, mailbox: &str) -> Result<Permit, GraphError> {
    let knobs = emulator.knobs();
    let retry_after = knobs.graph_retry_after_secs;
    if emulator.take_fault(|f| &mut f.graph_503) {
        return Err(GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceNotAvailable",
            "The service is temporarily unavailable. Retry the request later.",
        )
        .with_header(header::RETRY_AFTER, retry_after.to_string()));
    }
    if emulator.take_fault(|f| &mut f.graph_429) {
        return Err(GraphError::throttled(CONCURRENCY_MESSAGE, retry_after));
    }
    let key = (app_id, mailbox.to_ascii_lowercase());
    let now = emulator.now();
    let throttle = &emulator.graph_state().throttle;
    let mut c = throttle.counters();
    let window = time::Duration::seconds(knobs.graph_budget_window_secs.max(1));
    let (start, used) = c.budget.entry(key.clone()).or_insert((now, 0));
    if now >= *start + window {
        *start = now;
        *used = 0;
    }
    if *used >= knobs.graph_budget_per_mailbox {
        let wait = (*start + window - now).whole_seconds().max(1);
        return Err(GraphError::throttled(
            BUDGET_MESSAGE,
            u64::try_from(wait).unwrap_or(retry_after),
        ));
    }
    *used += 1;
    let flying = c.in_flight.entry(key.clone()).or_insert(0);
    if *flying >= knobs.graph_concurrency_per_mailbox {
        return Err(GraphError::throttled(CONCURRENCY_MESSAGE, retry_after));
    }
    *flying += 1;
    drop(c);
    Ok(Permit {
        emulator: emulator.clone(),
        key,
    })
}

/// Waits while requests are held (see [`hold_requests`]).
pub async fn wait_if_held(emulator: &Emulator) {
    let mut rx = emulator.graph_state().throttle.hold.subscribe();
    let _ = rx.wait_for(|held| !*held).await;
}

/// Holds admitted Graph requests in flight until the guard is dropped: a test can then
/// put exactly N requests in flight and see the next one throttled.
pub fn hold_requests(emulator: &Emulator) -> HoldGuard {
    emulator.graph_state().throttle.hold.send_replace(true);
    HoldGuard {
        emulator: emulator.clone(),
    }
}

/// Releases held requests on drop.
#[derive(Debug)]
pub struct HoldGuard {
    emulator: Emulator,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.emulator
            .graph_state()
            .throttle
            .hold
            .send_replace(false);
    }
}

/// Graph requests now in flight for `mailbox` (all apps).
pub fn in_flight(emulator: &Emulator, mailbox: &str) -> u32 {
    emulator.graph_state().throttle.in_flight(mailbox)
}
