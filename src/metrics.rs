//! The login metrics and the middleware that records them (and writes each
//! request's log line).
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
//!
//! Next to the login metrics sit the connection metrics of the login listener
//! (open connections, the budget, and why each connection ended, from a fixed
//! list of reasons) and one counter for requests to paths the server does not
//! serve: what an attacker does to the listener is visible too.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ConnectInfo;
use axum::http::{self, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tower::{Layer, Service};

use crate::collector::ReadAtScrape;
use crate::logging;

// ANCHOR: status_codes
/// Every status code `/login` can answer. Their series exist at zero from
/// start-up, so a dashboard shows 0 instead of "No data" before the first error.
pub const STATUS_CODES: [StatusCode; 11] = [
    StatusCode::OK,                     // valid credentials
    StatusCode::BAD_REQUEST,            // malformed or incomplete JSON
    StatusCode::UNAUTHORIZED,           // wrong username or password
    StatusCode::METHOD_NOT_ALLOWED,     // anything but POST
    StatusCode::REQUEST_TIMEOUT,        // the body did not arrive in time
    StatusCode::PAYLOAD_TOO_LARGE,      // body over the limit
    StatusCode::UNSUPPORTED_MEDIA_TYPE, // not `Content-Type: application/json`
    StatusCode::TOO_MANY_REQUESTS,      // this address made too many attempts
    CLIENT_CLOSED_REQUEST,              // the client went away before the answer
    StatusCode::INTERNAL_SERVER_ERROR,  // a bug: a panic or a failed verification
    StatusCode::SERVICE_UNAVAILABLE,    // too busy: shed instead of queued
];

/// 499, the status nginx records for a request whose client closed the
/// connection before the answer. Nothing is sent: it is only recorded.
pub const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(code) => code,
    Err(_) => panic!("499 is a valid status code"),
};
// ANCHOR_END: status_codes

// ANCHOR: buckets
/// Latency buckets, in seconds, for a login that hashes a password.
///
/// A rejected request is answered in well under a millisecond; an argon2
/// verification takes tens of milliseconds of CPU (the book's costs appendix
/// measures it), more when logins queue for a core. Buckets are dense from 5 to 100 ms, where a healthy
/// login lives and where a slowdown first shows, and sparse beyond, up to the
/// 10 s an overloaded server (or a client sending its body slowly, cut off by
/// the 10 s body timeout) reaches: past the last bound, latencies cannot be
/// told apart.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
// ANCHOR_END: buckets

// ANCHOR: closed_reasons
/// Why a connection to the login listener ended: the `reason` label of
/// `login_connections_closed_total`, a fixed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The connection ended normally: the client closed it between requests,
    /// or asked for no keep-alive.
    Completed,
    /// Refused as soon as it was accepted: the connection budget was full.
    OverBudget,
    /// No complete request header arrived within the header timeout: a
    /// stalled (slowloris) client, or one that connected and said nothing.
    HeaderTimeout,
    /// After at least one request, the next header did not arrive within the
    /// header timeout: usually an idle keep-alive connection being closed.
    IdleTimeout,
    /// Malformed HTTP, answered 400 (or 505) by hyper itself.
    Malformed,
    /// A request line or header over hyper's limits, answered 431 (or 414)
    /// by hyper itself.
    TooLarge,
    /// The client reset the connection or closed it mid-request.
    ClientGone,
    /// Still open when the shutdown grace period ran out, and closed.
    Shutdown,
    /// Closed as soon as it was accepted: its address already held as many
    /// connections as one client may.
    ClientOverBudget,
    /// The client stopped reading: an answer waited in full socket buffers,
    /// with nothing more written for the write timeout, and was given up.
    WriteTimeout,
}

impl Closed {
    /// Every reason, so that each series exists at zero from start-up.
    pub const ALL: [Closed; 10] = [
        Closed::Completed,
        Closed::OverBudget,
        Closed::ClientOverBudget,
        Closed::HeaderTimeout,
        Closed::IdleTimeout,
        Closed::WriteTimeout,
        Closed::Malformed,
        Closed::TooLarge,
        Closed::ClientGone,
        Closed::Shutdown,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Completed => "completed",
            Closed::OverBudget => "over_budget",
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Malformed => "malformed",
            Closed::TooLarge => "too_large",
            Closed::ClientGone => "client_gone",
            Closed::Shutdown => "shutdown",
            Closed::ClientOverBudget => "client_over_budget",
            Closed::WriteTimeout => "write_timeout",
        }
    }
}
// ANCHOR_END: closed_reasons

// ANCHOR: refused_reasons
/// Why the metrics listener closed a connection as soon as it accepted it: the
/// `reason` label of `login_metrics_connections_refused_total`, a fixed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address is not on the allow-list (`--metrics-allow`).
    NotAllowed,
    /// The listener's budget was full.
    OverBudget,
    /// The address already held as many connections as one client may.
    ClientOverBudget,
}

