//! The smallest complete instrumented login server: `POST /login` on port 5000,
//! `GET /metrics` on port 8000, every answer counted and timed by one layer.
//! The password is compared as plain text: a demo's shortcut, not production.

// ANCHOR: metrics
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use serde_json::{Value, json};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::SignalKind;

#[derive(Clone)]
struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: Histogram,
    in_flight: IntGauge,
}

fn metrics() -> prometheus::Result<Metrics> {
    let help = "Login requests answered, by status code.";
    let requests = IntCounterVec::new(Opts::new("login_requests_total", help), &["status_code"])?;
    let buckets = vec![
        0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ];
    let options = HistogramOpts::new("login_request_latency_seconds", "Time to answer a login.");
    let latency = Histogram::with_opts(options.buckets(buckets))?;
    let in_flight = IntGauge::new("login_requests_in_flight", "Logins being answered now.")?;
    let registry = Registry::new();
    registry.register(Box::new(requests.clone()))?;
    registry.register(Box::new(latency.clone()))?;
    registry.register(Box::new(in_flight.clone()))?;
    for code in ["200", "400", "401", "405", "415", "422"] {
        requests.with_label_values(&[code]); // each series exists from the start, at 0
    }
    Ok(Metrics {
        registry,
        requests,
        latency,
        in_flight,
    })
}
// ANCHOR_END: metrics

// ANCHOR: track
/// Counts and times every response of the route it wraps, whoever produced it.
async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    metrics.in_flight.inc();
    let _in_flight = InFlight(metrics.in_flight.clone());
    let started = Instant::now();
    let response = next.run(request).await;
    let status_code = response.status();
    metrics
        .requests
        .with_label_values(&[status_code.as_str()])
        .inc();
    metrics.latency.observe(started.elapsed().as_secs_f64());
    response
}

/// Lowers the gauge when dropped, even if the request is abandoned mid-way.
struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
// ANCHOR_END: track

// ANCHOR: login
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
// ANCHOR_END: login

// ANCHOR: metrics_endpoint
async fn metrics_text(State(metrics): State<Metrics>) -> Response {
    match TextEncoder::new().encode_to_string(&metrics.registry.gather()) {
        Ok(text) => ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
// ANCHOR_END: metrics_endpoint

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = metrics()?;
    let tracked = from_fn_with_state(metrics.clone(), track);
    let app = Router::new().route("/login", routing::post(login).layer(tracked));
    let metrics_app = Router::new().route("/metrics", routing::get(metrics_text));
    let metrics_app = metrics_app.with_state(metrics);

    // LOGIN_ADDR and LOGIN_METRICS_ADDR move the listeners, as for login_server.
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
// ANCHOR_END: main
