//! A real Prometheus for end-to-end tests.
//!
//! [`Prometheus::start`] runs the repository's own `prometheus.yml` with only two
//! changes: the login server's target (`…:8000`) points at the server under test, and
//! the scrape and evaluation intervals drop to one second. It runs either
//!
//! - in Docker ([`Backend::Container`]), image from `PROMETHEUS_IMAGE` (default
//!   [`DEFAULT_IMAGE`]), reaching the server under test through
//!   `host.docker.internal` mapped to the host gateway, so that server must listen on
//!   `0.0.0.0`; the container is removed when the handle drops; or
//! - as a `prometheus` process from `PATH` ([`Backend::Native`]) with a temporary
//!   configuration and storage directory on a free port, killed when the handle drops.
//!
//! `LOGIN_METRICS_PROMETHEUS=container|native|auto` chooses; `auto` (the default) takes
//! Docker when a daemon answers and the binary otherwise. With neither, `start` prints
//! one line saying what to install and returns `Ok(None)`, and the test skips.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use serde_yaml_ng::{Mapping, Value as Yaml};
use testcontainers::core::{Host, IntoContainerPort};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, CopyTargetOptions, GenericImage, Image, ImageExt};

use super::docker;

/// The image used when `PROMETHEUS_IMAGE` is not set: the official one, pinned.
pub const DEFAULT_IMAGE: &str = "prom/prometheus:v3.13.5";
/// Environment variable naming the Prometheus image (`name:tag`).
pub const IMAGE_ENV: &str = "PROMETHEUS_IMAGE";
/// Environment variable choosing the backend: `container`, `native` or `auto`.
pub const BACKEND_ENV: &str = "LOGIN_METRICS_PROMETHEUS";
/// The configuration users run, which the harness runs too.
pub const CONFIG_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/prometheus.yml");
/// The metrics port `prometheus.yml` scrapes; targets on this port get rewritten.
pub const CONFIGURED_METRICS_PORT: u16 = 8000;

const CONTAINER_PORT: u16 = 9090;
const CONTAINER_CONFIG: &str = "/etc/prometheus/prometheus.yml";
const CONTAINER_STORAGE: &str = "/prometheus";
const TEST_INTERVAL: &str = "1s";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_LINES_IN_ERRORS: usize = 40;

/// Where a [`Prometheus`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A Docker container started with testcontainers.
    Container,
    /// A `prometheus` child process from `PATH`.
    Native,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Container => "container",
            Backend::Native => "native",
        })
    }
}

/// A running Prometheus scraping the server under test. Dropping it stops Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    backend: Backend,
    base_url: String,
    network_url: Option<String>,
    job: String,
    target: String,
    http: reqwest::Client,
    runtime: Runtime,
}

#[derive(Debug)]
enum Runtime {
    Container(Box<ContainerAsync<GenericImage>>),
    Native(NativeProcess),
}

/// Fields drop in order: the process dies before its directory is removed.
#[derive(Debug)]
struct NativeProcess {
    child: Mutex<ChildGuard>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Auto,
    Only(Backend),
}

struct Network<'a> {
    network: &'a str,
    name: &'a str,
}

impl Prometheus {
    /// Start Prometheus scraping the login server's metrics listener on `metrics_port`
    /// of this host, on the backend `LOGIN_METRICS_PROMETHEUS` selects (default `auto`).
    ///
    /// Returns `Ok(None)` after printing one line saying what to install when neither
    /// Docker nor a `prometheus` binary is available. A backend selected explicitly but
    /// unavailable is an error.
    pub async fn start(metrics_port: u16) -> anyhow::Result<Option<Prometheus>> {
        match backend_choice()? {
            Choice::Only(Backend::Container) => {
                docker::available()
                    .await
                    .map_err(|reason| anyhow!("{BACKEND_ENV}=container, but {reason}"))?;
                Self::start_container(metrics_port, None).await.map(Some)
            }
            Choice::Only(Backend::Native) => {
                let binary = find_prometheus_binary().ok_or_else(|| {
                    anyhow!("{BACKEND_ENV}=native, but there is no `prometheus` binary on PATH")
                })?;
                Self::start_native(&binary, metrics_port).await.map(Some)
            }
            Choice::Auto => match docker::available().await {
                Ok(()) => match Self::start_container(metrics_port, None).await {
                    Ok(prometheus) => Ok(Some(prometheus)),
                    // Docker works but the image does not (typically: no registry
                    // access). Say so, and use the binary if there is one.
                    Err(error) => match find_prometheus_binary() {
                        Some(binary) => {
                            crate::testing::report(&format!(
                                "note: using {} because the Prometheus container did not start: {error:#}",
                                binary.display()
                            ));
                            Self::start_native(&binary, metrics_port).await.map(Some)
                        }
                        None => Err(error),
                    },
                },
                Err(docker_reason) => {
                    if let Some(binary) = find_prometheus_binary() {
                        crate::testing::report(&format!(
                            "note: using {} because Docker is unavailable ({docker_reason})",
                            binary.display()
                        ));
                        Self::start_native(&binary, metrics_port).await.map(Some)
                    } else {
                        crate::testing::report(&nothing_to_run_message(&docker_reason));
                        Ok(None)
                    }
                }
            },
        }
    }

