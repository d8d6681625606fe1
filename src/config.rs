//! Command-line and environment configuration.
//!
//! Every setting can come from a flag or from an environment variable, so the
//! same binary runs on a laptop (flags) and in a container (environment). The
//! defaults bind to loopback: nothing is reachable from other machines until
//! you say so. Prometheus running in Docker on Linux reaches the host through
//! the docker bridge, which is *not* loopback, so that setup needs
//! `--metrics-addr 0.0.0.0:8000` (see the book's Step 2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::limits::{self, Limits};

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
        })
    }
}
