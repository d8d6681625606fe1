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
//! and `PROMETHEUS_URL` / `LONG_TERM_STORE_URL` / `PROMETHEUS_SCRAPE_INTERVAL` set for
//! the data source files, exactly like `docker-compose.yml` does. The admin password is
//! random per start.
//!
//! Grafana has no native build here, so it needs Docker and an image. Where the
//! default image is neither present nor pullable the test skips with one line, the
//! only skip CI accepts (no registry reaches a Grafana image on the project's CI
//! machine); an image named in `GRAFANA_IMAGE` that cannot be had is a failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::docker;
use super::engine::{Engine, EngineSpec, Launch, Reach, Running};
use crate::wait::{Check, poll};

/// The image used when `GRAFANA_IMAGE` is not set: the official one, pinned (why this
/// tag: [the test kit's docs](crate#pinned-images)).
pub const DEFAULT_IMAGE: &str = "grafana/grafana:12.4.11";
/// Environment variable naming the Grafana image (`name:tag`).
pub const IMAGE_ENV: &str = "GRAFANA_IMAGE";
/// The admin user the harness logs in as.
pub const ADMIN_USER: &str = "admin";
/// Where the dashboard provider (`grafana/provisioning/dashboards/*.yml`) looks.
pub const CONTAINER_DASHBOARDS_DIR: &str = "/etc/grafana/dashboards/login-metrics";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Grafana as the [`engine`](super::engine) launcher runs it: in Docker only.
pub static ENGINE: Engine = Engine::new(EngineSpec {
    name: "Grafana",
    backend_env: "LOGIN_METRICS_GRAFANA",
    image_env: IMAGE_ENV,
    default_image: DEFAULT_IMAGE,
    binaries: &[],
    container_port: 3000,
    ready_path: "/api/health",
    container_config_dir: "/etc/grafana",
    container_data_dir: "/var/lib/grafana",
    install_hint: "set GRAFANA_IMAGE to a Grafana image present locally, or give Docker \
        access to a registry",
    skip_allowed_in_ci: true,
});

/// A running, provisioned Grafana. Dropping it removes the container.
pub struct Grafana {
    engine: Running,
    password: String,
}

impl Grafana {
    /// Whether Grafana can run here, decided once per test binary. `Ok(false)` after
    /// one `skipped:` line; `Err` when `GRAFANA_IMAGE` names an image that cannot be had.
    pub async fn available() -> anyhow::Result<bool> {
        Ok(ENGINE.placement().await?.is_some())
    }

    /// Starts Grafana on Docker network `network`, provisioned with the repository's
    /// files, its data source pointing at `prometheus_url` (as seen from that network)
    /// with `scrape_interval` as `timeInterval`. Returns once `/api/health` reports the
    /// database ok and the provisioned data source exists; `Ok(None)` when skipped.
    pub async fn start(
        network: &str,
        prometheus_url: &str,
        scrape_interval: &str,
    ) -> anyhow::Result<Option<Grafana>> {
        Self::start_with_long_term_store(network, prometheus_url, "", scrape_interval).await
    }

