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

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use serde_yaml_ng::{Mapping, Value as Yaml};

pub use super::engine::Backend;
use super::engine::{
    BindMount, Engine, EngineSpec, Launch, LaunchContext, Placement, Reach, Running,
};
use crate::exposition::{samples, sum};
use crate::promql::{POLL_EVERY, QueryApi};
use crate::wait::{Check, TimedOut, poll};

/// The image used when `PROMETHEUS_IMAGE` is not set: the official one, pinned.
///
/// v3.13.4 (2026-09-29) is the newest patch of the 3.13 long-term-support line (supported
/// to 2027-07-31) that a release note confirms. `docker-compose.yml` and the book name
/// the same tag; a test checks that they agree.
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

// ---------------------------------------------------------------------------
// file_sd targets
// ---------------------------------------------------------------------------

/// A directory of `file_sd` target files that a test changes while Prometheus runs.
///
/// Prometheus watches the directory and applies a change at once, without a restart or
/// a reload. A container sees the directory through a read-only bind mount at
/// [`CONTAINER_TARGETS_DIR`]; a native Prometheus reads it where it is. The directory is
/// mode 0755 and every file 0644, so the official image's user `nobody` can read them.
/// Files are replaced atomically (written beside, then renamed), so Prometheus never
/// reads half a file.
#[derive(Debug)]
pub struct TargetsDir {
    dir: tempfile::TempDir,
}

/// One entry of a `file_sd` file: targets and the labels they all get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// `host:port` of each target.
    pub targets: Vec<String>,
    /// Labels added to every series scraped from these targets.
    pub labels: Vec<(String, String)>,
}

impl TargetGroup {
    /// The targets `host:port` for each of `ports`, without labels.
    #[must_use]
    pub fn ports(host: &str, ports: &[u16]) -> Self {
        Self {
            targets: ports.iter().map(|port| format!("{host}:{port}")).collect(),
            labels: Vec::new(),
        }
    }
}

impl TargetsDir {
    /// An empty directory, readable by everyone.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("login-metrics-targets-")
            .tempdir()
            .context("creating the targets directory")?;
        set_mode(dir.path(), 0o755)?;
        Ok(Self { dir })
    }

    /// The directory on this machine.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `file` (e.g. `login_server.yml`) with `groups`, replacing it atomically.
    pub fn write(&self, file: &str, groups: &[TargetGroup]) -> anyhow::Result<()> {
        let yaml = Yaml::Sequence(
            groups
                .iter()
                .map(|group| {
                    let mut entry = Mapping::new();
                    entry.insert(
                        "targets".into(),
                        Yaml::Sequence(group.targets.iter().map(|t| t.as_str().into()).collect()),
                    );
                    if !group.labels.is_empty() {
                        let labels = group
                            .labels
                            .iter()
                            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                            .collect();
                        entry.insert("labels".into(), Yaml::Mapping(labels));
                    }
                    Yaml::Mapping(entry)
                })
                .collect(),
        );
        self.write_raw(file, serde_yaml_ng::to_string(&yaml)?.as_bytes())
    }

    /// Writes `file` with exactly `bytes` (a file of the repository, for example),
    /// replacing it atomically.
    pub fn write_raw(&self, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let target = self.dir.path().join(file);
        // A dot file: Prometheus' `*.yml` pattern does not match it while it is written.
        let scratch = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&scratch, bytes)
            .with_context(|| format!("writing {}", scratch.display()))?;
        set_mode(&scratch, 0o644)?;
        std::fs::rename(&scratch, &target)
            .with_context(|| format!("renaming {} to {}", scratch.display(), target.display()))
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

// ---------------------------------------------------------------------------
// The builder
// ---------------------------------------------------------------------------

/// A change to the configuration after the harness' own: `(root mapping, where it runs)`.
type ConfigEdit = Arc<dyn Fn(&mut Mapping, &LaunchContext) -> anyhow::Result<()> + Send + Sync>;

/// How to start a [`Prometheus`]; see [`Prometheus::builder`].
#[derive(Clone)]
pub struct PrometheusBuilder {
    config: PathBuf,
    server_port: Option<u16>,
    targets: Option<PathBuf>,
    external_labels: Vec<(String, String)>,
    remote_write: Option<String>,
    alertmanager: Option<AlertmanagerAddress>,
    reach: Reach,
    files: Vec<(String, Vec<u8>)>,
    edits: Vec<ConfigEdit>,
}

