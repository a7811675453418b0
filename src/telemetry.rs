//! Operability: the catalogue of every Prometheus series Tandem emits (each
//! one gets a `# HELP` line), the histogram buckets, the one helper that
//! counts refused updates, and the log output format.
//!
//! Adding a series: emit it where it happens (`metrics::counter!(...)`) and
//! describe it in [`describe`]; `tests/metrics.rs` fails on an undescribed one.

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::Error;

/// Buckets of every `*_seconds` histogram: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the log batch size histogram (rows per commit).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The Prometheus recorder builder: histograms with buckets (the exporter
/// would otherwise render summaries).
pub fn prometheus_builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("tandem_log_batch_rows".into()), BATCH_BUCKETS)
        })
        .expect("bucket lists are not empty")
}

/// Describes every series for the installed recorder. Call once, after
/// installing it.
pub fn describe() {
    // Cluster mode (--redis-url).
    describe_histogram!(
        "tandem_cluster_lag_seconds",
        "Cluster mode: time from another node publishing a committed update to this node receiving it."
    );
    describe_counter!(
        "tandem_cluster_catchups_total",
        "Cluster mode: catch-ups that read missed rows back from the log and applied some."
    );
    describe_counter!(
        "tandem_cluster_catchup_rows_total",
        "Cluster mode: log rows (or compacted states) applied by catch-ups."
    );
    describe_counter!(
        "tandem_cluster_redis_reconnects_total",
        "Cluster mode: times the Redis subscription was restored after a loss."
    );
    describe_gauge!(
        "tandem_cluster_redis_up",
        "Cluster mode: 1 while subscribed to Redis, 0 otherwise."
    );
    describe_counter!(
        "tandem_cluster_published_total",
        "Cluster mode: messages published to the other nodes."
    );
    describe_counter!(
        "tandem_cluster_publish_failures_total",
        "Cluster mode: messages Redis did not take (the others catch up from the log)."
    );
    describe_counter!(
        "tandem_cluster_dropped_total",
        "Cluster mode: messages dropped because the queue to Redis was full."
    );
    describe_counter!(
        "tandem_cluster_received_total",
        "Cluster mode: messages received from other nodes."
    );
    describe_counter!(
        "tandem_cluster_malformed_total",
        "Cluster mode: messages on the cluster channel that could not be decoded."
    );
    // Connections and documents.
    describe_gauge!(
        "tandem_connections",
        "Open Socket.IO connections, by dialect (native, ysocketio)."
    );
    describe_gauge!("tandem_documents_loaded", "Documents held in memory.");
    describe_counter!(
        "tandem_documents_loaded_total",
        "Documents loaded from the store into memory."
    );
    describe_counter!(
        "tandem_documents_unloaded_total",
        "Documents unloaded from memory (idle or evicted by the LRU)."
    );
    describe_histogram!(
        "tandem_document_load_seconds",
        "Time to load a document from the store (snapshot plus logged updates)."
    );
    describe_gauge!(
        "tandem_ysocketio_namespaces",
        "y-socket.io document namespaces that exist."
    );

    // Updates.
    describe_counter!(
        "tandem_updates_applied_total",
        "Document updates accepted and applied, from any source (sockets, HTTP, resyncs)."
    );
    describe_counter!(
        "tandem_updates_rejected_total",
        "Document updates refused, by error code (code label, as in PROTOCOL.md)."
    );
    describe_counter!(
        "tandem_updates_rate_limited_total",
        "Document updates refused because the socket exceeded its update budget."
    );
    describe_histogram!(
        "tandem_update_apply_seconds",
        "Time to apply an accepted update to its document and fan it out."
    );
    describe_counter!(
        "tandem_update_bytes_in_total",
        "Bytes of document updates received from clients (sockets and HTTP), accepted or not."
    );
    describe_counter!(
        "tandem_update_bytes_out_total",
        "Bytes of document updates sent to sockets (update size times deliveries)."
    );
    describe_counter!(
        "tandem_update_deliveries_total",
        "Document updates sent to sockets (one per receiving socket)."
    );

    // Awareness, sockets, errors.
    describe_counter!(
        "tandem_awareness_coalesced_total",
        "Awareness updates held back by a socket's awareness budget and merged into a later broadcast."
    );
    describe_counter!(
        "tandem_slow_consumers_disconnected_total",
        "Sockets disconnected because their send queue was full."
    );
    describe_counter!(
        "tandem_internal_errors_total",
        "Native-dialect requests answered with INTERNAL."
    );
    describe_counter!(
        "tandem_guest_sign_ins_rate_limited_total",
        "Guest sign-ins refused by the per-IP rate limit."
    );
    describe_counter!(
        "tandem_joins_rate_limited_total",
        "join-session requests refused by the per-socket join budget."
    );
    describe_counter!(
        "tandem_connections_refused_total",
        "TCP connections closed at accept (reason: per_ip_limit)."
    );

    // Persistence.
    describe_counter!(
        "tandem_log_rows_total",
        "Updates written to the durable update log."
    );
    describe_counter!(
        "tandem_log_commits_total",
        "Update log group commits (transactions)."
    );
    describe_histogram!(
        "tandem_log_batch_rows",
        "Updates per update log group commit."
    );
    describe_histogram!(
        "tandem_log_commit_seconds",
        "Time to commit one update log batch, retries included."
    );
    describe_histogram!(
        "tandem_snapshot_seconds",
        "Time to encode and store a document snapshot."
    );
}

/// The `dialect` label of `tandem_connections`.
pub fn connection_opened(dialect: &'static str) {
    metrics::gauge!("tandem_connections", "dialect" => dialect).increment(1.0);
}

/// Pairs with [`connection_opened`], from the socket's disconnect handler.
pub fn connection_closed(dialect: &'static str) {
    metrics::gauge!("tandem_connections", "dialect" => dialect).decrement(1.0);
}

/// Counts an update received from a client (`len` bytes) and, if it was
/// refused, its error code. Accepted updates are counted where they are
/// applied (`tandem_updates_applied_total`).
pub fn update_received(len: usize, refused: Option<&Error>) {
    metrics::counter!("tandem_update_bytes_in_total").increment(len as u64);
    if let Some(e) = refused {
        metrics::counter!("tandem_updates_rejected_total", "code" => e.code.as_str()).increment(1);
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global tracing subscriber (stderr, `RUST_LOG` filter).
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,socketioxide=warn,engineioxide=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}
