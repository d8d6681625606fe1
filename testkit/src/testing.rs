//! An in-process login server for tests and benchmarks.
//!
//! Binds port 0 on the address you give, so tests run in parallel without
//! port clashes. Tests that a container must scrape bind `0.0.0.0`: traffic
//! from a container arrives through the docker bridge, not loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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

/// The three kinds of login the tests and figures send, each with the status
/// the book promises for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The demo user's valid credentials: 200.
    Good,
    /// The demo user with a wrong password: 401.
    WrongPassword,
    /// A body that is not JSON: 400.
    Malformed,
}

impl Login {
    /// The request body.
    #[must_use]
    pub fn body(self) -> &'static str {
        match self {
            Login::Good => r#"{"username":"user","password":"pass"}"#,
            Login::WrongPassword => r#"{"username":"user","password":"wrong"}"#,
            Login::Malformed => r#"{"username":"#,
        }
    }

    /// The status the server must answer.
    #[must_use]
    pub fn expected_status(self) -> u16 {
        match self {
            Login::Good => 200,
            Login::WrongPassword => 401,
            Login::Malformed => 400,
        }
    }

    /// Sends this login to `login_url` and checks the status.
    pub async fn send(self, client: &reqwest::Client, login_url: &str) -> anyhow::Result<()> {
        self.send_request(client, login_url, None).await
    }

    /// [`send`](Self::send) with `X-Forwarded-For: forwarded_for`, as a proxy
    /// forwards a client's request.
    pub async fn send_as(
        self,
        client: &reqwest::Client,
        login_url: &str,
        forwarded_for: &str,
    ) -> anyhow::Result<()> {
        self.send_request(client, login_url, Some(forwarded_for))
            .await
    }

    async fn send_request(
        self,
        client: &reqwest::Client,
        login_url: &str,
        forwarded_for: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut request = client
            .post(login_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(forwarded) = forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        let status = request
            .body(self.body())
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("POST {login_url}: {error}"))?
            .status()
            .as_u16();
        let expected = self.expected_status();
        anyhow::ensure!(
            status == expected,
            "POST {login_url} {}: expected {expected}, got {status}",
            self.body()
        );
        Ok(())
    }
}

/// Sends `good` valid logins, `bad` wrong-password logins and `malformed`
/// bodies to `login_url`, checking that each gets the status the book promises
/// (200, 401, 400).
pub async fn send_logins(
    login_url: &str,
    good: usize,
    bad: usize,
    malformed: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let plan = [
        (good, Login::Good),
        (bad, Login::WrongPassword),
        (malformed, Login::Malformed),
    ];
    for (count, login) in plan {
        for _ in 0..count {
            login.send(&client, login_url).await?;
        }
    }
    Ok(())
}

/// Runs `promtool` (shipped with Prometheus) with `args`, feeding `stdin`, from the
/// repository's root.
///
/// Returns `None` after one `skipped:` line when promtool is not installed; under
/// CI a missing promtool is a failure (see [`crate::env::skip`]).
#[must_use]
pub fn promtool(args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
    run_tool(
        "promtool",
        "install Prometheus, which ships it (e.g. `apt install prometheus`)",
        args,
        stdin,
    )
}

/// Runs `amtool` (shipped with Alertmanager) with `args` from the repository's root,
/// like [`promtool`].
#[must_use]
pub fn amtool(args: &[&str]) -> Option<std::process::Output> {
    run_tool(
        "amtool",
        "install Alertmanager, which ships it (e.g. `apt install prometheus-alertmanager`)",
        args,
        b"",
    )
}

fn run_tool(
    tool: &str,
    install: &str,
    args: &[&str],
    stdin: &[u8],
) -> Option<std::process::Output> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let spawned = Command::new(tool)
        .args(args)
        .current_dir(crate::repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            crate::env::skip(&format!("{tool} not found ({error}); {install}"));
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .unwrap_or_else(|error| panic!("writing to {tool}: {error}"));
    Some(
        child
            .wait_with_output()
            .unwrap_or_else(|error| panic!("waiting for {tool}: {error}")),
    )
}

