//! The minimal login server of Step 1 with `prometheus-client`, the Prometheus
//! project's own Rust client: the same names, label, buckets and ports, plus what
//! the `prometheus` crate cannot do. The latency histogram has native buckets as
//! well as the classic ones, served as protobuf to a scraper that asks for it, and
//! every answer carries its request's `trace_id` as an exemplar, written in the
//! request's log line too so that the two can be joined.

// ANCHOR: metrics
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use prometheus_client::encoding::{EncodeLabelSet, prometheus_protobuf, text};
use prometheus_client::metrics::exemplar::CounterWithExemplar;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, NativeHistogramConfig};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::SignalKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status_code: u16,
}

/// The exemplar's labels: the request's id, named as tracing systems name it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Trace {
    trace_id: String,
}

#[derive(Clone)]
struct Metrics {
    registry: Arc<Registry>,
    requests: Family<Status, CounterWithExemplar<Trace>>,
    latency: Histogram,
    in_flight: Gauge,
}

fn metrics() -> Metrics {
    let requests = Family::<Status, CounterWithExemplar<Trace>>::default();
    let buckets = [
        0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ];
    // Each native bucket at most 1.1 times as wide as the one below, 100 at most.
    let native = NativeHistogramConfig::new(1.1).max_buckets(100);
    let latency = Histogram::new_classic_and_native(buckets, native);
    let in_flight = Gauge::default();
    let mut registry = Registry::default();
    // The crate adds `_total` to a counter's name: this is `login_requests_total`.
    let help = "Login requests answered, by status code";
    registry.register("login_requests", help, requests.clone());
    let help = "Time to answer a login";
    registry.register("login_request_latency_seconds", help, latency.clone());
    let help = "Logins being answered now";
    registry.register("login_requests_in_flight", help, in_flight.clone());
    for status_code in [200, 400, 401, 405, 415, 422] {
        let _ = requests.get_or_create(&Status { status_code }); // each series at 0 from the start
    }
    Metrics {
        registry: Arc::new(registry),
        requests,
        latency,
        in_flight,
    }
}
// ANCHOR_END: metrics

// ANCHOR: track
/// Counts and times every response of the route it wraps, and logs it with the
/// request's id, which the count carries as its exemplar.
async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    metrics.in_flight.inc();
    let _in_flight = InFlight(metrics.in_flight.clone());
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status_code = response.status().as_u16();
    println!("{method} /login {status_code} {seconds:.6}s trace_id={trace_id}");
    metrics
        .requests
        .get_or_create(&Status { status_code })
        .inc_by(1, Some(Trace { trace_id }), None);
    metrics.latency.observe(seconds);
    response
}

/// Lowers the gauge when dropped, even if the request is abandoned mid-way.
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
// ANCHOR_END: track

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(Json(credentials): Json<Credentials>) -> (StatusCode, Json<Value>) {
    if credentials.username == "user" && credentials.password == "pass" {
        (StatusCode::OK, Json(json!({"message": "Login successful"})))
    } else {
        let message = json!({"message": "Invalid username or password"});
        (StatusCode::UNAUTHORIZED, Json(message))
    }
}

// ANCHOR: metrics_endpoint
/// What Prometheus asks for first when it ingests native histograms.
const PROTOBUF: &str = "application/vnd.google.protobuf";
const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Protobuf, with the native buckets, to a scraper that accepts it; OpenMetrics
/// text, with the classic buckets and the exemplars, to any other.
async fn metrics_page(State(metrics): State<Metrics>, headers: HeaderMap) -> Response {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    if accept.is_some_and(|accept| accept.contains(PROTOBUF)) {
        match prometheus_protobuf::encode_to_vec(&metrics.registry) {
            Ok(bytes) => ([(CONTENT_TYPE, PROTOBUF_CONTENT_TYPE)], bytes).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    } else {
        let mut page = String::new();
        match text::encode(&mut page, &metrics.registry) {
            Ok(()) => ([(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], page).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}
// ANCHOR_END: metrics_endpoint

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = metrics();
    let tracked = from_fn_with_state(metrics.clone(), track);
    let app = Router::new().route("/login", routing::post(login).layer(tracked));
    let metrics_app = Router::new().route("/metrics", routing::get(metrics_page));
    let metrics_app = metrics_app.with_state(metrics);
    // ANCHOR_END: main

    let address = |name: &str, default: &str| std::env::var(name).unwrap_or(default.into());
    let login = TcpListener::bind(address("LOGIN_ADDR", "127.0.0.1:5000")).await?;
    let scrape = TcpListener::bind(address("LOGIN_METRICS_ADDR", "127.0.0.1:8000")).await?;
    let (login_at, scrape_at) = (login.local_addr()?, scrape.local_addr()?);
    let shutdown = shutdown_signal()?;
    println!("login on http://{login_at}/login, metrics on http://{scrape_at}/metrics");
    // The metrics listener ends with the process; logins in progress are finished first.
    tokio::spawn(axum::serve(scrape, metrics_app).into_future());
    axum::serve(login, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C, or on the SIGTERM that `docker stop` and Kubernetes send.
/// SIGTERM is caught from the moment this returns, before the server says where it listens.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        let terminate = terminate.recv();
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
    })
}
