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

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use serde_yaml_ng::{Mapping, Value as Yaml};

pub use super::engine::Backend;
use super::engine::{Engine, EngineSpec, Launch, Reach, Running};

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

const TEST_INTERVAL: &str = "1s";
const POLL_EVERY: Duration = Duration::from_millis(250);

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

/// A running Prometheus scraping the server under test. Dropping it stops Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    engine: Running,
    job: String,
    target: String,
}

impl Prometheus {
    /// Start Prometheus scraping the login server's metrics listener on `metrics_port`
    /// of this host, with the repository's rules (their `for:` durations shortened,
    /// see [`rule_files_for_test`]) and no Alertmanager.
    ///
    /// `Ok(None)` after one `skipped:` line when no Prometheus can run here and `auto`
    /// mode allows it; an explicit backend that cannot be met is an error.
    pub async fn start(metrics_port: u16) -> anyhow::Result<Option<Prometheus>> {
        Self::start_with(metrics_port, Reach::default(), None).await
    }

    /// Like [`start`](Self::start), sending alerts to the Alertmanager at `alertmanager`
    /// (a [`Running`] engine, reached the way this Prometheus can reach it).
    pub async fn start_with_alertmanager(
        metrics_port: u16,
        alertmanager: &Running,
    ) -> anyhow::Result<Option<Prometheus>> {
        Self::start_with(metrics_port, Reach::default(), Some(alertmanager)).await
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
        let reach = Reach {
            network: Some((network.to_owned(), name.to_owned())),
            from_containers: false,
        };
        Self::start_with(metrics_port, reach, None).await
    }

