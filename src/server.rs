//! Running the two listeners and stopping them cleanly.
//!
//! The metrics listener is separate from the application listener, as in the
//! original tutorial, for two reasons: the application port can be exposed to
//! clients while `/metrics` stays on an internal interface, and a scrape never
//! queues behind login traffic.
//!
//! [`serve`] takes listeners that are already bound instead of addresses, so a
//! test can bind port 0 and ask the listener which port it got.
//!
//! It serves connections with hyper's HTTP/1 server directly rather than with
//! `axum::serve`, because that gives hyper no timer: without one, hyper's
//! header read timeout never fires and a client that sends half a header holds
//! its connection forever. Here every connection on both listeners gets a
//! header timeout, a bound on its header block and buffers, a write timeout
//! and a most of requests; each listener has a connection budget with a share
//! per client address; and shutdown has a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, header};
use governor::{DefaultDirectRateLimiter, Quota};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_io_timeout::TimeoutWriter;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::limits::{CONNECTION_BUFFER, HEADER_BLOCK_LIMIT, Limits, METRICS_CONNECTIONS};
use crate::metrics::{Closed, HandshakeFailed, Metrics, OpenConnection, Refused};
use crate::metrics_listener::MetricsListener;
use crate::routes::{AppState, app, metrics_app};
use crate::throttle::Throttle;

// ANCHOR: serve
/// Serves `POST /login` on `app_listener` and `GET /metrics` on
/// `metrics_listener` until `shutdown` completes, then gives requests in
/// progress on both up to `state.limits.shutdown_grace` to finish.
pub async fn serve(
    app_listener: TcpListener,
    metrics_listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop, stopped) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        // Dropping the sender wakes every receiver.
        drop(stop);
    });
    let limits = state.limits;
    let metrics = Arc::clone(&state.metrics);
    let access = Arc::clone(&state.metrics_listener);
    let janitor = tokio::spawn(forget_idle_clients(Arc::clone(&state.throttle)));

    let logins = Listener {
        socket: app_listener,
        budget: limits.max_connections,
        header_timeout: limits.header_timeout,
        allowed: None,
        per_client: PerClient::new(
            limits.max_connections_per_client,
            Some(Arc::clone(&state.throttle)),
        ),
        records: Records::Connections(Arc::clone(&metrics)),
        router: app(state),
        tls: None,
    };
    let scrapes = Listener {
        socket: metrics_listener,
        router: metrics_app(Arc::clone(&metrics), access.web.clone()),
        tls: access
            .web
            .as_ref()
            .and_then(|web| web.tls())
            .map(|config| Tls {
                acceptor: TlsAcceptor::from(config),
                metrics: Arc::clone(&metrics),
            }),
        budget: METRICS_CONNECTIONS,
        header_timeout: access.idle_timeout,
        per_client: PerClient::new(access.max_connections_per_client, None),
        allowed: Some(access),
        records: Records::Refusals(metrics, RefusalLog::new()),
    };
    tokio::join!(
        logins.run(limits, stopped.clone()),
        scrapes.run(limits, stopped)
    );
    janitor.abort();
    Ok(())
}
// ANCHOR_END: serve

/// How often the throttle forgets clients whose bucket is full again.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(10);

/// Keeps the throttle's memory to recent clients, for as long as it runs.
async fn forget_idle_clients(throttle: Arc<Throttle>) {
    let mut every = tokio::time::interval(FORGET_IDLE_EVERY);
    loop {
        every.tick().await;
        throttle.forget_idle();
    }
}

/// One listener, what it serves, and whom it admits.
struct Listener {
    socket: TcpListener,
    router: Router,
    /// Most connections open at once.
    budget: usize,
    /// How long a connection may take to send a request's headers; also how
    /// long an idle one stays open.
    header_timeout: Duration,
    /// Who may connect at all (the metrics listener's allow-list).
    allowed: Option<Arc<MetricsListener>>,
    /// The per-address share of the budget.
    per_client: PerClient,
    /// What it counts and logs about its connections.
    records: Records,
    /// TLS, if the listener speaks it (the metrics listener's web configuration).
    tls: Option<Tls>,
}

/// A listener's TLS: the acceptor, and where the handshakes it gives up are counted.
#[derive(Clone)]
struct Tls {
    acceptor: TlsAcceptor,
    metrics: Arc<Metrics>,
}

// ANCHOR: records
/// What a listener records about its connections.
enum Records {
    /// The login listener: every connection, open and closed, and why it ended.
    Connections(Arc<Metrics>),
    /// The metrics listener: the connections it refuses, counted, and logged
    /// at warn at most once per [`REFUSALS_LOGGED_EVERY`].
    Refusals(Arc<Metrics>, RefusalLog),
}

/// The longest a run of refusals on the metrics listener goes unlogged.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// The metrics listener's refusals, logged at warn: the first at once, then one
/// line per [`REFUSALS_LOGGED_EVERY`] saying how many there were since the
/// last, so that a flood of connections cannot flood the log too.
struct RefusalLog {
    every: DefaultDirectRateLimiter,
    unlogged: u64,
}

