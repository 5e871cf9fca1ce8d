//! Knobs: lifetimes, propagation delays, limits and injected faults.
//!
//! Every knob has Microsoft's default (or the value named in
//! `microsoft-protocols.md` §8.3) and can be set in the tenant TOML under `[knobs]` or
//! changed at run time through [`crate::Emulator::update_knobs`].

use serde::{Deserialize, Serialize};

/// Timing, limits and faults of the emulated tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Knobs {
    /// Access-token lifetime in seconds (Microsoft: 60-90 minutes, randomised).
    pub access_token_lifetime_secs: i64,
    /// Refresh tokens expire after this many seconds without use (Microsoft: 90 days).
    pub refresh_token_idle_secs: i64,
    /// Whether a refresh token stops working once it has been exchanged for a new one.
    /// Microsoft keeps the old one valid for a while, so the default is `false`.
    pub revoke_rotated_refresh_tokens: bool,
    /// Authorization-code lifetime in seconds (Microsoft: about 10 minutes).
    pub authorization_code_lifetime_secs: i64,
    /// Device-code `expires_in` (Microsoft: 900).
    pub device_code_expires_secs: i64,
    /// Device-code polling `interval` (Microsoft: 5).
    pub device_code_interval_secs: i64,
    /// Answer the next N device-code polls with `slow_down`.
    pub device_code_slow_down_polls: u32,
    /// Allowed clock skew for client assertions, in seconds.
    pub clock_skew_secs: i64,
    /// Require a PKCE `code_challenge` from public clients.
    pub require_pkce: bool,
    /// Seconds before Exchange-side changes (service principals, mailbox permissions,
    /// access policies) take effect (Microsoft: minutes to hours).
    pub exchange_propagation_delay_secs: i64,
    /// Concurrent Graph requests allowed per mailbox before 429 (Microsoft: 4).
    pub graph_concurrency_per_mailbox: u32,
    /// Graph requests allowed per mailbox in `graph_budget_window_secs` (Microsoft: 10,000 in 600 s).
    pub graph_budget_per_mailbox: u32,
    pub graph_budget_window_secs: i64,
    /// `Retry-After` sent with Graph 429 answers, in seconds.
    pub graph_retry_after_secs: u64,
    /// EWS `BackOffMilliseconds` in `ErrorServerBusy`.
    pub ews_backoff_ms: u64,
    /// Concurrent SMTP submission sessions per mailbox before `432 4.3.2` at the end of
    /// DATA (Microsoft: 3; 0 = unlimited).
    pub smtp_concurrency_per_mailbox: u32,
    /// Faults to inject.
    pub faults: Faults,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            access_token_lifetime_secs: 3599,
            refresh_token_idle_secs: 90 * 24 * 3600,
            revoke_rotated_refresh_tokens: false,
            authorization_code_lifetime_secs: 600,
            device_code_expires_secs: 900,
            device_code_interval_secs: 5,
            device_code_slow_down_polls: 0,
            clock_skew_secs: 300,
            require_pkce: true,
            exchange_propagation_delay_secs: 0,
            graph_concurrency_per_mailbox: 4,
            graph_budget_per_mailbox: 10_000,
            graph_budget_window_secs: 600,
            graph_retry_after_secs: 2,
            ews_backoff_ms: 1_000,
            smtp_concurrency_per_mailbox: 3,
            faults: Faults::default(),
        }
    }
}

/// Injected faults. Counters count down as they fire.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Answer the next N token requests with HTTP 503 `temporarily_unavailable`.
    pub token_5xx: u32,
    /// Answer the next N token requests with HTTP 429 and this `Retry-After`.
    pub token_429: u32,
    pub token_retry_after_secs: u64,
    /// Delay every token answer by this many milliseconds.
    pub token_delay_ms: u64,
    /// Answer the next N Graph requests with 429 `ApplicationThrottled`.
    pub graph_429: u32,
    /// Answer the next N Graph requests with 503 `ServiceUnavailable`.
    pub graph_503: u32,
    /// Answer the next N EWS requests with `ErrorServerBusy`.
    pub ews_server_busy: u32,
}
