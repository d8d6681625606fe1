//! A real VictoriaMetrics (single node) for end-to-end tests: the long-term store that
//! Prometheus remote-writes into and that answers PromQL like Prometheus does.
//!
//! [`VictoriaMetrics::start`] runs it where the [`engine`](super::engine) launcher
//! decides, once per test binary: in Docker (image `VICTORIA_METRICS_IMAGE`, default
//! [`DEFAULT_IMAGE`]) or as Debian's `victoria-metrics` binary (upstream calls it
//! `victoria-metrics-prod`), with:
//!
//! - `-dedup.minScrapeInterval` = the harness' scrape interval (1 s), so the two
//!   Prometheus of an HA pair leave one sample per interval;
//! - `-relabelConfig` = the repository's [`RELABEL_CONFIG`], which drops the `replica`
//!   external label so that both replicas write the *same* series (deduplication only
//!   merges samples of identical series);
//! - `-search.latencyOffset=1s` and `-search.disableCache`: by default VictoriaMetrics
//!   hides the newest 30 seconds from queries and caches range answers, which is right
//!   for dashboards and wrong for a test that compares answers seconds after writing.
//!
//! Prometheus reaches it at [`VictoriaMetrics::remote_write_url`]; the test queries it
//! through [`VictoriaMetrics::api`], the same client as Prometheus'.

use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

pub use super::engine::Backend;
use super::engine::{Engine, EngineSpec, Launch, Reach, Running};
use crate::promql::QueryApi;

/// The image used when `VICTORIA_METRICS_IMAGE` is not set: the official one, pinned (why this
/// tag: [the test kit's docs](crate#pinned-images)).
pub const DEFAULT_IMAGE: &str = "victoriametrics/victoria-metrics:v1.144.0";
/// Environment variable naming the VictoriaMetrics image (`name:tag`).
pub const IMAGE_ENV: &str = "VICTORIA_METRICS_IMAGE";
/// Environment variable choosing the backend: `container`, `native` or `auto`.
pub const BACKEND_ENV: &str = "LOGIN_METRICS_VICTORIA_METRICS";
/// The relabeling rules applied to everything written into VictoriaMetrics, relative
/// to the repository root: the file `docker-compose.yml` mounts.
pub const RELABEL_CONFIG: &str = "deploy/scale/victoria-metrics-relabel.yml";
/// The path Prometheus remote-writes to.
pub const WRITE_PATH: &str = "/api/v1/write";

/// VictoriaMetrics as the [`engine`](super::engine) launcher runs it.
pub static ENGINE: Engine = Engine::new(EngineSpec {
    name: "VictoriaMetrics",
    backend_env: BACKEND_ENV,
    image_env: IMAGE_ENV,
    default_image: DEFAULT_IMAGE,
    binaries: &["victoria-metrics", "victoria-metrics-prod"],
    container_port: 8428,
    ready_path: "/health",
    container_config_dir: "/etc/victoria-metrics",
    container_data_dir: "/victoria-metrics-data",
    install_hint: "install Docker with access to the image, or VictoriaMetrics itself \
        (`apt install victoria-metrics`, https://github.com/VictoriaMetrics/VictoriaMetrics/releases)",
    skip_allowed_in_ci: false,
});

/// How VictoriaMetrics is started; see [`VictoriaMetrics::start`].
#[derive(Debug, Clone)]
pub struct Options {
    /// `-dedup.minScrapeInterval`: the scrape interval of the Prometheus pair.
    pub dedup_interval: Duration,
    /// Whether a Prometheus container must reach it (a native VictoriaMetrics then
    /// listens on every interface rather than on loopback only).
    pub reachable_from_containers: bool,
    /// Join this Docker network as this container name (`(network, name)`), so that
    /// other containers (Prometheus, Grafana) reach it at
    /// [`network_url`](VictoriaMetrics::network_url). Needs the container backend.
    pub network: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dedup_interval: super::prometheus::TEST_INTERVAL,
            reachable_from_containers: false,
            network: None,
        }
    }
}

