//! A real Prometheus for end-to-end tests.
//!
//! [`Prometheus::start`] runs the repository's own `prometheus.yml` with only two
//! changes: the login server's target (`…:8000`) points at the server under test, and
//! the scrape and evaluation intervals drop to one second. It runs where the
//! [`engine`](super::engine) launcher decides, once per test binary: in Docker
//! (image `PROMETHEUS_IMAGE`, default [`DEFAULT_IMAGE`]), scraping the server under test
//! through `host.docker.internal`, so that server must listen on `0.0.0.0`; or as the
//! `prometheus` binary on `PATH`, scraping it over loopback. With neither, `start`
//! prints one `skipped:` line and returns `Ok(None)`.
//!
//! [`Prometheus::builder`] starts other shapes of the same thing, always from a
//! configuration file of the repository, changing only addresses and intervals:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use login_metrics_testkit::harness::prometheus::{Prometheus, TargetsDir};
//!
//! let targets = TargetsDir::new()?; // file_sd targets the test may change at any time
//! let Some(prometheus) = Prometheus::builder()
//!     .config("deploy/scale/prometheus-a.yml")
//!     .file_sd(&targets)
//!     .external_label("replica", "a")
//!     .remote_write("http://127.0.0.1:8428/api/v1/write")
//!     .start()
//!     .await?
//! else {
//!     return Ok(()); // skipped, and said so
//! };
//! # Ok(()) }
//! ```
//!
//! The builder is the place for further options (rule files, an Alertmanager): a
//! dedicated method, or [`PrometheusBuilder::edit_config`] and
//! [`PrometheusBuilder::file`] for anything else.
//!
//! This file holds the running [`Prometheus`] and its waits; the rest has a module
//! each: `builder` (every shape of a test Prometheus), `config` (the repository's
//! files rewritten for a test), `targets` (`file_sd` targets a test changes) and
//! `remote_write` (what remote write says about itself).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

pub use super::engine::Backend;
use super::engine::{Engine, EngineSpec, Placement, Running};
use crate::promql::{POLL_EVERY, QueryApi};
use crate::wait::{Check, TimedOut, poll};

/// The image used when `PROMETHEUS_IMAGE` is not set: the official one, pinned (why
/// this tag: [the test kit's docs](crate#pinned-images)). `docker-compose.yml` and the
/// book name the same tag; a test checks that they agree.
pub const DEFAULT_IMAGE: &str = "prom/prometheus:v3.13.4";
/// Environment variable naming the Prometheus image (`name:tag`).
pub const IMAGE_ENV: &str = "PROMETHEUS_IMAGE";
/// Environment variable choosing the backend: `container`, `native` or `auto`.
pub const BACKEND_ENV: &str = "LOGIN_METRICS_PROMETHEUS";
/// The configuration users run, which the harness runs too.
pub const CONFIG_FILE: &str = "prometheus.yml";
/// The metrics port `prometheus.yml` scrapes; targets on this port get rewritten.
pub const CONFIGURED_METRICS_PORT: u16 = 8000;
/// Where a [`TargetsDir`] appears inside a Prometheus container: `targets/` next to the
/// configuration file, as in `docker-compose.yml`.
pub const CONTAINER_TARGETS_DIR: &str = "/etc/prometheus/targets";

/// The scrape and evaluation interval of every Prometheus the harness starts.
pub const TEST_INTERVAL: Duration = Duration::from_secs(1);
/// [`TEST_INTERVAL`] as the configuration writes it.
const TEST_INTERVAL_TEXT: &str = "1s";

/// Prometheus as the [`engine`](super::engine) launcher runs it.
pub static ENGINE: Engine = Engine::new(EngineSpec {
    name: "Prometheus",
    backend_env: BACKEND_ENV,
    image_env: IMAGE_ENV,
    default_image: DEFAULT_IMAGE,
    binaries: &["prometheus"],
    container_port: 9090,
    ready_path: "/-/ready",
    container_config_dir: "/etc/prometheus",
    container_data_dir: "/prometheus",
    install_hint: "install Docker with access to the image, or Prometheus itself \
        (`apt install prometheus`, `brew install prometheus`, https://prometheus.io/download/)",
    skip_allowed_in_ci: false,
});

mod builder;
mod config;
mod remote_write;
mod targets;

pub use builder::{EXEMPLAR_STORAGE, NATIVE_HISTOGRAMS, PrometheusBuilder};
pub use config::{FOR_DIVISOR, config_for, rewrite_repository_config, rule_files_for_test};
pub use remote_write::{REMOTE_WRITE_METRICS, RemoteWriteStats};
pub use targets::{TargetGroup, TargetsDir};

