//! Background login traffic for the end-to-end tests: rounds of one good login,
//! one wrong password (401) and one malformed body (400), until stopped.
//!
//! Queries over `$__rate_interval` (a few seconds in tests) only see requests made
//! in that window, so the traffic keeps flowing while the tests query.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use login_metrics_testkit::testing::Login;
use tokio::task::JoinHandle;

/// Requests answered, by expected status.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub ok: u64,
    pub unauthorized: u64,
    pub bad_request: u64,
}

/// A running traffic generator.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    task: JoinHandle<anyhow::Result<Counts>>,
}

impl Traffic {
    /// Starts sending rounds to `login_url`, pausing `pause` between rounds.
    pub fn start(login_url: String, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()?;
            let mut counts = Counts::default();
            while !flag.load(Ordering::Relaxed) {
                for login in [Login::Good, Login::WrongPassword, Login::Malformed] {
                    login.send(&http, &login_url).await?;
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
    pub fn failed(&self) -> bool {
        self.task.is_finished()
    }
}
