//! Command-line and environment configuration.
//!
//! Every setting can come from a flag or from an environment variable, so the
//! same binary runs on a laptop (flags) and in a container (environment). The
//! defaults bind to loopback: nothing is reachable from other machines until
//! you say so. Prometheus running in Docker on Linux reaches the host through
//! the docker bridge, which is *not* loopback, so that setup needs
//! `--metrics-addr 0.0.0.0:8000` (see the book's Step 2).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::limits::{self, Limits};
use crate::throttle::{LoginRate, Throttle};

// ANCHOR: config
/// Settings for the login server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "login_server",
    about = "A login endpoint instrumented for Prometheus"
)]
pub struct Config {
    /// Address of the application listener that serves `POST /login`.
    #[arg(long, env = "LOGIN_ADDR", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,

    /// Address of the metrics listener that serves `GET /metrics`.
    #[arg(long, env = "LOGIN_METRICS_ADDR", default_value = "127.0.0.1:8000")]
    pub metrics_addr: SocketAddr,

    /// File of `username:argon2-phc-hash` lines with extra users.
    #[arg(long, env = "LOGIN_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Do not create the demo user `user` (password `pass`).
    #[arg(long, env = "LOGIN_NO_DEMO_USER")]
    pub no_demo_user: bool,

    /// Longest a client may take to send a request's headers; also how long
    /// an idle keep-alive connection stays open.
    #[arg(long, env = "LOGIN_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_timeout: Duration,

    /// Longest a client may take to send a login's body (408 past it).
    #[arg(long, env = "LOGIN_BODY_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub body_timeout: Duration,

    /// Most login connections open at once [default: half the open files
    /// limit, at most 4096].
    #[arg(long, env = "LOGIN_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// How long requests in flight may take to finish after SIGTERM.
    #[arg(long, env = "LOGIN_SHUTDOWN_GRACE", default_value = "8s", value_parser = duration)]
    pub shutdown_grace: Duration,

    /// Most login connections one client address may hold open.
    #[arg(long, env = "LOGIN_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_client: u32,

    /// Longest a login may wait for a hashing thread; 503 at once past it.
    #[arg(long, env = "LOGIN_MAX_HASH_WAIT", default_value = "500ms", value_parser = duration)]
    pub max_hash_wait: Duration,

    /// Login attempts a client address may make at once.
    #[arg(long, env = "LOGIN_BURST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_burst: u32,

    /// Time for a client address to earn one more login attempt.
    #[arg(long, env = "LOGIN_INTERVAL", default_value = "1s", value_parser = duration)]
    pub login_interval: Duration,

    /// No per-client limit on login attempts (for load tests from one machine).
    #[arg(long, env = "LOGIN_NO_LIMIT")]
    pub no_login_limit: bool,

    /// A reverse proxy (address or CIDR) whose `X-Forwarded-For` is believed;
    /// repeat the flag, or separate with commas in the variable. None by default.
    #[arg(long = "trusted-proxy", env = "LOGIN_TRUSTED_PROXIES", value_delimiter = ',', value_parser = proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}
// ANCHOR_END: config

/// A duration such as `10s` or `500ms`; zero would disable nothing and break
/// everything, so it is refused.
fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be more than zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!("{error} (write for example 10s or 500ms)")),
    }
}

/// A proxy as an address (`10.0.0.5`, one host) or a network (`10.0.0.0/8`).
fn proxy(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is neither an IP address nor a CIDR network"))
}

/// The settings asked for do not fit the process.
#[derive(Debug, thiserror::Error)]
#[error(
    "--max-connections {max_connections} leaves too few of the {fd_limit} open files \
     the process may have for the metrics listener; lower it, or raise `ulimit -n`"
)]
pub struct BudgetTooLarge {
    max_connections: usize,
    fd_limit: u64,
}

impl Config {
    /// The limits these settings ask for, in a process allowed `fd_limit`
    /// open files (see [`limits::raise_fd_limit`]).
    pub fn limits(&self, fd_limit: Option<u64>) -> Result<Limits, BudgetTooLarge> {
        let max_connections = self.max_connections.map_or_else(
            || limits::default_max_connections(fd_limit),
            |max| usize::try_from(max).unwrap_or(usize::MAX),
        );
        if !limits::fits(max_connections, fd_limit) {
            return Err(BudgetTooLarge {
                max_connections,
                // `fits` is true when there is no limit.
                fd_limit: fd_limit.unwrap_or_default(),
            });
        }
        Ok(Limits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            max_connections,
            shutdown_grace: self.shutdown_grace,
            max_hash_wait: self.max_hash_wait,
            max_connections_per_client: usize::try_from(self.max_connections_per_client)
                .unwrap_or(usize::MAX),
        })
    }

    /// The per-client throttle these settings ask for.
    #[must_use]
    pub fn throttle(&self) -> Throttle {
        let rate = (!self.no_login_limit).then(|| LoginRate {
            burst: NonZeroU32::new(self.login_burst).unwrap_or(NonZeroU32::MIN),
            interval: self.login_interval,
        });
        Throttle::new(rate, self.trusted_proxies.clone())
    }
}