    /// Start Prometheus in Docker on the Docker network `network` (created when missing,
    /// removed with its last container) as container `name`, so that other containers
    /// (Grafana) reach it at [`network_url`](Self::network_url) = `http://NAME:9090`.
    /// The name must be unique among running containers (see [`docker::unique_name`]).
    ///
    /// Needs Docker: returns `Ok(None)` after printing one line when Docker is
    /// unavailable or `LOGIN_METRICS_PROMETHEUS=native`.
    pub async fn start_on_network(
        metrics_port: u16,
        network: &str,
        name: &str,
    ) -> anyhow::Result<Option<Prometheus>> {
        let choice = backend_choice()?;
        if choice == Choice::Only(Backend::Native) {
            crate::testing::report(&format!(
                "skipped: this test needs Prometheus in Docker, but {BACKEND_ENV}=native"
            ));
            return Ok(None);
        }
        if let Err(reason) = docker::available().await {
            if choice == Choice::Only(Backend::Container) {
                bail!("{BACKEND_ENV}=container, but {reason}");
            }
            crate::testing::report(&format!("skipped: this test needs Docker, but {reason}"));
            return Ok(None);
        }
        Self::start_container(metrics_port, Some(Network { network, name }))
            .await
            .map(Some)
    }

    /// Where this Prometheus runs.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The HTTP API as seen from the test, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The HTTP API as seen from other containers on the network given to
    /// [`start_on_network`](Self::start_on_network) (`http://NAME:9090`); `None` otherwise.
    #[must_use]
    pub fn network_url(&self) -> Option<&str> {
        self.network_url.as_deref()
    }

