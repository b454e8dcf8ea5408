//! `GET /metrics` in the Prometheus text format, and the request log.
//!
//! The engine records through the `metrics` facade (tasks dispatched and
//! completed per executor, claim batch sizes, dispatch and sweep
//! durations); this module installs the Prometheus recorder once per
//! process, times every HTTP request (webhook latency included), and sets
//! the runs-by-status gauges from one query at each scrape.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds buckets for request, dispatch and sweep durations.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for claim batch sizes.
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH))
            .expect("static bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder (a test's, an embedding host's) keeps its place;
        // this handle then renders what was recorded through it alone.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Logs each request at info (method, route, status, duration) and records
/// `ork_http_requests_total` and `ork_http_request_seconds` by route.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    tracing::info!(%method, %route, status, ms = seconds * 1000.0, "request");
    let labels = [
        ("route", route),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!("ork_http_requests_total", &labels).increment(1);
    metrics::histogram!("ork_http_request_seconds", &labels[..1]).record(seconds);
    response
}