    async fn start_with(
        metrics_port: u16,
        reach: Reach,
        alertmanager: Option<&Running>,
    ) -> anyhow::Result<Option<Prometheus>> {
        let rules = rule_files_for_test()?;
        let engine = ENGINE
            .start(reach, |ctx| {
                let target = format!("{}:{metrics_port}", ctx.host);
                let alertmanager = alertmanager.map(|am| am.address_for(ctx.backend));
                let (config, _job) = rewrite_repository_config(&target, alertmanager.as_deref())?;
                let mut files = vec![("prometheus.yml".to_owned(), config.into_bytes())];
                files.extend(rules.iter().cloned());
                Ok(Launch {
                    files,
                    args: vec![
                        format!("--config.file={}/prometheus.yml", ctx.config_dir),
                        format!("--storage.tsdb.path={}", ctx.data_dir),
                        format!("--web.listen-address={}", ctx.listen),
                    ],
                    env: Vec::new(),
                })
            })
            .await?;
        let Some(engine) = engine else {
            return Ok(None);
        };
        let target = format!("{}:{metrics_port}", engine.host_seen_from_engine());
        let (_, job) = config_for(&target)?;
        Ok(Some(Prometheus {
            engine,
            job,
            target,
        }))
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

    /// The HTTP API as seen from other containers on the network given to
    /// [`start_on_network`](Self::start_on_network) (`http://NAME:9090`); `None` otherwise.
    #[must_use]
    pub fn network_url(&self) -> Option<&str> {
        self.engine.network_url()
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

    /// Polls the instant query `promql` until it returns at least one number that is
    /// not NaN, **zero included**, and returns that `data.result` array. Use it only
    /// where zero is a correct answer; where traffic was sent, use
    /// [`wait_for_nonzero`](Self::wait_for_nonzero) or [`wait_for_value`](Self::wait_for_value).
    ///
    /// On timeout the error shows the last answer, every target's health and
    /// `lastError`, and the end of Prometheus' log.
    pub async fn wait_for_data(&self, promql: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_until(promql, timeout, "no data", |numbers| !numbers.is_empty())
            .await
    }

    /// Polls `promql` until at least one of its numbers is finite and not zero: the
    /// proof that traffic was counted. A rate over requests that were never
    /// recorded is 0, which [`wait_for_data`](Self::wait_for_data) would accept.
    pub async fn wait_for_nonzero(&self, promql: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_until(promql, timeout, "no non-zero value", |numbers| {
            numbers.iter().any(|v| v.is_finite() && *v != 0.0)
        })
        .await
    }

    /// Polls `promql` until it returns exactly one number, equal to `expected`.
    pub async fn wait_for_value(
        &self,
        promql: &str,
        expected: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until(
            promql,
            timeout,
            &format!("no single value {expected}"),
            |numbers| matches!(numbers, [value] if (value - expected).abs() < 1e-9),
        )
        .await
        .map(drop)
    }

    /// Polls the instant query `promql` until `accept` holds for its numbers (NaN
    /// left out), and returns the `data.result` array.
    async fn wait_until(
        &self,
        promql: &str,
        timeout: Duration,
        failure: &str,
        accept: impl Fn(&[f64]) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.query_data(promql).await {
                Ok(data) if accept(&numbers(&data)) => {
                    return Ok(data.get("result").cloned().unwrap_or(Value::Null));
                }
                Ok(data) => data.to_string(),
                Err(e) => format!("error: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{}",
                    self.failure_report(
                        &format!("{failure} for `{promql}` within {timeout:?}"),
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
        self.engine.logs().await
    }

    /// The engine underneath, for what this wrapper does not cover.
    #[must_use]
    pub fn engine(&self) -> &Running {
        &self.engine
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
        let url = format!("{}/api/v1/{endpoint}", self.base_url());
        let response = self
            .engine
            .http()
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
        let url = format!("{}/api/v1/targets", self.base_url());
        let body: Value = self
            .engine
            .http()
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
             Prometheus log (end):\n{log}",
            backend = self.backend(),
            url = self.base_url(),
            log = self.engine.log_tail().await,
        )
    }
}

/// The repository's `prometheus.yml` rewritten for a test: returns the YAML and the
/// job name whose target now points at `target`. Its `alerting` section is removed:
/// a test must never send alerts to an Alertmanager that happens to run on the
/// machine (see [`rewrite_repository_config`] for one that does send them).
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
    rewrite_config(&original, target, alertmanager)
        .with_context(|| format!("rewriting {}", path.display()))
}

/// How much shorter every `for:` of the repository's alerting rules is in tests:
/// a minute becomes a second, as the scrape interval goes from 15 s to 1 s.
pub const FOR_DIVISOR: u64 = 60;

/// The rule files `prometheus.yml` names (`rule_files`), as `(relative path, YAML)`
/// for the configuration directory of a test Prometheus: the same rules with only
/// their `for:` durations divided by [`FOR_DIVISOR`] (`2m` → `2s`, `10m` → `10s`),
/// so that an alert fires in seconds. Expressions, windows and labels are unchanged.
pub fn rule_files_for_test() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let root = crate::repo_root();
    let config: Yaml = serde_yaml_ng::from_str(&std::fs::read_to_string(root.join(CONFIG_FILE))?)?;
    let mut files = Vec::new();
    for path in config["rule_files"].as_sequence().into_iter().flatten() {
        let path = path.as_str().context("a rule file path")?;
        anyhow::ensure!(
            !path.contains('*') && !path.starts_with('/'),
            "rule_files entry {path:?}: the harness copies relative paths without globs"
        );
        let text = std::fs::read_to_string(root.join(path))
            .with_context(|| format!("reading rule file {path}"))?;
        files.push((path.to_owned(), shorten_for(&text)?.into_bytes()));
    }
    Ok(files)
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

/// Points every static target on [`CONFIGURED_METRICS_PORT`] at `target`, sets the
/// scrape/evaluation intervals (and any explicit scrape timeout) to one second, and
/// points the `alerting` section at `alertmanager` or removes it. Everything else is
/// kept as written.
fn rewrite_config(
    original: &str,
    target: &str,
    alertmanager: Option<&str>,
) -> anyhow::Result<(String, String)> {
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
    match alertmanager {
        None => {
            root.remove("alerting");
        }
        Some(address) => {
            let managers = root
                .get_mut("alerting")
                .and_then(|alerting| alerting.get_mut("alertmanagers"))
                .and_then(Yaml::as_sequence_mut)
                .context(
                    "an Alertmanager was given, but the config has no alerting.alertmanagers",
                )?;
            for manager in managers {
                for static_config in manager["static_configs"]
                    .as_sequence_mut()
                    .into_iter()
                    .flatten()
                {
                    static_config["targets"] = Yaml::Sequence(vec![address.into()]);
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

/// Every number of a query's `data` (vector, matrix or scalar), NaN left out.
#[must_use]
pub fn numbers(data: &Value) -> Vec<f64> {
    let number = |sample: &Value| {
        sample
            .get(1)
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| !v.is_nan())
    };
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| number(&s["value"]))
            .collect(),
        Some("matrix") => result
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|sample| number(&sample))
            .collect(),
        Some("scalar") => number(result).into_iter().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_repository_config_is_rewritten_only_where_it_must_be() {
        let original = std::fs::read_to_string(crate::repo_root().join(CONFIG_FILE)).unwrap();
        let (rewritten, job) =
            rewrite_config(&original, "host.docker.internal:41234", None).unwrap();
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
        let (rewritten, job) = rewrite_config(original, "127.0.0.1:5555", None).unwrap();
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

        assert!(rewrite_config("scrape_configs: []", "x:1", None).is_err());
    }

    #[test]
    fn alerts_go_to_the_given_alertmanager_or_nowhere() {
        let original = std::fs::read_to_string(crate::repo_root().join(CONFIG_FILE)).unwrap();
        let (without, _) = rewrite_config(&original, "127.0.0.1:1", None).unwrap();
        let without: Yaml = serde_yaml_ng::from_str(&without).unwrap();
        assert!(without.get("alerting").is_none(), "{without:?}");
        assert_eq!(without["rule_files"][0], "rules/recording.yml");

        let (with, _) = rewrite_config(&original, "127.0.0.1:1", Some("127.0.0.1:9999")).unwrap();
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
        assert_eq!(names, ["rules/recording.yml", "rules/alerts.yml"]);
        let original: Yaml = serde_yaml_ng::from_str(
            &std::fs::read_to_string(crate::repo_root().join("rules/alerts.yml")).unwrap(),
        )
        .unwrap();
        let shortened: Yaml = serde_yaml_ng::from_slice(&files[1].1).unwrap();
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
        for (mut before, after) in before.into_iter().zip(after) {
            if let Some(duration) = before.get("for").and_then(Yaml::as_str) {
                let seconds = parse_duration(duration).unwrap() / FOR_DIVISOR;
                assert_eq!(after["for"], format!("{seconds}s"), "{before:?}");
                before["for"] = after["for"].clone();
            }
            assert_eq!(before, after, "only `for` changes");
        }
    }

    #[test]
    fn numbers_are_read_from_every_result_type_without_nan() {
        let vector = |v: &str| json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, v]}]});
        assert_eq!(numbers(&vector("1")), [1.0]);
        assert_eq!(numbers(&vector("0")), [0.0]);
        assert!(numbers(&vector("NaN")).is_empty());
        assert!(numbers(&json!({"resultType": "vector", "result": []})).is_empty());
        assert_eq!(
            numbers(&json!({"resultType": "scalar", "result": [1.0, "2"]})),
            [2.0]
        );
        assert_eq!(
            numbers(
                &json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[1.0, "NaN"], [2.0, "3"]]}]})
            ),
            [3.0]
        );
    }
}
