//! An in-process login server for tests and the lab.
//!
//! Binds port 0 on the address you give, so tests run in parallel without
//! port clashes. Tests that a container must scrape bind `0.0.0.0`: traffic
//! from a container arrives through the docker bridge, not loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::server::serve;
use login_metrics::throttle::Throttle;

/// A running server; stopped when dropped.
pub struct TestServer {
    /// Where `POST /login` is served.
    pub app_addr: SocketAddr,
    /// Where `GET /metrics` is served.
    pub metrics_addr: SocketAddr,
    /// The server's state, to read metrics and counters directly.
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server with the demo user on `ip`, both listeners on free ports,
    /// and the shipped limits except one: no per-client throttle. The tests of the
    /// monitoring path send hundreds of logins a second from one address, which
    /// the throttle exists to refuse; the tests of the defences start their
    /// servers with [`start_with`](Self::start_with) and the throttle on.
    pub async fn start(ip: IpAddr) -> std::io::Result<Self> {
        let state = AppState::new(UserStore::with_demo_user()).with_throttle(Throttle::off());
        Self::start_with(ip, state).await
    }

    /// Starts a server on loopback.
    pub async fn start_local() -> std::io::Result<Self> {
        Self::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Starts a server with the given state on `ip`.
    pub async fn start_with(ip: IpAddr, state: AppState) -> std::io::Result<Self> {
        Self::start_at(SocketAddr::new(ip, 0), SocketAddr::new(ip, 0), state).await
    }

    /// Starts a server with the given state on exact addresses; a test that
    /// restarts the server uses it to come back on the port Prometheus scrapes.
    pub async fn start_at(
        app_addr: SocketAddr,
        metrics_addr: SocketAddr,
        state: AppState,
    ) -> std::io::Result<Self> {
        let app_listener = TcpListener::bind(app_addr).await?;
        let metrics_listener = TcpListener::bind(metrics_addr).await?;
        let local = |addr: SocketAddr| {
            if addr.ip().is_unspecified() {
                SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
            } else {
                addr
            }
        };
        let app_addr = local(app_listener.local_addr()?);
        let metrics_addr = local(metrics_listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            app_listener,
            metrics_listener,
            state.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            app_addr,
            metrics_addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/login`.
    #[must_use]
    pub fn login_url(&self) -> String {
        format!("http://{}/login", self.app_addr)
    }

    /// `http://127.0.0.1:PORT/metrics`.
    #[must_use]
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// Stops the server gracefully and waits until it has stopped.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How many logins a second this machine verifies: every hashing thread of a fresh
/// pool busy with the demo user's password, four rounds, timed. A test that floods
/// the server must offer more than this to see logins shed, and can check that it
/// does rather than assume it.
pub async fn hashing_capacity() -> f64 {
    let users = Arc::new(UserStore::with_demo_user());
    let logins = 4 * users.hashing().threads();
    let started = Instant::now();
    let verifications: Vec<_> = (0..logins)
        .map(|_| {
            let users = Arc::clone(&users);
            tokio::spawn(async move {
                users
                    .verify("user", "pass".to_owned(), Duration::from_secs(600))
                    .await
            })
        })
        .collect();
    for verification in verifications {
        let verified = verification.await.expect("a verification task");
        assert!(
            matches!(verified, Ok(true)),
            "the demo user verifies: {verified:?}"
        );
    }
    #[expect(clippy::cast_precision_loss, reason = "a few dozen logins")]
    let logins = logins as f64;
    logins / started.elapsed().as_secs_f64()
}
