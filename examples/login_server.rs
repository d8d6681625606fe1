//! The instrumented login server: `POST /login` on one port, `GET /metrics`
//! on another.
//!
//! ```sh
//! cargo run --example login_server
//! curl -s localhost:5000/login -H 'content-type: application/json' \
//!      -d '{"username":"user","password":"pass"}'
//! curl -s localhost:8000/metrics | grep login_
//! ```

// ANCHOR: main
use anyhow::Context;
use clap::Parser;
use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::config::Config;
use login_metrics::limits::raise_fd_limit;
use login_metrics::server::{serve, shutdown_signal};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let logging = login_metrics::logging::init();
    let config = Config::parse();

    let mut users = if config.no_demo_user {
        UserStore::empty()
    } else {
        UserStore::with_demo_user()
    };
    if let Some(path) = &config.users_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading users file {}", path.display()))?;
        users
            .add_users_from(&text)
            .with_context(|| format!("in users file {}", path.display()))?;
    }
    anyhow::ensure!(
        !users.is_empty(),
        "no users: drop --no-demo-user or give --users-file"
    );

    let fd_limit = raise_fd_limit();
    let limits = config.limits(fd_limit)?;
    let scrapers = config
        .metrics_listener()
        .context("reading the metrics listener's web configuration")?;

    let app = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding the login listener on {}", config.addr))?;
    let metrics = TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("binding the metrics listener on {}", config.metrics_addr))?;
    tracing::info!(
        login = %app.local_addr()?,
        metrics = %metrics.local_addr()?,
        users = users.len(),
        "listening"
    );
    tracing::info!(
        max_connections = limits.max_connections,
        open_files_limit = %fd_limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
        header_timeout = ?limits.header_timeout,
        body_timeout = ?limits.body_timeout,
        shutdown_grace = ?limits.shutdown_grace,
        max_hash_wait = ?limits.max_hash_wait,
        max_connections_per_client = limits.max_connections_per_client,
        write_timeout = ?limits.write_timeout,
        max_requests_per_connection = limits.max_requests_per_connection,
        metrics_allow = ?scrapers.allow,
        metrics_max_connections_per_client = scrapers.max_connections_per_client,
        metrics_idle_timeout = ?scrapers.idle_timeout,
        "limits"
    );
    if let Some(web) = &scrapers.web {
        // Counts and whether TLS is on: never a credential.
        tracing::info!(?web, "metrics listener asks for credentials");
    }
    let throttle = config.throttle();
    tracing::info!(
        login_burst = config.login_burst,
        login_interval = ?config.login_interval,
        on = throttle.is_on(),
        trusted_proxies = ?config.trusted_proxies,
        "per-client login throttle"
    );

    let state = AppState::new(users)
        .with_limits(limits)
        .with_metrics_listener(scrapers)
        .with_throttle(throttle);
    state
        .metrics
        .registry()
        .register(Box::new(logging.dropped_lines_collector()))?;
    serve(app, metrics, state, shutdown_signal()).await?;
    Ok(())
}
// ANCHOR_END: main
