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
//! its connection forever. Here every connection gets the header timeout, the
//! login listener has a connection budget, and shutdown has a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::limits::{Limits, METRICS_CONNECTIONS};
use crate::metrics::{Closed, Metrics};
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
    let janitor = tokio::spawn(forget_idle_clients(Arc::clone(&state.throttle)));

    let logins = Listener {
        socket: app_listener,
        budget: limits.max_connections,
        metrics: Some(Arc::clone(&metrics)),
        per_client: Some(PerClient {
            max: limits.max_connections_per_client,
            open: Arc::default(),
            throttle: Arc::clone(&state.throttle),
        }),
        router: app(state),
    };
    let scrapes = Listener {
        socket: metrics_listener,
        router: metrics_app(metrics),
        budget: METRICS_CONNECTIONS,
        metrics: None,
        per_client: None,
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

/// One listener, what it serves, and how many connections it keeps open.
struct Listener {
    socket: TcpListener,
    router: Router,
    budget: usize,
    /// Where its connections are counted (the login listener's only).
    metrics: Option<Arc<Metrics>>,
    /// The per-address share of the budget (the login listener's only).
    per_client: Option<PerClient>,
}

// ANCHOR: per_client
/// How many connections each client address holds, and the most it may.
struct PerClient {
    max: usize,
    open: OpenByClient,
    throttle: Arc<Throttle>,
}

/// Open connections by client address.
type OpenByClient = Arc<Mutex<HashMap<IpAddr, usize>>>;

impl PerClient {
    /// One more connection for `peer`, or `None` when it already holds `max`
    /// (a trusted proxy carries many clients, and has no such limit).
    fn admit(&self, peer: IpAddr) -> Option<ClientSlot> {
        if self.throttle.is_trusted_proxy(peer) {
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

impl Listener {
    // ANCHOR: accept_loop
    /// Accepts connections until `stopped`, then drains them.
    async fn run(mut self, limits: Limits, stopped: watch::Receiver<()>) {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
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
            let Ok(permit) = Arc::clone(&budget).try_acquire_owned() else {
                // Closing it now costs less than keeping it waiting, and the
                // client learns at once that it should come back later.
                drop(stream);
                if let Some(metrics) = &self.metrics {
                    metrics.count_closed_connection(Closed::OverBudget);
                } else {
                    // Not a warning per connection: a flood would fill the log.
                    // Prometheus reports its own failed scrapes.
                    tracing::debug!(%peer, "metrics listener full: connection refused");
                }
                continue;
            };
            let client = self.per_client.as_ref().map(|p| p.admit(peer.ip()));
            if let Some(None) = client {
                drop(stream);
                if let Some(metrics) = &self.metrics {
                    metrics.count_closed_connection(Closed::ClientOverBudget);
                }
                continue;
            }
            let open = self.metrics.as_ref().map(Metrics::mark_connection_open);
            let served = Arc::new(AtomicBool::new(false));
            let service = per_connection(self.router.clone(), peer, Arc::clone(&served));
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            connections.spawn(async move {
                let result = connection.await;
                if let Some(open) = open {
                    open.close(closed_because(result, served.load(Ordering::Relaxed)));
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
/// client's address as axum's `ConnectInfo`, and marks the connection as
/// having served a request.
fn per_connection(
    router: Router,
    peer: SocketAddr,
    served: Arc<AtomicBool>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        served.store(true, Ordering::Relaxed);
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    })
}
// ANCHOR_END: per_connection

// ANCHOR: closed_because
/// Why a connection ended, from what hyper returned.
fn closed_because(result: Result<(), hyper::Error>, served: bool) -> Closed {
    match result {
        Ok(()) => Closed::Completed,
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