/// The value of one series in a Prometheus text exposition, matched exactly:
/// `series` is the whole left-hand side of the sample line, such as
/// `login_requests_total{status_code="200"}`. `None` when no line has it.
///
/// Exact matching matters: `text.contains("…{status_code=\"200\"} 1")` also
/// accepts 10, 15 and 100.
#[must_use]
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            if key == series {
                value.parse().ok()
            } else {
                None
            }
        })
}

/// One notification Alertmanager posted to a [`Webhook`]: the path it was posted to
/// (the receiver, `/page` or `/ticket`) and its JSON body.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The URL path, which names the receiver.
    pub path: String,
    /// Alertmanager's webhook payload: `status`, `receiver`, `alerts[]` with their
    /// `status`, `labels` and `annotations`.
    pub body: serde_json::Value,
}

impl Notification {
    /// The alerts of this notification named `alertname`.
    pub fn alerts_named<'a>(
        &'a self,
        alertname: &'a str,
    ) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
        self.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(move |alert| alert["labels"]["alertname"] == alertname)
    }

    /// Whether an alert named `alertname` is in this notification with `status`
    /// (`firing` or `resolved`).
    #[must_use]
    pub fn has(&self, alertname: &str, status: &str) -> bool {
        self.alerts_named(alertname)
            .any(|alert| alert["status"] == status)
    }
}

/// A webhook receiver for Alertmanager's notifications, on a free port of every
/// interface (a container reaches it through the host gateway). Stopped when dropped.
pub struct Webhook {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Notification>>>,
    task: JoinHandle<()>,
}

impl Webhook {
    /// Starts listening.
    pub async fn start() -> std::io::Result<Self> {
        use axum::extract::State;
        use axum::http::Uri;

        type Received = std::sync::Arc<std::sync::Mutex<Vec<Notification>>>;
        async fn receive(
            State(received): State<Received>,
            uri: Uri,
            axum::Json(body): axum::Json<serde_json::Value>,
        ) {
            received
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Notification {
                    path: uri.path().to_owned(),
                    body,
                });
        }

        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
        let port = listener.local_addr()?.port();
        let received = Received::default();
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(std::sync::Arc::clone(&received));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            port,
            received,
            task,
        })
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every notification so far, in arrival order.
    #[must_use]
    pub fn received(&self) -> Vec<Notification> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Polls until a notification satisfies `accept`, and returns it; the error lists
    /// everything received, so a wrong label or receiver shows at once.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: std::time::Duration,
        accept: impl Fn(&Notification) -> bool,
    ) -> anyhow::Result<Notification> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.received().into_iter().find(|n| accept(n)) {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .received()
                    .iter()
                    .map(|n| format!("{} {}", n.path, n.body))
                    .collect();
                anyhow::bail!(
                    "no notification {what} within {timeout:?}; received:\n{}",
                    seen.join("\n")
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP login_requests_total Login requests answered, by HTTP status code.
# TYPE login_requests_total counter
login_requests_total{status_code=\"200\"} 10
login_requests_total{status_code=\"401\"} 1
login_request_latency_seconds_count 11
";

    #[test]
    fn samples_match_the_whole_series_and_the_whole_value() {
        assert_eq!(
            sample(EXPOSITION, r#"login_requests_total{status_code="200"}"#),
            Some(10.0)
        );
        assert_eq!(
            sample(EXPOSITION, r#"login_requests_total{status_code="401"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(EXPOSITION, "login_request_latency_seconds_count"),
            Some(11.0)
        );
        assert_eq!(
            sample(EXPOSITION, r#"login_requests_total{status_code="20"}"#),
            None
        );
        assert_eq!(sample(EXPOSITION, "login_requests_total"), None);
    }
}
