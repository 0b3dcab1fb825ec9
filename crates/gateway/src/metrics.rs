//! Prometheus metrics, kept per gateway instance (no global recorder), rendered at `/metrics`.

use std::fmt;
use std::sync::Arc;

use metrics::{Counter, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The gateway's metrics registry.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Counter names and their help text.
const COUNTERS: &[(&str, &str)] = &[
    (
        "portcullis_decisions_total",
        "Events recorded, by kind, decision and reason code.",
    ),
    (
        "portcullis_http_requests_total",
        "HTTP requests answered, by route and status.",
    ),
    (
        "portcullis_ledger_appends_total",
        "Ledger records made durable.",
    ),
    (
        "portcullis_alert_webhook_deliveries_total",
        "Alert webhook deliveries, by outcome (delivered, failed after every attempt).",
    ),
    (
        "portcullis_alert_webhook_dropped_total",
        "Alerts dropped because the webhook queue was full (each is still a ledger event).",
    ),
    (
        "portcullis_ledger_append_failures_total",
        "Ledger appends that failed; the request that caused them was refused.",
    ),
    (
        "portcullis_http_connections_refused_total",
        "Connections the HTTP listener refused at a cap with every connection busy, by reason.",
    ),
    (
        "portcullis_http_connections_closed_total",
        "Connections the HTTP listener closed itself, by reason (header_timeout, idle_timeout, evicted).",
    ),
    (
        "portcullis_auth_failures_total",
        "Failed authentications, by surface (agent, admin, metrics) and outcome (refused, limited).",
    ),
];

/// Gauge names and their help text.
const GAUGES: &[(&str, &str)] = &[
    (
        "portcullis_budget_limit",
        "Limit of each line of a budget (micro-USD for usd), by budget, scope kind and unit.",
    ),
    (
        "portcullis_budget_spent",
        "Spend in the current window summed over a budget's lines, by budget, scope kind and unit.",
    ),
    (
        "portcullis_budget_reserved",
        "Held by live reservations summed over a budget's lines, by budget, scope kind and unit.",
    ),
    (
        "portcullis_budget_lines",
        "Lines of a budget (one per scope value with spend or holds), by budget, scope kind and unit.",
    ),
    (
        "portcullis_http_connections_open",
        "Connections the HTTP listener holds open.",
    ),
];

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        for (name, help) in COUNTERS {
            recorder.describe_counter(KeyName::from(*name), None, SharedString::from(*help));
        }
        for (name, help) in GAUGES {
            recorder.describe_gauge(KeyName::from(*name), None, SharedString::from(*help));
        }
        recorder.describe_gauge(
            KeyName::from("portcullis_build_info"),
            Some(Unit::Count),
            SharedString::from("Always 1; labels carry the version."),
        );
        let build = recorder.register_gauge(
            &Key::from_parts(
                "portcullis_build_info",
                vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
            ),
            &METADATA,
        );
        build.set(1.0);
        Self {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    /// Adds 1 to `name` with `labels`.
    pub fn increment(&self, name: &'static str, labels: &[(&'static str, String)]) {
        self.counter(name, labels).increment(1);
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, String)]) -> Counter {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(key, value)| Label::new(*key, value.clone()))
            .collect();
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// Sets gauge `name` with `labels` to `value`.
    pub fn set_gauge(&self, name: &'static str, labels: &[(&'static str, String)], value: f64) {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(key, value)| Label::new(*key, value.clone()))
            .collect();
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
            .set(value);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
