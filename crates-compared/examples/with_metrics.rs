//! The minimal login server of Step 1 with the `metrics` facade and its Prometheus
//! exporter, `metrics-exporter-prometheus`, as axum's own example instruments a
//! router: the same names, label, buckets and ports.

// ANCHOR: metrics
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::SignalKind;

/// Installs the exporter as the process' one recorder; the handle renders `/metrics`.
fn metrics() -> Result<PrometheusHandle, BuildError> {
    let buckets = [
        0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ];
    // Without buckets the exporter renders a histogram as a summary (quantiles).
    let latency = Matcher::Full("login_request_latency_seconds".to_owned());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(latency, &buckets)?
        .install_recorder()?;
    let help = "Login requests answered, by status code.";
    describe_counter!("login_requests_total", help);
    let help = "Time to answer a login.";
    describe_histogram!("login_request_latency_seconds", Unit::Seconds, help);
    describe_gauge!("login_requests_in_flight", "Logins being answered now.");
    for code in ["200", "400", "401", "405", "415", "422"] {
        counter!("login_requests_total", "status_code" => code).absolute(0); // each at 0 from the start
    }
    let _ = histogram!("login_request_latency_seconds"); // shown, at 0, before the first login
    gauge!("login_requests_in_flight").set(0);
    Ok(handle)
}
// ANCHOR_END: metrics

// ANCHOR: track
/// Counts and times every response of the route it wraps, whoever produced it.
async fn track(request: Request, next: Next) -> Response {
    gauge!("login_requests_in_flight").increment(1);
    let _in_flight = InFlight;
    let started = Instant::now();
    let response = next.run(request).await;
    let status_code = response.status().as_u16().to_string();
    counter!("login_requests_total", "status_code" => status_code).increment(1);
    histogram!("login_request_latency_seconds").record(started.elapsed());
    response
}

/// Lowers the gauge when dropped, even if the request is abandoned mid-way.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!("login_requests_in_flight").decrement(1);
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
async fn metrics_page(State(handle): State<PrometheusHandle>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(CONTENT_TYPE, content_type)], handle.render()).into_response()
}
// ANCHOR_END: metrics_endpoint

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = metrics()?;
    let tracked = middleware::from_fn(track);
    let app = Router::new().route("/login", routing::post(login).layer(tracked));
    let metrics_app = Router::new().route("/metrics", routing::get(metrics_page));
    let metrics_app = metrics_app.with_state(handle);
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