/// How a Prometheus reaches an Alertmanager, from a container and from a process.
#[derive(Debug, Clone)]
struct AlertmanagerAddress {
    from_container: String,
    from_native: String,
}

impl fmt::Debug for PrometheusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusBuilder")
            .field("config", &self.config)
            .field("server_port", &self.server_port)
            .field("targets", &self.targets)
            .field("external_labels", &self.external_labels)
            .field("remote_write", &self.remote_write)
            .field("alertmanager", &self.alertmanager)
            .field("reach", &self.reach)
            .field(
                "files",
                &self.files.iter().map(|f| &f.0).collect::<Vec<_>>(),
            )
            .field("edits", &self.edits.len())
            .finish()
    }
}

impl PrometheusBuilder {
    /// The configuration file to run, relative to the repository root (default
    /// `prometheus.yml`).
    #[must_use]
    pub fn config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = path.into();
        self
    }

    /// Point every static target on port 8000 at the login server whose metrics
    /// listener is on `port` of this machine. The configuration must have one.
    #[must_use]
    pub fn scrape_server(mut self, port: u16) -> Self {
        self.server_port = Some(port);
        self
    }

    /// Read `file_sd` targets from `targets`: every `files` pattern of every
    /// `file_sd_configs` keeps its file name part (`*.yml`) and looks in this directory.
    #[must_use]
    pub fn file_sd(mut self, targets: &TargetsDir) -> Self {
        self.targets = Some(targets.path().to_path_buf());
        self
    }

    /// Set `global.external_labels.<name>` to `value` (added, or replaced).
    #[must_use]
    pub fn external_label(mut self, name: &str, value: &str) -> Self {
        self.external_labels
            .push((name.to_owned(), value.to_owned()));
        self
    }

    /// Send every `remote_write` entry of the configuration to `url` (keeping its other
    /// settings); add one entry when the configuration has none.
    #[must_use]
    pub fn remote_write(mut self, url: impl Into<String>) -> Self {
        self.remote_write = Some(url.into());
        self
    }

    /// Send alerts to `alertmanager`. Without it the configuration's `alerting` section
    /// is removed: a test must never page an Alertmanager that happens to run on the
    /// machine.
    #[must_use]
    pub fn alertmanager(mut self, alertmanager: &Running) -> Self {
        self.alertmanager = Some(AlertmanagerAddress {
            from_container: alertmanager.address_for(Backend::Container),
            from_native: alertmanager.address_for(Backend::Native),
        });
        self
    }

    /// Join Docker network `network` as container `name`, so that other containers
    /// (Grafana) reach it at `http://NAME:9090`. Needs the container backend: skips
    /// with one line otherwise.
    #[must_use]
    pub fn on_network(mut self, network: &str, name: &str) -> Self {
        self.reach.network = Some((network.to_owned(), name.to_owned()));
        self
    }

    /// Place `bytes` at `path` relative to the configuration file (a rule file, for
    /// example), where Prometheus resolves relative paths of its configuration.
    #[must_use]
    pub fn file(mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), bytes.into()));
        self
    }

    /// Change the configuration after the harness' own changes, knowing where
    /// Prometheus runs (for addresses). Edits run in the order given.
    #[must_use]
    pub fn edit_config(
        mut self,
        edit: impl Fn(&mut Mapping, &LaunchContext) -> anyhow::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.edits.push(Arc::new(edit));
        self
    }

    /// Starts Prometheus. `Ok(None)` after one `skipped:` line when no Prometheus can
    /// run here and `auto` mode allows it; an explicit backend that cannot be met is an
    /// error.
    pub async fn start(self) -> anyhow::Result<Option<Prometheus>> {
        let path = crate::repo_root().join(&self.config);
        let original = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        // The rule files the configuration names travel with it, at the same relative
        // paths, so that a configuration with `rule_files:` runs as it is.
        // Their `for:` durations are divided by FOR_DIVISOR, like the intervals.
        let rule_files = rule_files_of(&path, &original)?
            .into_iter()
            .map(|(name, bytes)| {
                let text = String::from_utf8(bytes).context("a rule file that is not UTF-8")?;
                Ok((name, shorten_for(&text)?.into_bytes()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let rewrite = |ctx: &LaunchContext| -> anyhow::Result<(String, Option<String>)> {
            let changes = Changes {
                static_target: self.server_port.map(|port| format!("{}:{port}", ctx.host)),
                targets_dir: self.targets.as_ref().map(|dir| match ctx.backend {
                    Backend::Container => CONTAINER_TARGETS_DIR.to_owned(),
                    Backend::Native => dir.display().to_string(),
                }),
                external_labels: &self.external_labels,
                remote_write: self.remote_write.as_deref(),
            };
            let (mut doc, job) = rewrite_config(&original, &changes)
                .with_context(|| format!("rewriting {}", path.display()))?;
            let root = doc
                .as_mapping_mut()
                .context("the top level is not a mapping")?;
            let alertmanager = self.alertmanager.as_ref().map(|am| match ctx.backend {
                Backend::Container => am.from_container.as_str(),
                Backend::Native => am.from_native.as_str(),
            });
            point_alerting_at(root, alertmanager)?;
            for edit in &self.edits {
                edit(root, ctx)?;
            }
            Ok((serde_yaml_ng::to_string(&doc)?, job))
        };
        let engine = ENGINE
            .start(self.reach.clone(), |ctx| {
                let (config, _) = rewrite(ctx)?;
                let mut files = vec![("prometheus.yml".to_owned(), config.into_bytes())];
                files.extend(rule_files.iter().cloned());
                files.extend(self.files.iter().cloned());
                let mounts = match (&self.targets, ctx.backend) {
                    (Some(dir), Backend::Container) => {
                        vec![BindMount::new(dir, CONTAINER_TARGETS_DIR)]
                    }
                    _ => Vec::new(),
                };
                Ok(Launch {
                    files,
                    args: vec![
                        format!("--config.file={}/prometheus.yml", ctx.config_dir),
                        format!("--storage.tsdb.path={}", ctx.data_dir),
                        format!("--web.listen-address={}", ctx.listen),
                    ],
                    env: Vec::new(),
                    mounts,
                })
            })
            .await?;
        let Some(engine) = engine else {
            return Ok(None);
        };
        let target = self
            .server_port
            .map(|port| format!("{}:{port}", engine.host_seen_from_engine()))
            .unwrap_or_default();
        let context = LaunchContext {
            backend: engine.backend(),
            host: engine.host_seen_from_engine().to_owned(),
            config_dir: String::new(),
            data_dir: String::new(),
            listen: String::new(),
        };
        let (_, job) = rewrite(&context)?;
        let api = QueryApi::new("Prometheus", engine.base_url(), engine.http().clone());
        Ok(Some(Prometheus {
            engine,
            api,
            job: job.unwrap_or_default(),
            target,
        }))
    }
}

// ---------------------------------------------------------------------------
// A running Prometheus
// ---------------------------------------------------------------------------

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
        PrometheusBuilder {
            config: PathBuf::from(CONFIG_FILE),
            server_port: None,
            targets: None,
            external_labels: Vec::new(),
            remote_write: None,
            alertmanager: None,
            reach: Reach::default(),
            files: Vec::new(),
            edits: Vec::new(),
        }
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

// ---------------------------------------------------------------------------
// Remote write's own metrics
// ---------------------------------------------------------------------------

/// What remote write reports about itself on Prometheus' `/metrics`, summed over every
/// `remote_write` queue.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RemoteWriteStats {
    /// Samples sent (`prometheus_remote_storage_samples_total`).
    pub sent: f64,
    /// Samples that failed for good (`prometheus_remote_storage_samples_failed_total`).
    pub failed: f64,
    /// Samples waiting in the queue (`prometheus_remote_storage_samples_pending`).
    pub pending: f64,
    /// Samples sent again after a recoverable error
    /// (`prometheus_remote_storage_samples_retried_total`).
    pub retried: f64,
    /// How far the slowest queue is behind: the newest sample Prometheus has
    /// (`prometheus_remote_storage_highest_timestamp_in_seconds`) minus the newest it
    /// sent (`prometheus_remote_storage_queue_highest_sent_timestamp_seconds`), in
    /// seconds; `None` before anything was sent.
    pub lag_seconds: Option<f64>,
}

/// The names of each figure, current first. Prometheus 2.23 renamed them (changelog of
/// 2.23.0: `succeeded_samples_total` became `samples_total`, `failed_samples_total`
/// became `samples_failed_total`, `pending_samples` became `samples_pending`); 2.42
/// and the 3.x releases use the new names. The old ones are read too, so that the same
/// check works on any Prometheus a reader runs.
pub const REMOTE_WRITE_METRICS: [(&str, &[&str]); 4] = [
    (
        "sent",
        &[
            "prometheus_remote_storage_samples_total",
            "prometheus_remote_storage_succeeded_samples_total",
        ],
    ),
    (
        "failed",
        &[
            "prometheus_remote_storage_samples_failed_total",
            "prometheus_remote_storage_failed_samples_total",
        ],
    ),
    (
        "pending",
        &[
            "prometheus_remote_storage_samples_pending",
            "prometheus_remote_storage_pending_samples",
        ],
    ),
    (
        "retried",
        &[
            "prometheus_remote_storage_samples_retried_total",
            "prometheus_remote_storage_retried_samples_total",
        ],
    ),
];

impl RemoteWriteStats {
    /// Reads the figures from a `/metrics` page. `Err` names a figure none of whose
    /// names appear, which means remote write is not configured.
    pub fn parse(exposition: &str) -> anyhow::Result<Self> {
        let mut values = [0.0_f64; 4];
        for (slot, (what, names)) in values.iter_mut().zip(REMOTE_WRITE_METRICS) {
            let found = names.iter().find_map(|name| sum(exposition, name));
            *slot = found.with_context(|| {
                format!(
                    "no remote write {what} figure ({}) on the page",
                    names.join(" or ")
                )
            })?;
        }
        let [sent, failed, pending, retried] = values;
        let highest = samples(
            exposition,
            "prometheus_remote_storage_highest_timestamp_in_seconds",
        )
        .into_iter()
        .fold(None, |max: Option<f64>, v| {
            Some(max.map_or(v, |m| m.max(v)))
        });
        let slowest_sent = samples(
            exposition,
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
        )
        .into_iter()
        .fold(None, |min: Option<f64>, v| {
            Some(min.map_or(v, |m| m.min(v)))
        });
        let lag_seconds = match (highest, slowest_sent) {
            (Some(highest), Some(sent)) if sent > 0.0 => Some((highest - sent).max(0.0)),
            _ => None,
        };
        Ok(Self {
            sent,
            failed,
            pending,
            retried,
            lag_seconds,
        })
    }
}

// ---------------------------------------------------------------------------
// Configuration rewriting
// ---------------------------------------------------------------------------

/// What the harness changes in a configuration file.
#[derive(Debug, Default)]
struct Changes<'a> {
    /// Every static target on port 8000 becomes this.
    static_target: Option<String>,
    /// Where `file_sd` files are, as Prometheus sees it.
    targets_dir: Option<String>,
    external_labels: &'a [(String, String)],
    remote_write: Option<&'a str>,
}

/// The repository's `prometheus.yml` rewritten for a test: returns the YAML and the
/// job name whose target now points at `target`. Its `alerting` section is removed
/// (see [`PrometheusBuilder::alertmanager`]).
pub fn config_for(target: &str) -> anyhow::Result<(String, String)> {
    rewrite_repository_config(target, None)
}

/// [`config_for`], with the `alerting` targets pointing at `alertmanager` (`HOST:PORT`)
/// when given, removed otherwise.
pub fn rewrite_repository_config(
    target: &str,
    alertmanager: Option<&str>,
) -> anyhow::Result<(String, String)> {
    let path = crate::repo_root().join(CONFIG_FILE);
    let original =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let changes = Changes {
        static_target: Some(target.to_owned()),
        ..Changes::default()
    };
    let (mut doc, job) = rewrite_config(&original, &changes)
        .with_context(|| format!("rewriting {}", path.display()))?;
    point_alerting_at(
        doc.as_mapping_mut()
            .context("the top level is not a mapping")?,
        alertmanager,
    )?;
    Ok((
        serde_yaml_ng::to_string(&doc)?,
        job.context("a job scraping the server")?,
    ))
}

/// Points every `alerting.alertmanagers[].static_configs[].targets` at `address`, or
/// removes the `alerting` section when there is no Alertmanager.
fn point_alerting_at(root: &mut Mapping, address: Option<&str>) -> anyhow::Result<()> {
    let Some(address) = address else {
        root.remove("alerting");
        return Ok(());
    };
    let managers = root
        .get_mut("alerting")
        .and_then(|alerting| alerting.get_mut("alertmanagers"))
        .and_then(Yaml::as_sequence_mut)
        .context("an Alertmanager was given, but the config has no alerting.alertmanagers")?;
    for manager in managers {
        for static_config in manager["static_configs"]
            .as_sequence_mut()
            .into_iter()
            .flatten()
        {
            static_config["targets"] = Yaml::Sequence(vec![address.into()]);
        }
    }
    Ok(())
}

/// How much shorter every `for:` of the repository's alerting rules is in tests:
/// a minute becomes a second, as the scrape interval goes from 15 s to 1 s.
pub const FOR_DIVISOR: u64 = 60;

/// The rule files `prometheus.yml` names (`rule_files`), as `(relative path, YAML)`
/// for the configuration directory of a test Prometheus: the same rules with only
/// their `for:` durations divided by [`FOR_DIVISOR`] (`2m` → `2s`, `10m` → `10s`),
/// so that an alert fires in seconds. Expressions, windows and labels are unchanged.
pub fn rule_files_for_test() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let path = crate::repo_root().join(CONFIG_FILE);
    let original =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    rule_files_of(&path, &original)?
        .into_iter()
        .map(|(name, bytes)| {
            let text = String::from_utf8(bytes).context("a rule file that is not UTF-8")?;
            Ok((name, shorten_for(&text)?.into_bytes()))
        })
        .collect()
}