/// A running Prometheus scraping the server under test. Dropping it stops Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    engine: Running,
    api: QueryApi,
    job: String,
    target: String,
}

impl Prometheus {
    /// Start Prometheus scraping the login server's metrics listener on `metrics_port`
    /// of this host.
    ///
    /// `Ok(None)` after one `skipped:` line when no Prometheus can run here and `auto`
    /// mode allows it; an explicit backend that cannot be met is an error.
    pub async fn start(metrics_port: u16) -> anyhow::Result<Option<Prometheus>> {
        Self::builder().scrape_server(metrics_port).start().await
    }

    /// Like [`start`](Self::start), sending alerts to the Alertmanager `alertmanager`.
    pub async fn start_with_alertmanager(
        metrics_port: u16,
        alertmanager: &Running,
    ) -> anyhow::Result<Option<Prometheus>> {
        Self::builder()
            .scrape_server(metrics_port)
            .alertmanager(alertmanager)
            .start()
            .await
    }

    /// Start Prometheus in Docker on the Docker network `network` (created when missing,
    /// removed with its last container) as container `name`, so that other containers
    /// (Grafana) reach it at [`network_url`](Self::network_url) = `http://NAME:9090`.
    ///
    /// Needs the container backend: skips with one line otherwise.
    pub async fn start_on_network(
        metrics_port: u16,
        network: &str,
        name: &str,
    ) -> anyhow::Result<Option<Prometheus>> {
        Self::builder()
            .scrape_server(metrics_port)
            .on_network(network, name)
            .start()
            .await
    }

    /// A builder for other shapes: another configuration file, `file_sd` targets,
    /// external labels, remote write.
    #[must_use]
    pub fn builder() -> PrometheusBuilder {
        PrometheusBuilder::new()
    }

    /// Where Prometheus runs in this test binary (decided by the first caller), so that
    /// a test can write targets as Prometheus will see them before starting it:
    /// [`Placement::host_seen_from_engine`]. `Ok(None)`: skipped, and said so.
    pub async fn placement() -> anyhow::Result<Option<Placement>> {
        ENGINE.placement().await
    }