impl Refused {
    /// Every reason, so that each series exists at zero from start-up.
    pub const ALL: [Refused; 3] = [
        Refused::NotAllowed,
        Refused::OverBudget,
        Refused::ClientOverBudget,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::NotAllowed => "not_allowed",
            Refused::OverBudget => "over_budget",
            Refused::ClientOverBudget => "client_over_budget",
        }
    }
}
// ANCHOR_END: refused_reasons

// ANCHOR: unauthorized_reasons
/// Why the metrics listener answered a scrape 401: the `reason` label of
/// `login_metrics_scrapes_unauthorized_total`, a fixed list that never holds
/// a user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// The request carried no `Authorization` header.
    Missing,
    /// It carried one, and it matched no user or token.
    Wrong,
}

impl Unauthorized {
    /// Every reason, so that each series exists at zero from start-up.
    pub const ALL: [Unauthorized; 2] = [Unauthorized::Missing, Unauthorized::Wrong];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Unauthorized::Missing => "missing",
            Unauthorized::Wrong => "wrong",
        }
    }
}
// ANCHOR_END: unauthorized_reasons

// ANCHOR: handshake_reasons
/// Why the metrics listener gave up a TLS handshake: the `reason` label of
/// `login_metrics_tls_handshakes_failed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailed {
    /// The client's first bytes were not TLS that the server accepts: plain
    /// HTTP, a protocol version below the minimum, a scanner.
    Error,
    /// The handshake did not finish within the listener's idle timeout.
    Timeout,
}

impl HandshakeFailed {
    /// Every reason, so that each series exists at zero from start-up.
    pub const ALL: [HandshakeFailed; 2] = [HandshakeFailed::Error, HandshakeFailed::Timeout];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailed::Error => "error",
            HandshakeFailed::Timeout => "timeout",
        }
    }
}
// ANCHOR_END: handshake_reasons

/// A counter with one label, `reason`, whose series for each of `reasons` exist
/// at zero from start-up, so that a rate over any of them does too.
fn by_reason(
    name: &str,
    help: &str,
    reasons: impl IntoIterator<Item = &'static str>,
) -> IntCounterVec {
    let counter =
        IntCounterVec::new(Opts::new(name, help), &["reason"]).expect("valid counter options");
    for reason in reasons {
        counter.with_label_values(&[reason]);
    }
    counter
}

