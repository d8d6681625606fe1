//! Background login traffic for the end-to-end tests: rounds of one good login,
//! one wrong password (401) and one malformed body (400), until stopped. Each round
//! also asks for a path that does not exist (counted in
//! `login_unmatched_requests_total`, not as a login), and every tenth round the
//! generator starts a new client, closing its connections as a departing user does,
//! so that the connection metrics move too.
//!
//! Queries over `$__rate_interval` (a few seconds in tests) only see requests made
//! in that window, so the traffic keeps flowing while the tests query.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::logins::Login;
use anyhow::Context;
use tokio::task::JoinHandle;

/// Requests answered, by expected status.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Good logins, answered 200.
    pub ok: u64,
    /// Wrong passwords, answered 401.
    pub unauthorized: u64,
    /// Malformed bodies, answered 400.
    pub bad_request: u64,
    /// Requests for a path the server does not serve, answered 404.
    pub not_found: u64,
}

/// A running traffic generator.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    task: JoinHandle<anyhow::Result<Counts>>,
}

impl Traffic {
    /// Starts sending rounds to `login_url`, pausing `pause` between rounds.
    #[must_use]
    pub fn start(login_url: String, pause: Duration) -> Self {
        Self::start_with(login_url, pause, false)
    }

    /// Like [`start`](Self::start), as if through a proxy in front of the
    /// server: each round says in `X-Forwarded-For` that it comes from another
    /// client (10.0.x.y), the way a proxy forwards many users. A server that
    /// trusts 127.0.0.1 as its proxy throttles each of them on its own, so the
    /// traffic runs against the shipped throttle without being refused.
    #[must_use]
    pub fn start_as_many_clients(login_url: String, pause: Duration) -> Self {
        Self::start_with(login_url, pause, true)
    }

    fn start_with(login_url: String, pause: Duration, many_clients: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let client = || {
                reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(10))
                    .build()
            };
            let unknown = login_url.replace("/login", "/no-such-page");
            let mut http = client()?;
            let mut counts = Counts::default();
            let mut round = 0_u64;
            while !flag.load(Ordering::Relaxed) {
                round += 1;
                if round.is_multiple_of(10) {
                    // Dropping the old client closes its idle connections.
                    http = client()?;
                }
                let forwarded = format!("10.0.{}.{}", (round >> 8) & 0xff, round & 0xff);
                let status = http.get(&unknown).send().await?.status();
                anyhow::ensure!(status == 404, "GET {unknown}: {status}");
                counts.not_found += 1;
                for login in [Login::Good, Login::WrongPassword, Login::Malformed] {
                    if many_clients {
                        login.send_as(&http, &login_url, &forwarded).await?;
                    } else {
                        login.send(&http, &login_url).await?;
                    }
                    match login {
                        Login::Good => counts.ok += 1,
                        Login::WrongPassword => counts.unauthorized += 1,
                        Login::Malformed => counts.bad_request += 1,
                    }
                }
                tokio::time::sleep(pause).await;
            }
            Ok(counts)
        });
        Self { stop, task }
    }

    /// Stops the traffic; fails if any request got an unexpected answer.
    pub async fn stop(self) -> anyhow::Result<Counts> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("traffic task panicked")?
    }

    /// Whether the generator stopped on its own (an unexpected answer).
    #[must_use]
    pub fn failed(&self) -> bool {
        self.task.is_finished()
    }
}
