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

use clap::Parser;

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
}
// ANCHOR_END: config