    /// Where this Prometheus runs.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// The HTTP API as seen from the test, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn base_url(&self) -> String {
        self.engine.base_url()
    }

    /// The query API, shared with the other engines that serve it.
    #[must_use]
    pub fn api(&self) -> &QueryApi {
        &self.api
    }

    /// The HTTP API as seen from other containers on the network given to
    /// [`start_on_network`](Self::start_on_network) (`http://NAME:9090`); `None` otherwise.
    #[must_use]
    pub fn network_url(&self) -> Option<&str> {
        self.engine.network_url()
    }

    /// The job name of the login server in the configuration: the job of the rewritten
    /// static target, else the first job with `file_sd_configs`.
    #[must_use]
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The static target Prometheus scrapes, e.g. `host.docker.internal:41234`; empty
    /// when the configuration discovers its targets from files.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// An instant query; returns the `data.result` array of the answer.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Value> {
        self.api.query(promql).await
    }

    /// Polls the instant query `promql` until it returns at least one number that is
    /// not NaN, **zero included**, and returns that `data.result` array. Use it only
    /// where zero is a correct answer; where traffic was sent, use
    /// [`wait_for_nonzero`](Self::wait_for_nonzero) or [`wait_for_value`](Self::wait_for_value).
    ///
    /// On timeout the error shows the last answer, every target's health and
    /// `lastError`, and the end of Prometheus' log.
    pub async fn wait_for_data(&self, promql: &str, timeout: Duration) -> anyhow::Result<Value> {
        let polled = self.api.poll_for_data(promql, timeout).await;
        self.or_report(polled, "no data", promql, timeout).await
    }

    /// Polls `promql` until at least one of its numbers is finite and not zero: the
    /// proof that traffic was counted. A rate over requests that were never recorded
    /// is 0, which [`wait_for_data`](Self::wait_for_data) would accept.
    pub async fn wait_for_nonzero(&self, promql: &str, timeout: Duration) -> anyhow::Result<Value> {
        let polled = self.api.poll_for_nonzero(promql, timeout).await;
        self.or_report(polled, "no non-zero value", promql, timeout)
            .await
    }

    /// Polls `promql` until it returns exactly one number, equal to `expected`.
    pub async fn wait_for_value(
        &self,
        promql: &str,
        expected: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let polled = self.api.poll_for_value(promql, expected, timeout).await;
        self.or_report(
            polled,
            &format!("no single value {expected}"),
            promql,
            timeout,
        )
        .await
        .map(drop)
    }

    async fn or_report(
        &self,
        polled: Result<Value, TimedOut>,
        failure: &str,
        promql: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        match polled {
            Ok(result) => Ok(result),
            Err(timed_out) => bail!(
                "{}",
                self.failure_report(
                    &format!("{failure} for `{promql}` within {timeout:?}"),
                    &format!("last answer: {}", timed_out.last),
                )
                .await
            ),
        }
    }

    /// Polls `/api/v1/targets` until every target of the login server's job reports
    /// `health` (`"up"` or `"down"`).
    pub async fn wait_for_target_health(
        &self,
        health: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_targets(timeout, &format!("every target {health:?}"), |ours| {
            !ours.is_empty() && ours.iter().all(|t| t["health"] == health)
        })
        .await
        .map(|_| ())
    }

    /// Polls `/api/v1/targets` until the login server's job has exactly `total`
    /// targets of which `up` report `"up"`; returns those targets.
    pub async fn wait_for_targets_up(
        &self,
        up: usize,
        total: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        self.wait_for_targets(timeout, &format!("{up} of {total} targets up"), |ours| {
            ours.len() == total && ours.iter().filter(|t| t["health"] == "up").count() == up
        })
        .await
    }

    async fn wait_for_targets(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let polled = poll(what, timeout, POLL_EVERY, || async {
            match self.active_targets().await {
                Ok(targets) => {
                    let ours: Vec<Value> = targets
                        .iter()
                        .filter(|t| {
                            t["scrapePool"] == self.job.as_str()
                                || t["labels"]["job"] == self.job.as_str()
                        })
                        .cloned()
                        .collect();
                    if done(&ours) {
                        Check::Met(ours)
                    } else {
                        Check::NotYet(format!(
                            "job {:?} targets: {}",
                            self.job,
                            Value::from(targets)
                        ))
                    }
                }
                Err(e) => Check::NotYet(format!("error: {e:#}")),
            }
        })
        .await;
        match polled {
            Ok(ours) => Ok(ours),
            Err(timed_out) => bail!(
                "{}",
                self.failure_report(
                    &format!(
                        "job {:?} ({}): not {what} within {timeout:?}",
                        self.job, self.target
                    ),
                    &format!("last answer: {}", timed_out.last),
                )
                .await
            ),
        }
    }

    /// Prometheus' own log (container stdout and stderr, or the process' output).
    pub async fn logs(&self) -> String {
        self.engine.logs().await
    }

    /// The engine underneath, for what this wrapper does not cover.
    #[must_use]
    pub fn engine(&self) -> &Running {
        &self.engine
    }

    /// Stops Prometheus now and waits until it is gone (a container is removed).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.engine.stop().await
    }

    /// A range query from `start` to `end` (Unix seconds) every `step`; returns the
    /// `data.result` array (a matrix: each series with its `values`).
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> anyhow::Result<Value> {
        self.api.query_range(promql, start, end, step).await
    }

    /// Every active target (`data.activeTargets` of `/api/v1/targets`).
    pub async fn active_targets(&self) -> anyhow::Result<Vec<Value>> {
        let body = self.api.get_json("/api/v1/targets").await?;
        Ok(body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Prometheus' own `/metrics` page (remote write's counters, for example).
    pub async fn own_metrics(&self) -> anyhow::Result<String> {
        self.api.get_text("/metrics").await
    }

    async fn failure_report(&self, what: &str, last: &str) -> String {
        let targets = match self.active_targets().await {
            Ok(targets) if targets.is_empty() => "  (no active targets)\n".to_owned(),
            Ok(targets) => targets.iter().fold(String::new(), |mut out, t| {
                let _ = writeln!(
                    out,
                    "  job={} url={} health={} lastError={} lastScrape={}",
                    t["scrapePool"], t["scrapeUrl"], t["health"], t["lastError"], t["lastScrape"]
                );
                out
            }),
            Err(e) => format!("  (could not list targets: {e:#})\n"),
        };
        format!(
            "{what} from Prometheus ({backend}) at {url}\n{last}\ntargets:\n{targets}\
             Prometheus log (end):\n{log}",
            backend = self.backend(),
            url = self.base_url(),
            log = self.engine.log_tail().await,
        )
    }
}