impl RefusalLog {
    fn new() -> Self {
        Self {
            every: DefaultDirectRateLimiter::direct(
                Quota::with_period(REFUSALS_LOGGED_EVERY).expect("a period longer than zero"),
            ),
            unlogged: 0,
        }
    }

    fn refused(&mut self, peer: IpAddr, reason: Refused) {
        self.unlogged += 1;
        if self.every.check().is_ok() {
            tracing::warn!(
                %peer,
                reason = %reason.as_str(),
                refused = self.unlogged,
                "metrics listener refused connections (the last one's peer and reason)"
            );
            self.unlogged = 0;
        }
    }
}

impl Records {
    /// Counts (and, on the metrics listener, logs) a connection closed at once.
    fn refused(&mut self, peer: IpAddr, reason: Refused) {
        match self {
            Records::Connections(metrics) => metrics.count_closed_connection(match reason {
                // The login listener has no allow-list: only the budgets refuse.
                Refused::OverBudget | Refused::NotAllowed => Closed::OverBudget,
                Refused::ClientOverBudget => Closed::ClientOverBudget,
            }),
            Records::Refusals(metrics, log) => {
                metrics.count_refused_scrape_connection(reason);
                log.refused(peer, reason);
            }
        }
    }

    /// The login listener's guard for a connection it has opened.
    fn opened(&self) -> Option<OpenConnection> {
        match self {
            Records::Connections(metrics) => Some(metrics.mark_connection_open()),
            Records::Refusals(..) => None,
        }
    }
}
// ANCHOR_END: records

// ANCHOR: per_client
/// How many connections each client address holds, and the most it may.
struct PerClient {
    max: usize,
    open: OpenByClient,
    /// Trusted proxies, exempt from the share (the login listener's).
    proxies: Option<Arc<Throttle>>,
}

/// Open connections by client address.
type OpenByClient = Arc<Mutex<HashMap<IpAddr, usize>>>;

impl PerClient {
    fn new(max: usize, proxies: Option<Arc<Throttle>>) -> Self {
        Self {
            max,
            open: Arc::default(),
            proxies,
        }
    }

    /// One more connection for `peer`, or `None` when it already holds `max`
    /// (a trusted proxy carries many clients, and has no such limit).
    fn admit(&self, peer: IpAddr) -> Option<ClientSlot> {
        if self
            .proxies
            .as_ref()
            .is_some_and(|proxies| proxies.is_trusted_proxy(peer))
        {
            return Some(ClientSlot(None));
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let held = open.entry(peer).or_insert(0);
        if *held >= self.max {
            return None;
        }
        *held += 1;
        Some(ClientSlot(Some((Arc::clone(&self.open), peer))))
    }
}

/// One connection of one address; gives its place back when dropped, and
/// forgets the address with its last connection, so the map holds only
/// addresses with connections open.
struct ClientSlot(Option<(OpenByClient, IpAddr)>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((open, peer)) = self.0.take() {
            let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(held) = open.get_mut(&peer) {
                *held -= 1;
                if *held == 0 {
                    open.remove(&peer);
                }
            }
        }
    }
}
// ANCHOR_END: per_client

// ANCHOR: http
/// hyper's settings for one listener's connections: the header timeout (with a
/// timer, or it never fires), the header block limit, and the buffers.
fn http(header_timeout: Duration) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(HEADER_BLOCK_LIMIT)
        .max_buf_size(CONNECTION_BUFFER);
    http
}

/// The connection's socket (or TLS stream), with a bound on how long a write
/// may wait for the client to read: hyper has no write timeout of its own.
fn with_write_timeout<S: AsyncRead + AsyncWrite>(
    stream: S,
    timeout: Duration,
) -> TokioIo<Pin<Box<TimeoutWriter<S>>>> {
    let mut stream = TimeoutWriter::new(stream);
    stream.set_timeout(Some(timeout));
    TokioIo::new(Box::pin(stream))
}
// ANCHOR_END: http

