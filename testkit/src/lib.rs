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
//! - [`logs`]: what the server logs, captured for a test.
//! - [`tls`]: certificates, a `web.yml` and a password for a scrape over TLS, made per test.
//! - [`tools`]: promtool and amtool; [`webhook`]: Alertmanager's notifications, received.
//! - [`harness`]: real engines (Prometheus, VictoriaMetrics; Alertmanager and the
//!   blackbox exporter use the same launcher) from a local image or a native binary, and
//!   Grafana in Docker.
//! - [`promql`]: the query API client Prometheus and VictoriaMetrics share.
//! - [`dashboard`]: the Grafana provisioning and dashboard files as types.
//! - [`book`]: the book's blocks for the tests: its PromQL, its outputs compared with fresh
//!   runs, its commands run as a reader types them.
//! - [`panels`]: one row of the dashboard, asked from a real engine as Grafana asks it.
//! - [`env`](mod@env): whether this is CI, and how a skip or a note reaches the test output.
//! - [`example`]: the repository's examples, built and run as a reader runs them;
//!   [`compose`]: Docker Compose's view of `docker-compose.yml`.
//!
//! ## Pinned images
//!
//! Each engine's default image is the official one at a pinned tag, which
//! `docker-compose.yml` and the book name too (`tests/pinned_images.rs` checks that they
//! agree). Why each tag, as the release notes said when it was chosen (checked in
//! November 2026; check again when a tag moves):
//!
//! - **Prometheus `v3.13.4`** (2026-09-29): the newest patch of the 3.13
//!   long-term-support line (supported to 2027-07-31) that a release note confirms.
//! - **Alertmanager `v0.34.0`** (2026-08-16): its release notes are carried by the
//!   Renovate update of the Docker Hub image `prom/alertmanager` to v0.34.0
//!   (prymitive/karma #7086, 2026-08-17). A 0.34.1 exists, but nothing found confirms
//!   its image.
//! - **VictoriaMetrics `v1.144.0`**: a community release; its release note ("v1.144.0,
//!   Released at 2026-05-22", quoted in VictoriaMetrics/operator pull request #2217,
//!   which made it the operator's default) confirms the tag. The long-term-support
//!   lines (v1.136.x, newest confirmed patch v1.136.20 of 2026-10-09) are, by their own
//!   release notes, bugfix lines "for VictoriaMetrics enterprise", so no community LTS
//!   image is pinned.
//! - **Blackbox exporter `v0.28.0`** (2025-12-04): the newest release found; its
//!   release note is the "0.28.0 / 2025-12-04" section of the exporter's `CHANGELOG.md`
//!   (released by `prometheus/blackbox_exporter` pull request #1507). Debian's 0.23, which
//!   the tests run where nothing can be pulled, reads the same `blackbox.yml`.
//! - **Grafana `12.4.11`** (2026-09-15): the newest patch of Grafana 12.4 (supported to
//!   2027-05-24) that a release note confirms. 12.4 reads the classic dashboard JSON
//!   this repository keeps (schema 42) natively; Grafana 13 still provisions it, but
//!   exports a v2 format.

pub mod book;
pub mod clients;
pub mod compose;
pub mod dashboard;
pub mod env;
pub mod example;
pub mod exposition;
pub mod harness;
pub mod logins;
pub mod logs;
pub mod panels;
pub mod promql;
pub mod server;
pub mod tls;
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

/// A YAML file of the repository (`prometheus.yml`, `deploy/...`), parsed; panics
/// naming the file when it cannot be read or parsed, as a test that needs it would.
#[must_use]
pub fn repository_yaml(path: &str) -> serde_yaml_ng::Value {
    let path = repo_root().join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
