//! A real Grafana for end-to-end tests, provisioned from the repository's files.
//!
//! [`Grafana::start`] runs the `grafana/grafana` image (or `GRAFANA_IMAGE`) in Docker on
//! the network where a [`Prometheus`](super::prometheus::Prometheus) started with
//! `start_on_network` runs, with the repository's provisioning copied in:
//!
//! - `grafana/provisioning/datasources/*.yml` → `/etc/grafana/provisioning/datasources/`
//! - `grafana/provisioning/dashboards/*.yml` → `/etc/grafana/provisioning/dashboards/`
//! - `grafana/dashboards/*.json` → `/etc/grafana/dashboards/login-metrics/`
//!
//! and `PROMETHEUS_URL` / `PROMETHEUS_SCRAPE_INTERVAL` set for the data source file,
//! exactly like `docker-compose.yml` does. The admin password is random per start.
//!
//! No image can be pulled on a machine without registry access, so
//! [`Grafana::unavailable`] says why Grafana cannot run (no Docker, or the image is
//! neither present nor pullable) before a test spends time on anything else.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use testcontainers::core::IntoContainerPort;
use testcontainers::core::client::docker_client_instance;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, CopyTargetOptions, GenericImage, ImageExt};

use super::docker;

/// The image used when `GRAFANA_IMAGE` is not set: the official one, pinned.
pub const DEFAULT_IMAGE: &str = "grafana/grafana:12.4.3";
/// Environment variable naming the Grafana image (`name:tag`).
pub const IMAGE_ENV: &str = "GRAFANA_IMAGE";
/// The admin user the harness logs in as.
pub const ADMIN_USER: &str = "admin";
/// Where the dashboard provider (`grafana/provisioning/dashboards/*.yml`) looks.
pub const CONTAINER_DASHBOARDS_DIR: &str = "/etc/grafana/dashboards/login-metrics";

const CONTAINER_PORT: u16 = 3000;
const PROVISIONING_DIR: &str = "/etc/grafana/provisioning";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
const POLL_EVERY: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_LINES_IN_ERRORS: usize = 60;

/// A running, provisioned Grafana. Dropping it removes the container.
pub struct Grafana {
    container: ContainerAsync<GenericImage>,
    base_url: String,
    password: String,
    http: reqwest::Client,
}

/// The image reference `GRAFANA_IMAGE` selects, or [`DEFAULT_IMAGE`].
#[must_use]
pub fn image_reference() -> String {
    std::env::var(IMAGE_ENV)
        .ok()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_owned())
        .trim()
        .to_owned()
}