    /// The job name of the rewritten scrape config (`job_name` in `prometheus.yml`).
    #[must_use]
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The address Prometheus scrapes, e.g. `host.docker.internal:41234`.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// An instant query; returns the `data.result` array of the answer.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Value> {
        let data = self.query_data(promql).await?;
        Ok(data.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Polls the instant query `promql` until it returns a non-empty result with at
    /// least one number that is not NaN, and returns that `data.result` array.
    ///
    /// On timeout the error shows the last answer, every target's health and
    /// `lastError`, and the end of Prometheus' log.
    pub async fn wait_for_data(&self, promql: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.query_data(promql).await {
                Ok(data) if has_data(&data) => {
                    return Ok(data.get("result").cloned().unwrap_or(Value::Null));
                }
                Ok(data) => data.to_string(),
                Err(e) => format!("error: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{}",
                    self.failure_report(
                        &format!("no data for `{promql}` within {timeout:?}"),
                        &format!("last answer: {last}"),
                    )
                    .await
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Polls `/api/v1/targets` until every target of the login server's job reports
    /// `health` (`"up"` or `"down"`).
    pub async fn wait_for_target_health(
        &self,
        health: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.active_targets().await {
                Ok(targets) => {
                    let ours: Vec<&Value> = targets
                        .iter()
                        .filter(|t| {
                            t["scrapePool"] == self.job.as_str()
                                || t["labels"]["job"] == self.job.as_str()
                        })
                        .collect();
                    if !ours.is_empty() && ours.iter().all(|t| t["health"] == health) {
                        return Ok(());
                    }
                    format!(
                        "job {:?} targets: {}",
                        self.job,
                        Value::from(targets.clone())
                    )
                }
                Err(e) => format!("error: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{}",
                    self.failure_report(
                        &format!(
                            "target of job {:?} ({}) not {health:?} within {timeout:?}",
                            self.job, self.target
                        ),
                        &format!("last answer: {last}"),
                    )
                    .await
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Prometheus' own log (container stdout and stderr, or the process' output).
    pub async fn logs(&self) -> String {
        match &self.runtime {
            Runtime::Container(container) => docker::container_logs(container).await,
            Runtime::Native(process) => read_log(&process.log_path),
        }
    }

    async fn start_container(metrics_port: u16, on: Option<Network<'_>>) -> anyhow::Result<Self> {
        let target = format!("{}:{metrics_port}", docker::HOST_GATEWAY_NAME);
        let (config, job) = config_for(&target)?;
        let image = docker::image_from_env(IMAGE_ENV, DEFAULT_IMAGE);
        let descriptor = format!("{}:{}", image.name(), image.tag());

        let mut request = image
            .with_exposed_port(CONTAINER_PORT.tcp())
            .with_cmd([
                format!("--config.file={CONTAINER_CONFIG}"),
                format!("--storage.tsdb.path={CONTAINER_STORAGE}"),
                format!("--web.listen-address=:{CONTAINER_PORT}"),
            ])
            // Bytes, world-readable: the official image runs as `nobody`.
            .with_copy_to(
                CopyTargetOptions::new(CONTAINER_CONFIG).with_mode(0o644),
                config.into_bytes(),
            )
            .with_host(docker::HOST_GATEWAY_NAME, Host::HostGateway)
            .with_startup_timeout(STARTUP_TIMEOUT);
        let mut network_url = None;
        if let Some(Network { network, name }) = on {
            request = request.with_network(network).with_container_name(name);
            network_url = Some(format!("http://{name}:{CONTAINER_PORT}"));
        }

        let container = request.start().await.with_context(|| {
            format!(
                "starting a Prometheus container from image {descriptor} via {} \
                 (without registry access, load or build an image locally and set \
                 {IMAGE_ENV}, or use {BACKEND_ENV}=native)",
                docker::docker_host()
            )
        })?;
        let host = container.get_host().await?.to_string();
        let host = if host == "localhost" {
            "127.0.0.1".to_owned()
        } else {
            host
        };
        let port = container.get_host_port_ipv4(CONTAINER_PORT).await?;

        let prometheus = Prometheus {
            backend: Backend::Container,
            base_url: format!("http://{host}:{port}"),
            network_url,
            job,
            target,
            http: http_client()?,
            runtime: Runtime::Container(Box::new(container)),
        };
        prometheus.wait_until_ready().await?;
        Ok(prometheus)
    }

    async fn start_native(binary: &Path, metrics_port: u16) -> anyhow::Result<Self> {
        let target = format!("127.0.0.1:{metrics_port}");
        let (config, job) = config_for(&target)?;
        let dir = tempfile::Builder::new()
            .prefix("login-metrics-prometheus-")
            .tempdir()
            .context("creating a temporary directory for Prometheus")?;
        let config_path = dir.path().join("prometheus.yml");
        let storage = dir.path().join("data");
        let log_path = dir.path().join("prometheus.log");
        std::fs::write(&config_path, config)?;
        std::fs::create_dir(&storage)?;

        // The free port can be taken between our probe and Prometheus binding it.
        let mut attempt = 1;
        let (child, port) = loop {
            let port = free_port()?;
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)?;
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", storage.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("running {}", binary.display()))?;
            let mut child = ChildGuard(child);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let exited = child.0.try_wait()?.is_some();
            if exited && attempt < 3 && read_log(&log_path).contains("address already in use") {
                attempt += 1;
                continue;
            }
            break (child, port);
        };

        let prometheus = Prometheus {
            backend: Backend::Native,
            base_url: format!("http://127.0.0.1:{port}"),
            network_url: None,
            job,
            target,
            http: http_client()?,
            runtime: Runtime::Native(NativeProcess {
                child: Mutex::new(child),
                log_path,
                _dir: dir,
            }),
        };
        prometheus.wait_until_ready().await?;
        Ok(prometheus)
    }

    /// Polls `/-/ready` until it answers 200; fails early when Prometheus exits.
    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let url = format!("{}/-/ready", self.base_url);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let last = match self.http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!("HTTP {}", response.status()),
                Err(e) => format!("{e}"),
            };
            if let Some(exit) = self.exited().await {
                bail!(
                    "Prometheus ({}) exited before it was ready ({exit}); log:\n{}",
                    self.backend,
                    docker::tail(&self.logs().await, LOG_LINES_IN_ERRORS)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "Prometheus ({}) not ready at {url} within {STARTUP_TIMEOUT:?} \
                     (last answer: {last}); log:\n{}",
                    self.backend,
                    docker::tail(&self.logs().await, LOG_LINES_IN_ERRORS)
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// `Some(description)` when Prometheus is no longer running.
    async fn exited(&self) -> Option<String> {
        match &self.runtime {
            Runtime::Container(container) => match container.is_running().await {
                Ok(true) => None,
                Ok(false) => Some(match container.exit_code().await {
                    Ok(Some(code)) => format!("container exit code {code}"),
                    _ => "container stopped".to_owned(),
                }),
                Err(e) => Some(format!("container state unknown: {e}")),
            },
            Runtime::Native(process) => {
                let mut child = process.child.lock().unwrap_or_else(PoisonError::into_inner);
                match child.0.try_wait() {
                    Ok(None) => None,
                    Ok(Some(status)) => Some(format!("process {status}")),
                    Err(e) => Some(format!("process state unknown: {e}")),
                }
            }
        }
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
        let params = [
            ("query", promql.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{}", step.as_secs_f64())),
        ];
        let data = self.api_data("query_range", promql, &params).await?;
        Ok(data.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn query_data(&self, promql: &str) -> anyhow::Result<Value> {
        self.api_data("query", promql, &[("query", promql.to_owned())])
            .await
    }

    /// `GET /api/v1/<endpoint>` with `params`; the `data` of a successful answer.
    async fn api_data(
        &self,
        endpoint: &str,
        promql: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/{endpoint}", self.base_url);
        let response = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .with_context(|| format!("GET {url}?query={promql}"))?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| {
            format!("query `{promql}`: HTTP {status} with a body that is not JSON")
        })?;
        if body["status"] != "success" {
            bail!(
                "query `{promql}` failed (HTTP {status}): {} {}",
                body["errorType"],
                body["error"]
            );
        }
        Ok(body["data"].clone())
    }

    async fn active_targets(&self) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}/api/v1/targets", self.base_url);
        let body: Value = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("GET {url}: body is not JSON"))?;
        Ok(body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
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
             Prometheus log (last {LOG_LINES_IN_ERRORS} lines):\n{log}",
            backend = self.backend,
            url = self.base_url,
            log = docker::tail(&self.logs().await, LOG_LINES_IN_ERRORS),
        )
    }
}

fn backend_choice() -> anyhow::Result<Choice> {
    let value = std::env::var(BACKEND_ENV).unwrap_or_default();
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(Choice::Auto),
        "container" | "docker" => Ok(Choice::Only(Backend::Container)),
        "native" => Ok(Choice::Only(Backend::Native)),
        other => bail!("{BACKEND_ENV}={other:?}: expected `container`, `native` or `auto`"),
    }
}

fn nothing_to_run_message(docker_reason: &str) -> String {
    format!(
        "skipped: no Prometheus to test against ({docker_reason}; no `prometheus` binary on \
         PATH): install Docker, or Prometheus itself (`apt install prometheus`, \
         `brew install prometheus`, or https://prometheus.io/download/)"
    )
}

/// The first executable `prometheus` on `PATH`.
fn find_prometheus_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

fn read_log(path: &Path) -> String {
    match File::open(path).and_then(|mut f| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes)?;
        Ok(bytes)
    }) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<could not read {}: {e}>", path.display()),
    }
}

/// The repository's `prometheus.yml` rewritten for a test: returns the YAML and the
/// job name whose target now points at `target`.
pub fn config_for(target: &str) -> anyhow::Result<(String, String)> {
    let original =
        std::fs::read_to_string(CONFIG_FILE).with_context(|| format!("reading {CONFIG_FILE}"))?;
    rewrite_config(&original, target).with_context(|| format!("rewriting {CONFIG_FILE}"))
}

/// Points every static target on [`CONFIGURED_METRICS_PORT`] at `target` and sets the
/// scrape/evaluation intervals (and any explicit scrape timeout) to one second.
/// Everything else is kept as written.
fn rewrite_config(original: &str, target: &str) -> anyhow::Result<(String, String)> {
    let mut doc: Yaml = serde_yaml_ng::from_str(original).context("not valid YAML")?;
    let root = doc
        .as_mapping_mut()
        .context("the top level is not a mapping")?;

    let global = root
        .entry("global".into())
        .or_insert_with(|| Yaml::Mapping(Mapping::new()))
        .as_mapping_mut()
        .context("`global` is not a mapping")?;
    global.insert("scrape_interval".into(), TEST_INTERVAL.into());
    global.insert("evaluation_interval".into(), TEST_INTERVAL.into());
    if global.contains_key("scrape_timeout") {
        global.insert("scrape_timeout".into(), TEST_INTERVAL.into());
    }

    let scrape_configs = root
        .get_mut("scrape_configs")
        .and_then(Yaml::as_sequence_mut)
        .context("no `scrape_configs` list")?;
    let mut job = None;
    for scrape_config in scrape_configs.iter_mut().filter_map(Yaml::as_mapping_mut) {
        for key in ["scrape_interval", "scrape_timeout"] {
            if scrape_config.contains_key(key) {
                scrape_config.insert(key.into(), TEST_INTERVAL.into());
            }
        }
        let name = scrape_config
            .get("job_name")
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(static_configs) = scrape_config
            .get_mut("static_configs")
            .and_then(Yaml::as_sequence_mut)
        else {
            continue;
        };
        for static_config in static_configs {
            let Some(targets) = static_config
                .get_mut("targets")
                .and_then(Yaml::as_sequence_mut)
            else {
                continue;
            };
            for entry in targets {
                if entry
                    .as_str()
                    .and_then(|t| t.rsplit_once(':'))
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                    == Some(CONFIGURED_METRICS_PORT)
                {
                    *entry = target.into();
                    job.get_or_insert_with(|| name.clone());
                }
            }
        }
    }
    let job = job.with_context(|| {
        format!(
            "no static target on port {CONFIGURED_METRICS_PORT} to point at the server under test"
        )
    })?;
    Ok((serde_yaml_ng::to_string(&doc)?, job))
}

/// A non-empty result with at least one number that is not NaN.
fn has_data(data: &Value) -> bool {
    let is_number = |sample: &Value| {
        sample
            .get(1)
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| !v.is_nan())
    };
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .is_some_and(|series| series.iter().any(|s| is_number(&s["value"]))),
        Some("matrix") => result.as_array().is_some_and(|series| {
            series.iter().any(|s| {
                s["values"]
                    .as_array()
                    .is_some_and(|values| values.iter().any(is_number))
            })
        }),
        Some("scalar") => is_number(result),
        Some("string") => result
            .get(1)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_repository_config_is_rewritten_only_where_it_must_be() {
        let original = std::fs::read_to_string(CONFIG_FILE).unwrap();
        let (rewritten, job) = rewrite_config(&original, "host.docker.internal:41234").unwrap();
        assert_eq!(job, "login_server");

        let before: Yaml = serde_yaml_ng::from_str(&original).unwrap();
        let after: Yaml = serde_yaml_ng::from_str(&rewritten).unwrap();
        assert_eq!(after["global"]["scrape_interval"], "1s");
        assert_eq!(after["global"]["evaluation_interval"], "1s");
        let job_before = &before["scrape_configs"][0];
        let job_after = &after["scrape_configs"][0];
        assert_eq!(
            job_before["static_configs"][0]["targets"][0],
            "localhost:8000"
        );
        assert_eq!(
            job_after["static_configs"][0]["targets"],
            Yaml::Sequence(vec!["host.docker.internal:41234".into()])
        );
        assert_eq!(job_after["job_name"], job_before["job_name"]);
        assert_eq!(job_after["metrics_path"], job_before["metrics_path"]);
    }

