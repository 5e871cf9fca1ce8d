//! `/metrics`: Prometheus text exposition of what the daemon counts.
//!
//! The registry is shared: the HTTP layer counts requests by route and status class
//! here; [`DaemonMetrics`] adds the daemon's families (messages per account and
//! outcome, delivery time, watchers by state, the outbox by account and state, parked
//! deliveries) to the same registry when `mailbridge serve` starts.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's pattern (`/api/v1/accounts/{id}`), never the raw path.
    pub route: String,
    pub method: String,
    /// `2xx`, `4xx`, ...
    pub status: String,
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mailbridge");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status class",
            http_requests.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            http_requests,
        }
    }
}

impl Metrics {
    /// Adds families to the registry (the connector's).
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        if let Ok(mut registry) = self.registry.lock() {
            add(&mut registry);
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

/// Labels of a message counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub account: String,
    /// `delivered`, `unrouted`, `parked`, `parked-before`.
    pub outcome: String,
}

/// Labels of a watcher gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `connecting`, `syncing`, `idle`, `waiting-until`, `needs-sign-in`, `disabled`.
    pub state: String,
}

/// Labels of an outbox gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxLabels {
    /// The account's id (names change; ids do not).
    pub account: String,
    /// `queued`, `sending`, `sent`, `retrying`, `failed`, `outcome-unknown`.
    pub state: String,
}

/// The daemon's families: what its watchers did with each message, how long a
/// delivery took, how many watchers are in each state, the outbox by account and
/// state, and the parked deliveries.
#[derive(Debug, Clone)]
pub struct DaemonMetrics {
    pub messages: Family<MessageLabels, Counter>,
    pub delivery_seconds: Histogram,
    pub watchers: Family<StateLabels, Gauge>,
    pub outbox: Family<OutboxLabels, Gauge>,
    pub parked: Gauge,
    pub token_requests: Counter,
    /// The sign-in service's count when last looked at.
    token_requests_seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl DaemonMetrics {
    /// The families, registered in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            messages: Family::default(),
            // 5 ms to about 82 s.
            delivery_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            watchers: Family::default(),
            outbox: Family::default(),
            parked: Gauge::default(),
            token_requests: Counter::default(),
            token_requests_seen: std::sync::Arc::default(),
        };
        metrics.register(|r| {
            r.register(
                "messages",
                "Messages the watchers handled, by account and outcome (delivered, unrouted, parked, parked-before)",
                this.messages.clone(),
            );
            r.register(
                "delivery_seconds",
                "Time from the start of a message's fetch to the last sink's answer",
                this.delivery_seconds.clone(),
            );
            r.register(
                "watchers",
                "Watchers of this instance by state",
                this.watchers.clone(),
            );
            r.register(
                "outbox_messages",
                "Messages in the outbox by account id and state (queue depth: queued, sending, retrying)",
                this.outbox.clone(),
            );
            r.register(
                "token_requests",
                "Requests sent to the identity platform (token, refresh, device code)",
                this.token_requests.clone(),
            );
            r.register(
                "parked_deliveries",
                "Messages parked because a sink kept refusing them",
                this.parked.clone(),
            );
        });
        this
    }

    /// The hook the watchers call for every message.
    pub fn message_hook(&self) -> mailbridge_connector::watcher::MessageHook {
        let this = self.clone();
        mailbridge_connector::watcher::MessageHook(std::sync::Arc::new(
            move |account, outcome, took| {
                this.messages
                    .get_or_create(&MessageLabels {
                        account: account.to_owned(),
                        outcome: outcome.as_str().to_owned(),
                    })
                    .inc();
                if outcome == mailbridge_connector::watcher::MessageOutcome::Delivered {
                    this.delivery_seconds.observe(took.as_secs_f64());
                }
            },
        ))
    }

    /// Keeps the watcher, outbox and parked gauges current until `cancel`: watcher
    /// states as they change, the store's counts every `every`.
    pub fn follow(
        &self,
        daemon: crate::daemon::DaemonHandle,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let mut events = daemon.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    event = events.recv() => {
                        if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            break;
                        }
                        this.count_states(&daemon);
                    }
                    _ = tick.tick() => {
                        this.count_states(&daemon);
                        this.count_store(&daemon).await;
                    }
                }
            }
        })
    }

    fn count_states(&self, daemon: &crate::daemon::DaemonHandle) {
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for s in [
            "connecting",
            "syncing",
            "idle",
            "waiting-until",
            "needs-sign-in",
            "disabled",
        ] {
            counts.insert(s.to_owned(), 0);
        }
        for event in daemon.states() {
            let name = serde_json::to_value(&event.state)
                .ok()
                .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned))
                .unwrap_or_default();
            *counts.entry(name).or_default() += 1;
        }
        for (state, n) in counts {
            self.watchers.get_or_create(&StateLabels { state }).set(n);
        }
    }

    async fn count_store(&self, daemon: &crate::daemon::DaemonHandle) {
        let now = daemon.token_requests();
        let before = self
            .token_requests_seen
            .swap(now, std::sync::atomic::Ordering::Relaxed);
        self.token_requests.inc_by(now.saturating_sub(before));
        let store = daemon.store();
        match store.outbox_counts().await {
            Ok(rows) => {
                self.outbox.clear();
                for (account, state, n) in rows {
                    self.outbox
                        .get_or_create(&OutboxLabels {
                            account: account.to_string(),
                            state: state.as_str().to_owned(),
                        })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            Err(e) => {
                tracing::warn!(error = %mailbridge_types::error_chain(&e), "failed to count the outbox for the metrics");
            }
        }
        match store.parked_count(None).await {
            Ok(n) => {
                self.parked.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(e) => {
                tracing::warn!(error = %mailbridge_types::error_chain(&e), "failed to count the parked deliveries for the metrics");
            }
        }
    }
}