/// Divides every `for:` in a rule file by [`FOR_DIVISOR`].
fn shorten_for(rules: &str) -> anyhow::Result<String> {
    let mut doc: Yaml = serde_yaml_ng::from_str(rules).context("a rule file that is not YAML")?;
    for group in doc["groups"].as_sequence_mut().into_iter().flatten() {
        for rule in group["rules"].as_sequence_mut().into_iter().flatten() {
            if let Some(duration) = rule.get_mut("for") {
                let text = duration.as_str().context("`for` is a string")?;
                let seconds = parse_duration(text)?;
                *duration = format!("{}s", (seconds / FOR_DIVISOR).max(1)).into();
            }
        }
    }
    Ok(serde_yaml_ng::to_string(&doc)?)
}

/// Seconds in a Prometheus duration made of `s`, `m`, `h` and `d` parts (`1h30m`).
fn parse_duration(text: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .with_context(|| format!("duration {text:?}"))?;
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            other => bail!("duration {text:?}: unit {other:?} is not s, m, h or d"),
        };
        number.clear();
    }
    anyhow::ensure!(number.is_empty(), "duration {text:?} has no unit");
    Ok(total)
}

/// Applies `changes` and sets the scrape/evaluation intervals (and any explicit scrape
/// timeout) to one second. Everything else is kept as written. Returns the document
/// and the login server's job: the one whose static target was rewritten, else the
/// first job with `file_sd_configs`.
fn rewrite_config(original: &str, changes: &Changes) -> anyhow::Result<(Yaml, Option<String>)> {
    let mut doc: Yaml = serde_yaml_ng::from_str(original).context("not valid YAML")?;
    let root = doc
        .as_mapping_mut()
        .context("the top level is not a mapping")?;

    let global = root
        .entry("global".into())
        .or_insert_with(|| Yaml::Mapping(Mapping::new()))
        .as_mapping_mut()
        .context("`global` is not a mapping")?;
    global.insert("scrape_interval".into(), TEST_INTERVAL_TEXT.into());
    global.insert("evaluation_interval".into(), TEST_INTERVAL_TEXT.into());
    if global.contains_key("scrape_timeout") {
        global.insert("scrape_timeout".into(), TEST_INTERVAL_TEXT.into());
    }
    if !changes.external_labels.is_empty() {
        let labels = global
            .entry("external_labels".into())
            .or_insert_with(|| Yaml::Mapping(Mapping::new()))
            .as_mapping_mut()
            .context("`global.external_labels` is not a mapping")?;
        for (name, value) in changes.external_labels {
            labels.insert(name.as_str().into(), value.as_str().into());
        }
    }

    let scrape_configs = root
        .get_mut("scrape_configs")
        .and_then(Yaml::as_sequence_mut)
        .context("no `scrape_configs` list")?;
    let mut static_job = None;
    let mut file_sd_job = None;
    for scrape_config in scrape_configs.iter_mut().filter_map(Yaml::as_mapping_mut) {
        for key in ["scrape_interval", "scrape_timeout"] {
            if scrape_config.contains_key(key) {
                scrape_config.insert(key.into(), TEST_INTERVAL_TEXT.into());
            }
        }
        let name = scrape_config
            .get("job_name")
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(target) = &changes.static_target
            && rewrite_static_targets(scrape_config, target)
        {
            static_job.get_or_insert_with(|| name.clone());
        }
        if let Some(file_sd_configs) = scrape_config
            .get_mut("file_sd_configs")
            .and_then(Yaml::as_sequence_mut)
        {
            file_sd_job.get_or_insert_with(|| name.clone());
            if let Some(dir) = &changes.targets_dir {
                for file_sd in file_sd_configs.iter_mut() {
                    let Some(files) = file_sd.get_mut("files").and_then(Yaml::as_sequence_mut)
                    else {
                        continue;
                    };
                    for pattern in files.iter_mut() {
                        let text = pattern.as_str().unwrap_or("*.yml");
                        let file = text.rsplit('/').next().unwrap_or(text);
                        *pattern = format!("{dir}/{file}").into();
                    }
                }
            }
        }
    }
    if changes.static_target.is_some() && static_job.is_none() {
        bail!(
            "no static target on port {CONFIGURED_METRICS_PORT} to point at the server under test"
        );
    }
    if changes.targets_dir.is_some() && file_sd_job.is_none() {
        bail!("no `file_sd_configs` to point at the test's targets directory");
    }

    if let Some(url) = changes.remote_write {
        let entries = root
            .entry("remote_write".into())
            .or_insert_with(|| Yaml::Sequence(Vec::new()))
            .as_sequence_mut()
            .context("`remote_write` is not a list")?;
        if entries.is_empty() {
            entries.push(Yaml::Mapping(Mapping::new()));
        }
        for entry in entries.iter_mut() {
            entry
                .as_mapping_mut()
                .context("a `remote_write` entry is not a mapping")?
                .insert("url".into(), url.into());
        }
    }
    Ok((doc, static_job.or(file_sd_job)))
}

