//! Every shape of a test Prometheus (another configuration file, `file_sd`
//! targets, external labels, remote write, an Alertmanager, a Docker network,
//! feature flags), built from a configuration file of the repository.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use anyhow::Context;
use serde_yaml_ng::Mapping;

use super::config::{
    Changes, point_alerting_at, point_probes_at, rewrite_config, rule_files_shortened,
};
use super::targets::TargetsDir;
use super::{CONFIG_FILE, CONTAINER_TARGETS_DIR, ENGINE, Prometheus};
use crate::harness::blackbox::BlackboxExporter;
use crate::harness::docker;
use crate::harness::engine::{
    Backend, BindMount, Launch, LaunchContext, Placement, Reach, Running,
};
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
    features: Vec<String>,
    rule_files: Vec<String>,
}

/// The feature flag that makes Prometheus 2.x (and 3.x before 3.9) ask for protobuf
/// first and ingest native histograms.
pub const NATIVE_HISTOGRAMS: &str = "native-histograms";
/// The feature flag that makes Prometheus keep the exemplars it scrapes.
pub const EXEMPLAR_STORAGE: &str = "exemplar-storage";
/// From this version on, native histograms are a scrape option,
/// `scrape_native_histograms`, which 2.x rejects as an unknown field; from 3.9 the
/// flag does nothing.
const SCRAPE_OPTION_SINCE: (u32, u32) = (3, 8);

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
            .field("features", &self.features)
            .field("rule_files", &self.rule_files)
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
            features: Vec::new(),
            rule_files: Vec::new(),
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

    /// Load the repository's rule file `path` (relative to the repository root) as
    /// well as those the configuration names: a rule file a reader adds for one
    /// setup, such as `rules/native-histograms.yml`.
    #[must_use]
    pub fn rule_file(mut self, path: &str) -> Self {
        self.rule_files.push(path.to_owned());
        self
    }

    /// Start Prometheus with the feature flag `name` (`--enable-feature=NAME`), in a
    /// container as natively: [`NATIVE_HISTOGRAMS`] and [`EXEMPLAR_STORAGE`] for a
    /// server that serves native histograms and exemplars. Where the engine's version
    /// makes native histograms a scrape option instead (3.8 and later, read from the
    /// binary's `--version` or the image's tag), the configuration also gets
    /// `scrape_native_histograms: true`.
    #[must_use]
    pub fn enable_feature(mut self, name: &str) -> Self {
        self.features.push(name.to_owned());
        self
    }

    /// Starts Prometheus. `Ok(None)` after one `skipped:` line when no Prometheus can
    /// run here and `auto` mode allows it; an explicit backend that cannot be met is an
    /// error.
    // One rewrite closure, shared by the launch and the job's name, holds every
    // change in the order Prometheus sees them: split, it would be two to keep alike.
    #[allow(clippy::too_many_lines)]
    pub async fn start(self) -> anyhow::Result<Option<Prometheus>> {
        let path = crate::repo_root().join(&self.config);
        let original = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut rule_files = rule_files_shortened(&path, &original)?;
        for extra in &self.rule_files {
            let bytes = std::fs::read(crate::repo_root().join(extra))
                .with_context(|| format!("reading {extra}"))?;
            rule_files.push((extra.clone(), bytes));
        }
        let mut scrape_option = false;
        if self.features.iter().any(|f| f == NATIVE_HISTOGRAMS) {
            let Some(placement) = super::Prometheus::placement().await? else {
                return Ok(None); // skipped, and said so
            };
            scrape_option = version_of(&placement).is_some_and(|v| v >= SCRAPE_OPTION_SINCE);
        }
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
            add_rule_files_and_scrape_option(root, &self.rule_files, scrape_option)?;
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
                let mut args = vec![
                    format!("--config.file={}/prometheus.yml", ctx.config_dir),
                    format!("--storage.tsdb.path={}", ctx.data_dir),
                    format!("--web.listen-address={}", ctx.listen),
                ];
                if !self.features.is_empty() {
                    args.push(format!("--enable-feature={}", self.features.join(",")));
                }
                Ok(Launch {
                    files,
                    args,
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

/// Lists `rule_files` after the configuration's own, and sets
/// `global.scrape_native_histograms: true` when `scrape_option` says so.
fn add_rule_files_and_scrape_option(
    root: &mut Mapping,
    rule_files: &[String],
    scrape_option: bool,
) -> anyhow::Result<()> {
    if !rule_files.is_empty() {
        root.entry("rule_files".into())
            .or_insert_with(|| serde_yaml_ng::Sequence::new().into())
            .as_sequence_mut()
            .context("`rule_files` is not a list")?
            .extend(rule_files.iter().map(|f| f.as_str().into()));
    }
    if scrape_option {
        root.entry("global".into())
            .or_insert_with(|| Mapping::new().into())
            .as_mapping_mut()
            .context("`global` is not a mapping")?
            .insert("scrape_native_histograms".into(), true.into());
    }
    Ok(())
}

/// The major and minor version of the Prometheus a placement runs: from the binary's
/// `--version`, or from the image's tag (`v3.13.4`, `2.42-debian-local`); `None`
/// when neither says (a tag such as `latest`).
fn version_of(placement: &Placement) -> Option<(u32, u32)> {
    match placement {
        Placement::Native { binary } => {
            let output = Command::new(binary).arg("--version").output().ok()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            first_version(text.split("version").nth(1)?)
        }
        Placement::Container { image } => first_version(&docker::split_image_reference(image).1),
    }
}

/// The first `MAJOR.MINOR` in `text`.
fn first_version(text: &str) -> Option<(u32, u32)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let mut parts = text[start..].split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_a_version_line_or_an_image_tag() {
        assert_eq!(
            first_version(" 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5)"),
            Some((2, 42))
        );
        assert_eq!(first_version("v3.13.4"), Some((3, 13)));
        assert_eq!(first_version("2.42-debian-local"), Some((2, 42)));
        assert_eq!(first_version("latest"), None);
        let image = |image: &str| Placement::Container {
            image: image.to_owned(),
        };
        assert_eq!(version_of(&image("prom/prometheus:v3.13.4")), Some((3, 13)));
        assert_eq!(version_of(&image("prom/prometheus")), None);
        assert!(version_of(&image("prom/prometheus:v3.8.0")).unwrap() >= SCRAPE_OPTION_SINCE);
        assert!(version_of(&image("prom/prometheus:v3.7.2")).unwrap() < SCRAPE_OPTION_SINCE);
    }
}