/// A running VictoriaMetrics. Dropping it stops it.
#[derive(Debug)]
pub struct VictoriaMetrics {
    engine: Running,
    api: QueryApi,
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics with `options` and the repository's relabeling rules.
    /// `Ok(None)` after one `skipped:` line when none can run here and `auto` mode
    /// allows it.
    pub async fn start(options: Options) -> anyhow::Result<Option<VictoriaMetrics>> {
        let relabel_path = crate::repo_root().join(RELABEL_CONFIG);
        let relabel = std::fs::read(&relabel_path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", relabel_path.display()))?;
        let reach = Reach {
            network: options.network.clone(),
            from_containers: options.reachable_from_containers,
        };
        let dedup = format!("{}ms", options.dedup_interval.as_millis());
        let engine = ENGINE
            .start(reach, |ctx| {
                Ok(Launch {
                    files: vec![("relabel.yml".to_owned(), relabel.clone())],
                    args: vec![
                        format!("-httpListenAddr={}", ctx.listen),
                        format!("-storageDataPath={}", ctx.data_dir),
                        format!("-dedup.minScrapeInterval={dedup}"),
                        format!("-relabelConfig={}/relabel.yml", ctx.config_dir),
                        "-search.latencyOffset=1s".to_owned(),
                        "-search.disableCache".to_owned(),
                        "-retentionPeriod=1d".to_owned(),
                    ],
                    ..Launch::default()
                })
            })
            .await?;
        let Some(engine) = engine else {
            return Ok(None);
        };
        let api = QueryApi::new("VictoriaMetrics", engine.base_url(), engine.http().clone());
        Ok(Some(VictoriaMetrics { engine, api }))
    }

    /// Where VictoriaMetrics runs in this test binary (decided by the first caller).
    pub async fn backend() -> anyhow::Result<Option<Backend>> {
        Ok(ENGINE.placement().await?.map(|p| p.backend()))
    }

    /// Where it runs.
    #[must_use]
    pub fn backend_of(&self) -> Backend {
        self.engine.backend()
    }

    /// `http://HOST:PORT/api/v1/write` as a Prometheus placed at `peer` reaches it.
    #[must_use]
    pub fn remote_write_url(&self, peer: Backend) -> String {
        format!("http://{}{WRITE_PATH}", self.engine.address_for(peer))
    }

    /// `http://NAME:8428` on the Docker network of [`Options::network`]; `None` otherwise.
    #[must_use]
    pub fn network_url(&self) -> Option<&str> {
        self.engine.network_url()
    }

    /// `http://127.0.0.1:PORT`: the HTTP API as the test sees it.
    #[must_use]
    pub fn base_url(&self) -> String {
        self.engine.base_url()
    }

    /// The query API, shared with Prometheus.
    #[must_use]
    pub fn api(&self) -> &QueryApi {
        &self.api
    }

    /// An instant query; the `data.result` array.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Value> {
        self.api.query(promql).await
    }

    /// Polls `promql` until it returns a number that is not NaN; on timeout the error
    /// has the last answer and the end of VictoriaMetrics' log.
    pub async fn wait_for_data(&self, promql: &str, timeout: Duration) -> anyhow::Result<Value> {
        match self.api.poll_for_data(promql, timeout).await {
            Ok(result) => Ok(result),
            Err(no_data) => bail!(
                "no data for `{promql}` within {timeout:?} from VictoriaMetrics ({}) at {}\n\
                 last answer: {}\nVictoriaMetrics log (end):\n{}",
                self.engine.backend(),
                self.base_url(),
                no_data.last,
                self.engine.log_tail().await
            ),
        }
    }

    /// VictoriaMetrics' own log.
    pub async fn logs(&self) -> String {
        self.engine.logs().await
    }

    /// The engine underneath.
    #[must_use]
    pub fn engine(&self) -> &Running {
        &self.engine
    }
}