impl Grafana {
    /// `None` when Grafana can run here; otherwise one line saying why not, for a
    /// skip message: Docker does not answer, or the image is not present locally
    /// and pulling it failed.
    pub async fn unavailable() -> Option<String> {
        if let Err(reason) = docker::available().await {
            return Some(format!("Grafana needs Docker, but {reason}"));
        }
        let reference = image_reference();
        let client = match docker_client_instance().await {
            Ok(client) => client,
            Err(e) => return Some(format!("no Docker client: {e}")),
        };
        if client.inspect_image(&reference).await.is_ok() {
            return None;
        }
        let (name, tag) = docker::split_image_reference(&reference);
        let pull = tokio::time::timeout(PULL_TIMEOUT, GenericImage::new(name, tag).pull_image());
        match pull.await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(not_available(&reference, &one_line(&e.to_string()))),
            Err(_) => Some(not_available(
                &reference,
                &format!("pulling took longer than {PULL_TIMEOUT:?}"),
            )),
        }
    }

    /// Starts Grafana on Docker network `network`, provisioned with the repository's
    /// files, its data source pointing at `prometheus_url` (as seen from that network)
    /// with `scrape_interval` as `timeInterval`. Returns once `/api/health` reports the
    /// database ok and the provisioned data source exists.
    pub async fn start(
        network: &str,
        prometheus_url: &str,
        scrape_interval: &str,
    ) -> anyhow::Result<Grafana> {
        let reference = image_reference();
        let (name, tag) = docker::split_image_reference(&reference);
        let password = random_password();

        let mut request = GenericImage::new(name, tag)
            .with_exposed_port(CONTAINER_PORT.tcp())
            .with_network(network)
            .with_container_name(docker::unique_name("login-metrics-grafana"))
            .with_env_var("GF_SECURITY_ADMIN_USER", ADMIN_USER)
            .with_env_var("GF_SECURITY_ADMIN_PASSWORD", password.clone())
            .with_env_var("GF_USERS_ALLOW_SIGN_UP", "false")
            .with_env_var("GF_ANALYTICS_REPORTING_ENABLED", "false")
            .with_env_var("GF_ANALYTICS_CHECK_FOR_UPDATES", "false")
            .with_env_var("GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "false")
            .with_env_var("GF_PLUGINS_PREINSTALL_DISABLED", "true")
            .with_env_var("PROMETHEUS_URL", prometheus_url)
            .with_env_var("PROMETHEUS_SCRAPE_INTERVAL", scrape_interval)
            .with_startup_timeout(STARTUP_TIMEOUT);
        for (source, target) in provisioning_files()? {
            let bytes =
                std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
            // World-readable bytes: the image runs as user `grafana`, not root.
            request = request.with_copy_to(CopyTargetOptions::new(target).with_mode(0o644), bytes);
        }

        let container = request.start().await.with_context(|| {
            format!(
                "starting a Grafana container from {reference} via {} \
                 (set {IMAGE_ENV} to an image present locally)",
                docker::docker_host()
            )
        })?;
        let host = container.get_host().await?;
        let port = container.get_host_port_ipv4(CONTAINER_PORT.tcp()).await?;
        let grafana = Grafana {
            container,
            base_url: format!("http://{host}:{port}"),
            password,
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .no_proxy()
                .build()
                .context("building the HTTP client")?,
        };
        grafana.wait_until_ready().await?;
        Ok(grafana)
    }

    /// `http://HOST:PORT` of Grafana as seen from the test.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET path` as the admin user; the JSON body of a 2xx answer.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base_url);
        let response = self
            .http
            .get(&url)
            .basic_auth(ADMIN_USER, Some(&self.password))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        json_body("GET", &url, response).await
    }

    /// `POST path` with a JSON body as the admin user; the JSON body of a 2xx answer.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base_url);
        let response = self
            .http
            .post(&url)
            .basic_auth(ADMIN_USER, Some(&self.password))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        json_body("POST", &url, response).await
    }

    /// `GET /api/health`: `{"database": "ok", "version": ...}` once Grafana is up.
    pub async fn health(&self) -> anyhow::Result<Value> {
        self.get("/api/health").await
    }

    /// `GET /api/datasources/uid/<uid>/health`: Grafana asks the data source
    /// (Prometheus) whether it answers; `{"status": "OK", "message": ...}` when it does.
    pub async fn datasource_health(&self, uid: &str) -> anyhow::Result<Value> {
        self.get(&format!("/api/datasources/uid/{uid}/health"))
            .await
    }

    /// `GET /api/dashboards/uid/<uid>`: `{"dashboard": {...}, "meta": {...}}`.
    pub async fn dashboard(&self, uid: &str) -> anyhow::Result<Value> {
        self.get(&format!("/api/dashboards/uid/{uid}")).await
    }

    /// `POST /api/ds/query`: runs queries server-side, as a panel does; the answer has
    /// `results.<refId>.frames[].data.values`.
    pub async fn query(&self, request: &Value) -> anyhow::Result<Value> {
        self.post("/api/ds/query", request).await
    }

    /// Grafana's log (container stdout and stderr).
    pub async fn logs(&self) -> String {
        docker::container_logs(&self.container).await
    }

    /// The last lines of Grafana's log, for failure messages.
    pub async fn log_tail(&self) -> String {
        docker::tail(&self.logs().await, LOG_LINES_IN_ERRORS)
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let datasource = format!("/api/datasources/uid/{}", crate::dashboard::DATASOURCE_UID);
        loop {
            let last = match self.health().await {
                Ok(health) if health["database"] == "ok" => match self.get(&datasource).await {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("healthy, but the data source is not provisioned: {e:#}"),
                },
                Ok(health) => format!("health: {health}"),
                Err(e) => format!("{e:#}"),
            };
            if !self.container.is_running().await.unwrap_or(false) {
                bail!(
                    "Grafana exited before it was ready ({last}); log:\n{}",
                    self.log_tail().await
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "Grafana not ready within {STARTUP_TIMEOUT:?} (last: {last}); log:\n{}",
                    self.log_tail().await
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// `(file in the repository, path in the container)` for every provisioning file.
pub fn provisioning_files() -> anyhow::Result<Vec<(PathBuf, String)>> {
    let grafana = crate::dashboard::grafana_dir();
    let mut files = Vec::new();
    for (dir, extension, target) in [
        (
            "provisioning/datasources",
            "yml",
            format!("{PROVISIONING_DIR}/datasources"),
        ),
        (
            "provisioning/dashboards",
            "yml",
            format!("{PROVISIONING_DIR}/dashboards"),
        ),
        ("dashboards", "json", CONTAINER_DASHBOARDS_DIR.to_owned()),
    ] {
        for source in files_with_extension(&grafana.join(dir), extension)? {
            let file_name = source
                .file_name()
                .and_then(|n| n.to_str())
                .context("file name is not UTF-8")?
                .to_owned();
            files.push((source, format!("{target}/{file_name}")));
        }
    }
    Ok(files)
}

fn files_with_extension(dir: &Path, extension: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

async fn json_body(method: &str, url: &str, response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("{method} {url}: reading the body"))?;
    if !status.is_success() {
        bail!("{method} {url}: HTTP {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| {
        format!("{method} {url}: HTTP {status} with a body that is not JSON: {text}")
    })
}

fn not_available(reference: &str, why: &str) -> String {
    format!(
        "Grafana image {reference} is not available (not present locally, and pulling it \
         failed: {why}); run with {IMAGE_ENV}=<an image present locally> to test through Grafana"
    )
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A password nobody guesses, from the standard library's randomly seeded hasher.
fn random_password() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    let state = RandomState::new();
    format!(
        "{:016x}{:016x}",
        state.hash_one(std::process::id()),
        state.hash_one(Instant::now())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provisioning_file_goes_where_grafana_reads_it() {
        let files = provisioning_files().unwrap();
        let targets: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
        assert!(targets.contains(&"/etc/grafana/provisioning/datasources/prometheus.yml"));
        assert!(targets.contains(&"/etc/grafana/provisioning/dashboards/login-metrics.yml"));
        assert!(targets.contains(&"/etc/grafana/dashboards/login-metrics/login.json"));
    }

    #[test]
    fn the_dashboard_provider_reads_the_directory_the_harness_fills() {
        let provisioning: crate::dashboard::DashboardProvisioning =
            crate::dashboard::load_yaml(&crate::dashboard::dashboard_provider_file()).unwrap();
        assert!(
            provisioning
                .providers
                .iter()
                .any(|p| p.options.path == CONTAINER_DASHBOARDS_DIR)
        );
    }

    #[test]
    fn passwords_differ() {
        assert_ne!(random_password(), random_password());
        assert_eq!(random_password().len(), 32);
    }

    #[test]
    fn skip_message_is_one_line_and_says_what_to_do() {
        let message = not_available("grafana/grafana:1.2.3", "no such host");
        assert!(!message.contains('\n'));
        assert!(message.contains("grafana/grafana:1.2.3"));
        assert!(message.contains(IMAGE_ENV));
    }
}