/// The registry and the login metrics in it.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    known_codes: Vec<(StatusCode, IntCounter)>,
    latency: Histogram,
    in_flight: IntGauge,
    connections_open: IntGauge,
    connections_max: IntGauge,
    connections_closed: IntCounterVec,
    unmatched: IntCounter,
    scrape_refusals: IntCounterVec,
    unauthorized_scrapes: IntCounterVec,
    failed_handshakes: IntCounterVec,
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

        // ANCHOR: connection_definitions
        let connections_open = IntGauge::new(
            "login_connections_open",
            "Connections open on the login listener right now.",
        )
        .expect("valid gauge options");
        let connections_max = IntGauge::new(
            "login_connections_max",
            "The login listener's connection budget: more are closed at once.",
        )
        .expect("valid gauge options");
        let connections_closed = by_reason(
            "login_connections_closed_total",
            "Connections to the login listener that ended, by reason.",
            Closed::ALL.map(Closed::as_str),
        );
        let unmatched = IntCounter::new(
            "login_unmatched_requests_total",
            "Requests to the login listener for a path it does not serve (answered 404).",
        )
        .expect("valid counter options");
        let scrape_refusals = by_reason(
            "login_metrics_connections_refused_total",
            "Connections the metrics listener closed as soon as it accepted them, by reason.",
            Refused::ALL.map(Refused::as_str),
        );
        let unauthorized_scrapes = by_reason(
            "login_metrics_scrapes_unauthorized_total",
            "Scrapes the metrics listener answered 401, by reason: credentials missing or wrong.",
            Unauthorized::ALL.map(Unauthorized::as_str),
        );
        let failed_handshakes = by_reason(
            "login_metrics_tls_handshakes_failed_total",
            "TLS handshakes the metrics listener gave up, by reason: an error or a timeout.",
            HandshakeFailed::ALL.map(HandshakeFailed::as_str),
        );
        // ANCHOR_END: connection_definitions

        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(in_flight.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_max.clone()),
            Box::new(connections_closed.clone()),
            Box::new(unmatched.clone()),
            Box::new(scrape_refusals.clone()),
            Box::new(unauthorized_scrapes.clone()),
            Box::new(failed_handshakes.clone()),
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
            connections_open,
            connections_max,
            connections_closed,
            unmatched,
            scrape_refusals,
            unauthorized_scrapes,
            failed_handshakes,
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
    pub fn mark_in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts a request for a path the login listener does not serve.
    pub fn count_unmatched(&self) {
        self.unmatched.inc();
    }

    /// Publishes the login listener's connection budget.
    pub fn set_connection_budget(&self, max: usize) {
        self.connections_max
            .set(i64::try_from(max).unwrap_or(i64::MAX));
    }

    /// Counts a connection that ended for `reason` (one that was never open,
    /// like a refused one, included).
    pub fn count_closed_connection(&self, reason: Closed) {
        self.connections_closed
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts a connection the metrics listener refused.
    pub fn count_refused_scrape_connection(&self, reason: Refused) {
        self.scrape_refusals
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts a scrape answered 401.
    pub fn count_unauthorized_scrape(&self, reason: Unauthorized) {
        self.unauthorized_scrapes
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts a TLS handshake the metrics listener gave up.
    pub fn count_failed_handshake(&self, reason: HandshakeFailed) {
        self.failed_handshakes
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Marks a connection as open until the returned guard is dropped.
    pub fn mark_connection_open(self: &Arc<Self>) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection {
            metrics: Arc::clone(self),
            closed: None,
        }
    }

    /// Registers a gauge whose value is read from `read` at each scrape: for
    /// state that lives elsewhere (the hashing queue, the throttle's memory),
    /// read when Prometheus asks rather than copied on every change. A gauge of
    /// the same name registered before is replaced.
    pub fn gauge_fn(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> usize + Send + Sync + 'static,
    ) {
        let gauge = ReadAtScrape::gauge(name, help, read);
        let _ = self.registry.unregister(Box::new(gauge.same_name()));
        self.registry
            .register(Box::new(gauge))
            .expect("unique metric names");
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

// ANCHOR: open_connection
/// One open connection of the login listener. Dropped without a reason, as
/// when the shutdown grace runs out and the connection's task is cancelled,
/// it is counted as [`Closed::Shutdown`].
#[must_use]
pub struct OpenConnection {
    metrics: Arc<Metrics>,
    closed: Option<Closed>,
}

impl OpenConnection {
    /// Records why the connection ended; counted when the guard is dropped.
    pub fn close(mut self, reason: Closed) {
        self.closed = Some(reason);
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
        self.metrics
            .count_closed_connection(self.closed.unwrap_or(Closed::Shutdown));
    }
}
// ANCHOR_END: open_connection

// ANCHOR: middleware
/// The layer that counts and times every response of the routes it wraps, and
/// writes its log line ([`logging::answered`]).
///
/// One layer for both, so that the log and the metrics agree: every request
/// counted is logged once, with the same status, 499s for abandoned requests
/// included; and the request's clock is read once, not once per layer.
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

impl<S, B, Body> Service<http::Request<B>> for Track<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        Tracked {
            pending: Pending {
                metrics: Arc::clone(&self.metrics),
                started: Instant::now(),
                line: RequestLine::of(&request),
                _in_flight: self.metrics.mark_in_flight(),
                answered: false,
            },
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being handled: records its status and latency when it
    /// completes, or 499 and the time it lasted when it is dropped first.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        pending: Pending,
    }
}

/// What a request still owes the metrics. A destructor rather than code after
/// an `.await`: when a client disconnects, hyper drops the request's future
/// wherever it is, and only destructors still run.
struct Pending {
    metrics: Arc<Metrics>,
    started: Instant,
    line: RequestLine,
    /// Held only for its destructor.
    _in_flight: InFlight,
    answered: bool,
}

impl Pending {
    fn answer(&mut self, status: StatusCode) {
        self.answered = true;
        let elapsed = self.started.elapsed();
        self.metrics.observe(status, elapsed);
        let RequestLine { method, uri, peer } = &self.line;
        logging::answered(method, uri.path(), *peer, status, elapsed);
    }
}

/// What the log line says about the request, taken before the request is
/// handed on (the handler consumes it).
struct RequestLine {
    /// Cut to [`logging::METHOD_MAX`] characters: a method is a token of any
    /// length the client likes.
    method: Cow<'static, str>,
    /// Only its path is logged: a query string could hold secrets. The
    /// layer wraps `/login` only, so it is always that path.
    uri: http::Uri,
    /// Absent for a request handed to the router in-process (a test). An
    /// IPv4-mapped IPv6 address is written as the IPv4 address it carries.
    peer: Option<IpAddr>,
}

impl RequestLine {
    fn of<B>(request: &http::Request<B>) -> Self {
        Self {
            method: logging::method(request.method()),
            uri: request.uri().clone(),
            peer: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip().to_canonical()),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(CLIENT_CLOSED_REQUEST);
        }
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
        // A service error means no response at all: the server failed it.
        let status = result
            .as_ref()
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, http::Response::status);
        this.pending.answer(status);
        Poll::Ready(result)
    }
}
// ANCHOR_END: middleware