/// The files matched by the relative `rule_files` entries of the configuration at
/// `config_path` (text `yaml`), as `(path relative to the configuration, contents)`. A
/// `*` is understood in the file name part only, as in most configurations; absolute
/// paths are left to the reader's machine.
fn rule_files_of(config_path: &Path, yaml: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let doc: Yaml = serde_yaml_ng::from_str(yaml).context("not valid YAML")?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for entry in doc["rule_files"].as_sequence().into_iter().flatten() {
        let Some(pattern) = entry.as_str() else {
            continue;
        };
        if pattern.starts_with('/') {
            continue;
        }
        let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        let (prefix, suffix) = name.split_once('*').unwrap_or((name, ""));
        let literal = !name.contains('*');
        let directory = base.join(dir);
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue; // Prometheus reports a missing file itself.
        };
        for file in entries.flatten() {
            let file_name = file.file_name().to_string_lossy().into_owned();
            let matches = if literal {
                file_name == name
            } else {
                file_name.len() >= prefix.len() + suffix.len()
                    && file_name.starts_with(prefix)
                    && file_name.ends_with(suffix)
            };
            if matches && file.path().is_file() {
                let relative = if dir.is_empty() {
                    file_name
                } else {
                    format!("{dir}/{file_name}")
                };
                let bytes = std::fs::read(file.path())
                    .with_context(|| format!("reading {}", file.path().display()))?;
                files.push((relative, bytes));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Points every static target on [`CONFIGURED_METRICS_PORT`] of `scrape_config` at
/// `target`; whether there was one.
fn rewrite_static_targets(scrape_config: &mut Mapping, target: &str) -> bool {
    let Some(static_configs) = scrape_config
        .get_mut("static_configs")
        .and_then(Yaml::as_sequence_mut)
    else {
        return false;
    };
    let mut found = false;
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
                found = true;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite_static(original: &str, target: &str) -> anyhow::Result<(String, String)> {
        let changes = Changes {
            static_target: Some(target.to_owned()),
            ..Changes::default()
        };
        let (doc, job) = rewrite_config(original, &changes)?;
        Ok((serde_yaml_ng::to_string(&doc)?, job.unwrap()))
    }

    #[test]
    fn the_repository_config_is_rewritten_only_where_it_must_be() {
        let original = std::fs::read_to_string(crate::repo_root().join(CONFIG_FILE)).unwrap();
        let (rewritten, job) = rewrite_static(&original, "host.docker.internal:41234").unwrap();
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
        assert!(after.get("remote_write").is_none());
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
        let (rewritten, job) = rewrite_static(original, "127.0.0.1:5555").unwrap();
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

        assert!(rewrite_static("scrape_configs: []", "x:1").is_err());
    }

    #[test]
    fn file_sd_external_labels_and_remote_write() {
        let original = "
global:
  scrape_interval: 15s
  external_labels: {replica: a, cluster: demo}
scrape_configs:
  - job_name: login_server
    file_sd_configs:
      - files: [targets/*.yml]
        refresh_interval: 5m
remote_write:
  - url: http://victoria-metrics:8428/api/v1/write
    queue_config: {max_samples_per_send: 1000}
";
        let labels = [("replica".to_owned(), "b".to_owned())];
        let changes = Changes {
            targets_dir: Some("/etc/prometheus/targets".into()),
            external_labels: &labels,
            remote_write: Some("http://host.docker.internal:41000/api/v1/write"),
            ..Changes::default()
        };
        let (after, job) = rewrite_config(original, &changes).unwrap();
        assert_eq!(job.as_deref(), Some("login_server"));
        let file_sd = &after["scrape_configs"][0]["file_sd_configs"][0];
        assert_eq!(file_sd["files"][0], "/etc/prometheus/targets/*.yml");
        assert_eq!(file_sd["refresh_interval"], "5m");
        assert_eq!(after["global"]["external_labels"]["replica"], "b");
        assert_eq!(after["global"]["external_labels"]["cluster"], "demo");
        let remote = &after["remote_write"][0];
        assert_eq!(
            remote["url"],
            "http://host.docker.internal:41000/api/v1/write"
        );
        assert_eq!(remote["queue_config"]["max_samples_per_send"], 1000);

        // A remote write target where the file has none: one entry is added.
        let changes = Changes {
            remote_write: Some("http://127.0.0.1:1/api/v1/write"),
            ..Changes::default()
        };
        let (after, _) = rewrite_config("scrape_configs: []", &changes).unwrap();
        assert_eq!(
            after["remote_write"][0]["url"],
            "http://127.0.0.1:1/api/v1/write"
        );

        // Targets from files, but the file has no file_sd_configs.
        let changes = Changes {
            targets_dir: Some("/x".into()),
            ..Changes::default()
        };
        assert!(rewrite_config("scrape_configs: []", &changes).is_err());
    }

    #[test]
    fn remote_write_figures_under_both_spellings() {
        let current = "\
# HELP prometheus_remote_storage_samples_total Total number of samples sent to remote storage.
prometheus_remote_storage_samples_total{remote_name=\"a\",url=\"u\"} 9500
prometheus_remote_storage_samples_total{remote_name=\"b\",url=\"v\"} 500
prometheus_remote_storage_samples_failed_total{remote_name=\"a\",url=\"u\"} 0
prometheus_remote_storage_samples_pending{remote_name=\"a\",url=\"u\"} 497
prometheus_remote_storage_samples_retried_total{remote_name=\"a\",url=\"u\"} 3
prometheus_remote_storage_samples_in_total 9997
prometheus_remote_storage_highest_timestamp_in_seconds 1.795686749e+09
prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name=\"a\",url=\"u\"} 1.795686747e+09
prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name=\"b\",url=\"v\"} 1.795686744e+09
";
        let stats = RemoteWriteStats::parse(current).unwrap();
        assert_eq!(
            stats,
            RemoteWriteStats {
                sent: 10_000.0,
                failed: 0.0,
                pending: 497.0,
                retried: 3.0,
                lag_seconds: Some(5.0),
            }
        );
        let old = "\
prometheus_remote_storage_succeeded_samples_total{queue=\"q\"} 7
prometheus_remote_storage_failed_samples_total{queue=\"q\"} 1
prometheus_remote_storage_pending_samples{queue=\"q\"} 2
prometheus_remote_storage_retried_samples_total{queue=\"q\"} 0
";
        let old = RemoteWriteStats::parse(old).unwrap();
        assert!((old.sent - 7.0).abs() < f64::EPSILON, "{old:?}");
        assert_eq!(old.lag_seconds, None);
        let err = RemoteWriteStats::parse("up 1\n").unwrap_err().to_string();
        assert!(err.contains("no remote write sent figure"), "{err}");
    }

    #[test]
    fn rule_files_named_by_the_configuration_travel_with_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        for name in ["recording.yml", "alerts.yml", "notes.txt"] {
            std::fs::write(dir.path().join("rules").join(name), name).unwrap();
        }
        std::fs::write(dir.path().join("extra.yml"), "extra").unwrap();
        let config = dir.path().join("prometheus.yml");
        let yaml =
            "rule_files:\n  - rules/*.yml\n  - extra.yml\n  - missing.yml\n  - /etc/abs.yml\n";
        let files = rule_files_of(&config, yaml).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["extra.yml", "rules/alerts.yml", "rules/recording.yml"]
        );
        assert_eq!(files[2].1, b"recording.yml");
        assert!(
            rule_files_of(&config, "scrape_configs: []")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn targets_files_are_written_readable_and_atomically() {
        let dir = TargetsDir::new().unwrap();
        let mut group = TargetGroup::ports("127.0.0.1", &[8001, 8002]);
        group.labels.push(("zone".into(), "a".into()));
        dir.write("login_server.yml", &[group]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("login_server.yml")).unwrap();
        let yaml: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(yaml[0]["targets"][1], "127.0.0.1:8002");
        assert_eq!(yaml[0]["labels"]["zone"], "a");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["login_server.yml"], "no scratch file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(dir.path()), 0o755);
            assert_eq!(mode(&dir.path().join("login_server.yml")), 0o644);
        }
    }

    #[test]
    fn alerts_go_to_the_given_alertmanager_or_nowhere() {
        let (without, _) = rewrite_repository_config("127.0.0.1:1", None).unwrap();
        let without: Yaml = serde_yaml_ng::from_str(&without).unwrap();
        assert!(without.get("alerting").is_none(), "{without:?}");
        assert_eq!(without["rule_files"][0], "rules/recording.yml");

        let (with, _) = rewrite_repository_config("127.0.0.1:1", Some("127.0.0.1:9999")).unwrap();
        let with: Yaml = serde_yaml_ng::from_str(&with).unwrap();
        assert_eq!(
            with["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"],
            Yaml::Sequence(vec!["127.0.0.1:9999".into()])
        );
    }

    #[test]
    fn durations_parse_like_prometheus_writes_them() {
        assert_eq!(parse_duration("2m").unwrap(), 120);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("3d").unwrap(), 259_200);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5w").is_err());
    }

    #[test]
    fn rules_keep_everything_but_a_shorter_for() {
        let files = rule_files_for_test().unwrap();
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["rules/alerts.yml", "rules/recording.yml"]);
        let original: Yaml = serde_yaml_ng::from_str(
            &std::fs::read_to_string(crate::repo_root().join("rules/alerts.yml")).unwrap(),
        )
        .unwrap();
        let shortened: Yaml = serde_yaml_ng::from_slice(&files[0].1).unwrap();
        let rules = |doc: &Yaml| {
            doc["groups"]
                .as_sequence()
                .unwrap()
                .iter()
                .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
                .collect::<Vec<_>>()
        };
        let (before, after) = (rules(&original), rules(&shortened));
        assert_eq!(before.len(), after.len());
        let mut shortened_any = false;
        for (mut before, after) in before.into_iter().zip(after) {
            if let Some(duration) = before.get("for").and_then(Yaml::as_str) {
                let seconds = parse_duration(duration).unwrap() / FOR_DIVISOR;
                assert_eq!(after["for"], format!("{seconds}s"), "{before:?}");
                before["for"] = after["for"].clone();
                shortened_any = true;
            }
            assert_eq!(before, after, "only `for` changes");
        }
        assert!(shortened_any);
    }
}
