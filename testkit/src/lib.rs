//! # login-metrics-testkit
//!
//! The machinery behind login-metrics' tests, benchmarks and figures, kept out of
//! the server crate so that a reader who copies the server copies none of it.
//!
//! - [`server`]: an in-process login server on free ports.
//! - [`logins`]: the test logins and the status each must get; [`traffic`]: a steady
//!   mix of them in the background; [`clients`]: raw clients from addresses of their own.
//! - [`exposition`]: the server's metrics read from the text Prometheus scrapes.
//! - [`wait`]: waiting for something to happen, with a deadline and a message.
//! - [`tools`]: promtool and amtool; [`webhook`]: Alertmanager's notifications, received.
//! - [`harness`]: real engines (Prometheus, VictoriaMetrics; Alertmanager uses the same
//!   launcher) from a local image or a native binary, and Grafana in Docker.
//! - [`promql`]: the query API client Prometheus and VictoriaMetrics share.
//! - [`dashboard`]: the Grafana provisioning and dashboard files as types.
//! - [`book`]: the PromQL printed in the book, for the tests that run it.
//! - [`env`](mod@env): whether this is CI, and how a skip or a note reaches the test output.
//! - [`example`]: the repository's examples, built and run as a reader runs them.

pub mod book;
pub mod clients;
pub mod dashboard;
pub mod env;
pub mod example;
pub mod exposition;
pub mod harness;
pub mod logins;
pub mod promql;
pub mod server;
pub mod tools;
pub mod traffic;
pub mod wait;
pub mod webhook;

use std::path::{Path, PathBuf};

/// The root of the repository (the `login-metrics` package), where `prometheus.yml`,
/// `grafana/` and `book/` are. Fixed at compile time: for tests run from a checkout.
#[must_use]
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ sits inside the repository")
        .to_path_buf()
}