    #[test]
    fn other_targets_and_explicit_intervals() {
        let original = "
global: {scrape_interval: 15s, scrape_timeout: 10s}
scrape_configs:
  - job_name: self
    static_configs: [{targets: ['localhost:9090']}]
  - job_name: app
    scrape_interval: 30s
    static_configs: [{targets: ['localhost:8000'], labels: {env: dev}}]
";
        let (rewritten, job) = rewrite_config(original, "127.0.0.1:5555").unwrap();
        let after: Yaml = serde_yaml_ng::from_str(&rewritten).unwrap();
        assert_eq!(job, "app");
        assert_eq!(after["global"]["scrape_timeout"], "1s");
        assert_eq!(
            after["scrape_configs"][0]["static_configs"][0]["targets"][0],
            "localhost:9090"
        );
        assert_eq!(after["scrape_configs"][1]["scrape_interval"], "1s");
        assert_eq!(
            after["scrape_configs"][1]["static_configs"][0]["targets"][0],
            "127.0.0.1:5555"
        );
        assert_eq!(
            after["scrape_configs"][1]["static_configs"][0]["labels"]["env"],
            "dev"
        );

        assert!(rewrite_config("scrape_configs: []", "x:1").is_err());
    }

    #[test]
    fn data_means_a_number() {
        let vector = |v: &str| json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, v]}]});
        assert!(has_data(&vector("1")));
        assert!(has_data(&vector("0")));
        assert!(!has_data(&vector("NaN")));
        assert!(!has_data(&json!({"resultType": "vector", "result": []})));
        assert!(has_data(
            &json!({"resultType": "scalar", "result": [1.0, "2"]})
        ));
        assert!(has_data(
            &json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[1.0, "NaN"], [2.0, "3"]]}]})
        ));
    }

    #[test]
    fn backend_names() {
        assert_eq!(Backend::Container.to_string(), "container");
        assert_eq!(Backend::Native.to_string(), "native");
    }
}