    /// [`start`](Self::start), with the second data source (the long-term store)
    /// pointing at `long_term_store_url` as seen from the network; `""` leaves it
    /// without a URL (provisioned, but unusable).
    pub async fn start_with_long_term_store(
        network: &str,
        prometheus_url: &str,
        long_term_store_url: &str,
        scrape_interval: &str,
    ) -> anyhow::Result<Option<Grafana>> {
        let password = random_password();
        let reach = Reach {
            network: Some((
                network.to_owned(),
                docker::unique_name("login-metrics-grafana"),
            )),
            from_containers: false,
        };
        let engine = ENGINE
            .start(reach, |_| {
                let mut files = Vec::new();
                for (source, target) in provisioning_files()? {
                    let bytes = std::fs::read(&source)
                        .with_context(|| format!("reading {}", source.display()))?;
                    files.push((target, bytes));
                }
                let env = [
                    ("GF_SECURITY_ADMIN_USER", ADMIN_USER),
                    ("GF_SECURITY_ADMIN_PASSWORD", password.as_str()),
                    ("GF_USERS_ALLOW_SIGN_UP", "false"),
                    ("GF_ANALYTICS_REPORTING_ENABLED", "false"),
                    ("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"),
                    ("GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "false"),
                    ("GF_PLUGINS_PREINSTALL_DISABLED", "true"),
                    ("PROMETHEUS_URL", prometheus_url),
                    ("LONG_TERM_STORE_URL", long_term_store_url),
                    ("PROMETHEUS_SCRAPE_INTERVAL", scrape_interval),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
                // The image's own entrypoint and command start the server.
                Ok(Launch {
                    files,
                    env,
                    ..Launch::default()
                })
            })
            .await?;
        let Some(engine) = engine else {
            return Ok(None);
        };
        let grafana = Grafana { engine, password };
        grafana.wait_until_provisioned().await?;
        Ok(Some(grafana))
    }

    /// `http://HOST:PORT` of Grafana as seen from the test.
    #[must_use]
    pub fn base_url(&self) -> String {
        self.engine.base_url()
    }

    /// `GET path` as the admin user; the JSON body of a 2xx answer.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base_url());
        let response = self
            .engine
            .http()
            .get(&url)
            .basic_auth(ADMIN_USER, Some(&self.password))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        json_body("GET", &url, response).await
    }

    /// `POST path` with a JSON body as the admin user; the JSON body of a 2xx answer.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base_url());
        let response = self
            .engine
            .http()
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
        self.engine.logs().await
    }

    /// The last lines of Grafana's log, for failure messages.
    pub async fn log_tail(&self) -> String {
        self.engine.log_tail().await
    }

    async fn wait_until_provisioned(&self) -> anyhow::Result<()> {
        let datasource = format!("/api/datasources/uid/{}", crate::dashboard::DATASOURCE_UID);
        let ready = poll(
            "Grafana ready with its data source",
            STARTUP_TIMEOUT,
            POLL_EVERY,
            || async {
                let last = match self.health().await {
                    Ok(health) if health["database"] == "ok" => match self.get(&datasource).await {
                        Ok(_) => return Check::Met(Ok(())),
                        Err(e) => {
                            format!("healthy, but the data source is not provisioned: {e:#}")
                        }
                    },
                    Ok(health) => format!("health: {health}"),
                    Err(e) => format!("{e:#}"),
                };
                match self.engine.exited().await {
                    Some(exit) => Check::Met(Err(format!("{exit}; {last}"))),
                    None => Check::NotYet(last),
                }
            },
        )
        .await;
        match ready {
            Ok(Ok(())) => Ok(()),
            Ok(Err(exit)) => bail!(
                "Grafana exited before it was ready ({exit}); log:\n{}",
                self.log_tail().await
            ),
            Err(timed_out) => bail!(
                "Grafana not ready within {STARTUP_TIMEOUT:?} (last: {}); log:\n{}",
                timed_out.last,
                self.log_tail().await
            ),
        }
    }
}

/// `(file in the repository, path in the container relative to `/etc/grafana`)` for
/// every provisioning file.
pub fn provisioning_files() -> anyhow::Result<Vec<(PathBuf, String)>> {
    let grafana = crate::dashboard::grafana_dir();
    let mut files = Vec::new();
    for (dir, extension, target) in [
        (
            "provisioning/datasources",
            "yml",
            "provisioning/datasources",
        ),
        ("provisioning/dashboards", "yml", "provisioning/dashboards"),
        (
            "dashboards",
            "json",
            CONTAINER_DASHBOARDS_DIR
                .strip_prefix("/etc/grafana/")
                .expect("under /etc/grafana"),
        ),
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
        assert!(targets.contains(&"provisioning/datasources/prometheus.yml"));
        assert!(targets.contains(&"provisioning/datasources/long-term-store.yml"));
        assert!(targets.contains(&"provisioning/dashboards/login-metrics.yml"));
        assert!(targets.contains(&"dashboards/login-metrics/login.json"));
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
}
