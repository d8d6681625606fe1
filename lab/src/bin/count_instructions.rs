//! Counts what the metrics layer costs in CPU instructions rather than seconds,
//! for machines too noisy to time a 1 % difference (the appendix "What
//! monitoring costs"). Run it under callgrind, once per variant:
//!
//! ```sh
//! cargo build -p lab --release --bin count_instructions
//! for variant in without with; do
//!   valgrind --tool=callgrind --separate-threads=yes \
//!     --callgrind-out-file=/tmp/cg-$variant target/release/count_instructions $variant 5000
//! done
//! grep -h '^summary' /tmp/cg-without-01 /tmp/cg-with-01   # thread 1: the server
//! ```
//!
//! The server (the real `app()`, or `app_without_metrics()`) runs on the main
//! thread; a client on a second thread sends malformed logins (the cheap 400
//! path) over one keep-alive connection. Callgrind counts each thread apart,
//! so thread 1's total is the server's user-space work: the ratio of the two
//! totals is the throughput ratio per core, with the kernel's TCP work (the
//! same for both, and larger) left out, which makes it a pessimistic bound.
//!
//! Three more variants count what the per-client login throttle costs (the
//! appendix "Hostile clients"), through the real serve loop, which knows each
//! connection's address: `throttle-off` and `throttle-on` send malformed
//! logins (400, the throttle is not consulted), `throttled` sends good logins
//! from an address whose only attempt is spent, so that every answer is a 429.
//! That one attempt is hashed on a thread of its own, not thread 1.

use std::num::NonZeroU32;
use std::time::Duration;

use lab::keep_alive::post_logins;
use login_metrics::auth::UserStore;
use login_metrics::routes::app_without_metrics;
use login_metrics::throttle::{LoginRate, Throttle};
use login_metrics::{AppState, app};

const BODY: &str = r#"{"username": "user", "password": "#;
const GOOD: &str = r#"{"username":"user","password":"pass"}"#;

/// What the server is, and what the client sends it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `app()` or `app_without_metrics()` under `axum::serve`, malformed logins.
    Metrics(bool),
    /// The real serve loop with the throttle on or off, malformed logins.
    Throttle(bool),
    /// The real serve loop, good logins past the only attempt allowed.
    Throttled,
    /// A bare axum handler answering a constant 400 under `axum::serve`: the
    /// ceiling the appendix compares the cheap path with.
    Bare,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let variant = match args.next().as_deref() {
        Some("with") => Variant::Metrics(true),
        Some("without") => Variant::Metrics(false),
        Some("throttle-on") => Variant::Throttle(true),
        Some("throttle-off") => Variant::Throttle(false),
        Some("throttled") => Variant::Throttled,
        Some("bare") => Variant::Bare,
        _ => anyhow::bail!(
            "usage: count_instructions with|without|throttle-on|throttle-off|throttled|bare [REQUESTS]"
        ),
    };
    let requests: usize = args.next().map_or(Ok(5000), |n| n.parse())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let state = AppState::new(UserStore::with_demo_user());
    let client = std::thread::spawn(move || send(addr, requests, variant));
    let finished = async move {
        while !client.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        client
    };
    let client = runtime.block_on(async {
        match variant {
            Variant::Metrics(_) | Variant::Bare => {
                let router = match variant {
                    Variant::Metrics(true) => app(state),
                    Variant::Metrics(false) => app_without_metrics(state),
                    _ => axum::Router::new().route(
                        "/login",
                        axum::routing::post(|| async { axum::http::StatusCode::BAD_REQUEST }),
                    ),
                };
                tokio::select! {
                    served = axum::serve(listener, router) => {
                        served?;
                        anyhow::bail!("the server stopped first")
                    }
                    client = finished => Ok(client),
                }
            }
            Variant::Throttle(_) | Variant::Throttled => {
                // One attempt, then one an hour: the client spends the one.
                let rate = LoginRate {
                    burst: NonZeroU32::MIN,
                    interval: Duration::from_secs(3600),
                };
                let throttle = if variant == Variant::Throttle(false) {
                    Throttle::off()
                } else {
                    Throttle::new(Some(rate), Vec::new())
                };
                let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let (done, client) = tokio::sync::oneshot::channel();
                let stop = async move {
                    let _ = done.send(finished.await);
                };
                login_metrics::serve(listener, metrics, state.with_throttle(throttle), stop)
                    .await?;
                Ok(client.await?)
            }
        }
    })?;
    client
        .join()
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    println!("{requests} requests, {}", variant.describe());
    Ok(())
}

impl Variant {
    fn describe(self) -> &'static str {
        match self {
            Self::Metrics(true) => "metrics layer: true",
            Self::Metrics(false) => "metrics layer: false",
            Self::Throttle(true) => "throttle on, malformed logins (400)",
            Self::Throttle(false) => "throttle off, malformed logins (400)",
            Self::Throttled => "throttle on, good logins past the burst (429)",
            Self::Bare => "bare axum, constant 400",
        }
    }
}

/// Sends `requests` logins over one keep-alive connection and checks each
/// answer: malformed ones answered 400, or (`Throttled`) one good login
/// answered 200 and then `requests` good ones answered 429.
fn send(addr: std::net::SocketAddr, requests: usize, variant: Variant) -> anyhow::Result<()> {
    if variant == Variant::Throttled {
        let first = std::iter::once((GOOD, "HTTP/1.1 200"));
        post_logins(
            addr,
            first.chain(std::iter::repeat_n((GOOD, "HTTP/1.1 429"), requests)),
        )
    } else {
        post_logins(addr, std::iter::repeat_n((BODY, "HTTP/1.1 400"), requests))
    }
}
