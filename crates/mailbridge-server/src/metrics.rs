//! `/metrics`: Prometheus text exposition of what the daemon counts.
//!
//! The registry is shared: the HTTP layer counts requests by route and status class
//! here; the connector adds its families (messages fetched, delivered, parked, sent,
//! failed per account, watcher states, queue depth, delivery latency) to the same
//! registry when it starts.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