impl Listener {
    // ANCHOR: accept_loop
    /// Accepts connections until `stopped`, then drains them.
    async fn run(mut self, limits: Limits, stopped: watch::Receiver<()>) {
        let http = http(self.header_timeout);
        let budget = Arc::new(Semaphore::new(self.budget));
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut stop = pin!(until_stopped(stopped));
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut stop => break,
                // axum's accept logs and retries failures, and pauses after
                // one such as "too many open files".
                accepted = axum::serve::Listener::accept(&mut self.socket) => accepted,
            };
            while connections.try_join_next().is_some() {}
            // One form for every address it logs or counts: an IPv4 client of
            // a dual-stack listener as IPv4.
            let ip = peer.ip().to_canonical();
            // Closing a refused connection at once costs less than keeping it
            // waiting, and the client learns at once to come back later.
            if self
                .allowed
                .as_ref()
                .is_some_and(|allowed| !allowed.allows(ip))
            {
                drop(stream);
                self.records.refused(ip, Refused::NotAllowed);
                continue;
            }
            let Ok(permit) = Arc::clone(&budget).try_acquire_owned() else {
                drop(stream);
                self.records.refused(ip, Refused::OverBudget);
                continue;
            };
            let Some(client) = self.per_client.admit(ip) else {
                drop(stream);
                self.records.refused(ip, Refused::ClientOverBudget);
                continue;
            };
            let open = self.records.opened();
            let requests = Arc::new(AtomicUsize::new(0));
            let service = per_connection(
                self.router.clone(),
                peer,
                Arc::clone(&requests),
                limits.max_requests_per_connection,
            );
            let (http, tls, watcher) = (http.clone(), self.tls.clone(), graceful.watcher());
            let handshake_timeout = self.header_timeout;
            connections.spawn(async move {
                let result = match tls {
                    None => {
                        let io = with_write_timeout(stream, limits.write_timeout);
                        watcher.watch(http.serve_connection(io, service)).await
                    }
                    // The handshake runs here, off the accept loop, within the
                    // header timeout: a client that stalls it holds nothing longer.
                    // One that fails is counted: a scraper with the wrong scheme or
                    // an untrusted certificate shows on the server too.
                    Some(tls) => {
                        match timeout(handshake_timeout, tls.acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let io = with_write_timeout(stream, limits.write_timeout);
                                watcher.watch(http.serve_connection(io, service)).await
                            }
                            Ok(Err(error)) => {
                                tls.metrics.count_failed_handshake(HandshakeFailed::Error);
                                tracing::debug!(%error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tls.metrics.count_failed_handshake(HandshakeFailed::Timeout);
                                return;
                            }
                        }
                    }
                };
                if let Some(open) = open {
                    open.close(closed_because(result, requests.load(Ordering::Relaxed) > 0));
                }
                drop(client);
                drop(permit);
            });
        }
        drop(self.socket);
        drain(graceful, connections, limits).await;
    }
    // ANCHOR_END: accept_loop
}

// ANCHOR: drain
/// Lets the connections finish the requests they are handling, closing idle
/// ones at once, for up to the grace period; then closes the rest.
async fn drain(graceful: GracefulShutdown, mut connections: JoinSet<()>, limits: Limits) {
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        while connections.try_join_next().is_some() {}
        tracing::warn!(
            open = connections.len(),
            grace = ?limits.shutdown_grace,
            "closing connections still open after the shutdown grace period"
        );
    }
    // Cancelling a connection drops its requests: each is counted as a
    // 499 and the connection as closed by the shutdown.
    connections.shutdown().await;
}
// ANCHOR_END: drain

// ANCHOR: per_connection
/// The router as one connection's hyper service: each request gets the
/// client's address as axum's `ConnectInfo`, and is counted in `requests`; the
/// answer to the `max_requests`th says `Connection: close`, and hyper closes the
/// connection once it is sent.
fn per_connection(
    router: Router,
    peer: SocketAddr,
    requests: Arc<AtomicUsize>,
    max_requests: usize,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let last = requests.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests;
        request.extensions_mut().insert(ConnectInfo(peer));
        ServiceExt::<Request<Incoming>>::map_response(
            router.clone(),
            move |mut response: axum::response::Response| {
                if last {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            },
        )
        .oneshot(request)
    })
}
// ANCHOR_END: per_connection

// ANCHOR: closed_because
/// Why a connection ended, from what hyper returned.
fn closed_because(result: Result<(), hyper::Error>, served: bool) -> Closed {
    match result {
        Ok(()) => Closed::Completed,
        // The write timeout, from the socket's wrapper: an I/O error.
        Err(error) if timed_out_writing(&error) => Closed::WriteTimeout,
        // hyper's header timer also runs while a kept-alive connection waits
        // for its next request: after one request, a timeout is mostly idleness.
        Err(error) if error.is_timeout() && served => Closed::IdleTimeout,
        Err(error) if error.is_timeout() => Closed::HeaderTimeout,
        Err(error) if error.is_parse_too_large() => Closed::TooLarge,
        Err(error) if error.is_parse() => Closed::Malformed,
        Err(error) => {
            tracing::debug!(%error, "connection failed");
            Closed::ClientGone
        }
    }
}

/// Whether `error` comes from an I/O operation that timed out: on a socket with
/// a write timeout, a write the client did not make room for.
fn timed_out_writing(error: &hyper::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::TimedOut;
        }
        cause = error.source();
    }
    false
}
// ANCHOR_END: closed_because

/// Completes when the sender of `stopped` is dropped.
async fn until_stopped(mut stopped: watch::Receiver<()>) {
    while stopped.changed().await.is_ok() {}
}

// ANCHOR: shutdown_signal
/// Completes on Ctrl-C, or on SIGTERM (what `docker stop` and Kubernetes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
// ANCHOR_END: shutdown_signal
