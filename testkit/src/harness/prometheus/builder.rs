//! Every shape of a test Prometheus (another configuration file, `file_sd`
//! targets, external labels, remote write, an Alertmanager, a Docker network),
//! built from a configuration file of the repository.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde_yaml_ng::Mapping;

use super::config::{
    Changes, point_alerting_at, point_probes_at, rewrite_config, rule_files_shortened,
};
use super::targets::TargetsDir;
use super::{CONFIG_FILE, CONTAINER_TARGETS_DIR, ENGINE, Prometheus};
use crate::harness::blackbox::BlackboxExporter;
use crate::harness::engine::{Backend, BindMount, Launch, LaunchContext, Reach, Running};
use crate::promql::QueryApi;

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
    probe: Option<ProbeAddress>,
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

/// How a Prometheus reaches a blackbox exporter, and what the exporter probes.
#[derive(Debug, Clone)]
struct ProbeAddress {
    exporter_from_container: String,
    exporter_from_native: String,
    target: String,
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
            .field("probe", &self.probe)
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
    /// The repository's `prometheus.yml`, unchanged but for the intervals.
    pub(super) fn new() -> Self {
        Self {
            config: PathBuf::from(CONFIG_FILE),
            server_port: None,
            targets: None,
            external_labels: Vec::new(),
            remote_write: None,
            alertmanager: None,
            probe: None,
            reach: Reach::default(),
            files: Vec::new(),
            edits: Vec::new(),
        }
    }

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

    /// Probe the login listener on `login_port` of this machine through `exporter`:
    /// the configuration's probe jobs (`metrics_path: /probe`, such as `login_probe`
    /// in `deploy/probe/prometheus.yml`) scrape the exporter, which probes the login
    /// URL as it reaches it. Without it those jobs are removed: a test must never
    /// probe through an exporter that happens to run on the machine.
    #[must_use]
    pub fn probe(mut self, exporter: &BlackboxExporter, login_port: u16) -> Self {
        self.probe = Some(ProbeAddress {
            exporter_from_container: exporter.engine().address_for(Backend::Container),
            exporter_from_native: exporter.engine().address_for(Backend::Native),
            target: exporter.login_url(login_port),
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
        let rule_files = rule_files_shortened(&path, &original)?;
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
            let probe = self.probe.as_ref().map(|probe| {
                let exporter = match ctx.backend {
                    Backend::Container => probe.exporter_from_container.as_str(),
                    Backend::Native => probe.exporter_from_native.as_str(),
                };
                (exporter, probe.target.as_str())
            });
            point_probes_at(root, probe)?;
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
