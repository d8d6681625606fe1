//! The login metrics and the middleware that records them.
//!
//! The names are the ones the original tutorial used, so its three PromQL
//! queries work unchanged. What we do differently is *where* we record: in one
//! middleware layer wrapped around the whole `/login` route. Rejections made
//! before the handler runs (bad JSON, wrong content type, a body too large, a
//! wrong method) and panics turned into 500s all pass through it, so every
//! response is counted and timed exactly once. Recording by hand in each branch
//! of the handler is how the original lost its rejected requests.
//!
//! Label values are bounded: the only label is the three-digit status code. No
//! username, path or error text ever becomes a label, since each distinct value
//! is a new time series stored by Prometheus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::{self, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tower::{Layer, Service};

// ANCHOR: status_codes
/// Every status code `/login` can answer. Their series exist at zero from
/// start-up, so a dashboard shows 0 instead of "No data" before the first error.
pub const STATUS_CODES: [StatusCode; 7] = [
    StatusCode::OK,                     // valid credentials
    StatusCode::BAD_REQUEST,            // malformed or incomplete JSON
    StatusCode::UNAUTHORIZED,           // wrong username or password
    StatusCode::METHOD_NOT_ALLOWED,     // anything but POST
    StatusCode::PAYLOAD_TOO_LARGE,      // body over the limit
    StatusCode::UNSUPPORTED_MEDIA_TYPE, // not `Content-Type: application/json`
    StatusCode::INTERNAL_SERVER_ERROR,  // a bug: a panic or a failed verification
];
// ANCHOR_END: status_codes

// ANCHOR: buckets
/// Latency buckets, in seconds, for a login that hashes a password.
///
/// A rejected request is answered in well under a millisecond; an argon2
/// verification takes about 10–15 ms of CPU in a release build, more when
/// logins queue for a core. Buckets are dense from 5 to 100 ms, where a healthy
/// login lives and where a slowdown first shows, and sparse beyond, where only
/// an overloaded server goes.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
];
// ANCHOR_END: buckets

/// The registry and the login metrics in it.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    known_codes: Vec<(StatusCode, IntCounter)>,
    latency: Histogram,
    in_flight: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric, the process collector included.
    #[must_use]
    pub fn new() -> Self {
        let registry = Registry::new();

        // ANCHOR: definitions
        let requests = IntCounterVec::new(
            Opts::new(
                "login_requests_total",
                "Login requests answered, by HTTP status code.",
            ),
            &["status_code"],
        )
        .expect("valid counter options");
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "login_request_latency_seconds",
                "Time taken to answer a login request, in seconds.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid histogram options");
        let in_flight = IntGauge::new(
            "login_requests_in_flight",
            "Login requests being handled right now.",
        )
        .expect("valid gauge options");
        // ANCHOR_END: definitions

        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        // ANCHOR: process_collector
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics registered once");
        // ANCHOR_END: process_collector

        // ANCHOR: zero_series
        // Touching a label value creates its series at zero.
        let known_codes = STATUS_CODES
            .iter()
            .map(|code| (*code, requests.with_label_values(&[code.as_str()])))
            .collect();
        // ANCHOR_END: zero_series

        Self {
            registry,
            requests,
            known_codes,
            latency,
            in_flight,
        }
    }

    /// The registry, for adding metrics of your own.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one answered request.
    pub fn observe(&self, status: StatusCode, elapsed: Duration) {
        match self.known_codes.iter().find(|(code, _)| *code == status) {
            Some((_, counter)) => counter.inc(),
            // Still bounded: a status code is three digits.
            None => self.requests.with_label_values(&[status.as_str()]).inc(),
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Marks a request as in flight until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The current value of `login_requests_total` for one status code.
    #[must_use]
    pub fn requests_with(&self, status: StatusCode) -> u64 {
        self.requests.with_label_values(&[status.as_str()]).get()
    }

    /// How many latencies the histogram has recorded.
    #[must_use]
    pub fn latency_count(&self) -> u64 {
        self.latency.get_sample_count()
    }

    /// The current value of `login_requests_in_flight`.
    #[must_use]
    pub fn in_flight_now(&self) -> i64 {
        self.in_flight.get()
    }

    /// Renders every metric in the Prometheus text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buffer = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// ANCHOR: in_flight_guard
/// Holds one unit of `login_requests_in_flight`; gives it back when dropped.
///
/// A guard rather than paired `inc`/`dec` calls: when a client disconnects,
/// the server drops the request's future mid-way and code after an `.await`
/// never runs, but destructors do.
#[must_use]
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
// ANCHOR_END: in_flight_guard

// ANCHOR: middleware
/// The layer that counts and times every response of the routes it wraps.
///
/// A hand-written tower layer rather than `axum::middleware::from_fn`: the
/// closure version boxes a future and the rest of the stack on every request,
/// which measured as most of the layer's cost (see the appendix).
#[derive(Clone)]
pub struct TrackLayer {
    metrics: Arc<Metrics>,
}

impl TrackLayer {
    /// Records into `metrics`.
    #[must_use]
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service [`TrackLayer`] wraps around a route.
#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, Req, Body> Service<Req> for Track<S>
where
    S: Service<Req, Response = http::Response<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        Tracked {
            in_flight: self.metrics.in_flight(),
            started: Instant::now(),
            metrics: Arc::clone(&self.metrics),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being handled: records its status and latency when it
    /// completes, and gives back its in-flight unit when dropped, completed
    /// or not.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        metrics: Arc<Metrics>,
        started: Instant,
        in_flight: InFlight,
    }
}

impl<F, Body, E> Future for Tracked<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            this.metrics
                .observe(response.status(), this.started.elapsed());
        }
        Poll::Ready(result)
    }
}
// ANCHOR_END: middleware
