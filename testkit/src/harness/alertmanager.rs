//! A real Alertmanager for end-to-end tests, with the repository's `alertmanager.yml`.
//!
//! [`Alertmanager::start`] runs the repository's routing, grouping and inhibition as
//! written, with two changes a test needs: every receiver's webhook URL points at the
//! test's own receiver ([`Webhook`](crate::webhook::Webhook)), keeping its path
//! (`/page`, `/ticket`), and the grouping delays drop from `30s`/`5m` to one second,
//! so that a notification, and the one saying an alert resolved, arrive within
//! seconds. It runs where the [`engine`](super::engine) launcher decides: the image
//! `ALERTMANAGER_IMAGE` (default [`DEFAULT_IMAGE`]) in Docker, or the `alertmanager`
//! binary (Debian names it `prometheus-alertmanager`), with clustering turned off.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use super::engine::{Engine, EngineSpec, Launch, Placement, Reach, Running};
use super::prometheus;
use crate::promql::POLL_EVERY;
use crate::wait::{Check, poll};

/// The image used when `ALERTMANAGER_IMAGE` is not set: the official one, pinned (why this
/// tag: [the test kit's docs](crate#pinned-images)).
pub const DEFAULT_IMAGE: &str = "prom/alertmanager:v0.34.0";
/// Environment variable naming the Alertmanager image (`name:tag`).
pub const IMAGE_ENV: &str = "ALERTMANAGER_IMAGE";
/// Environment variable choosing the backend: `container`, `native` or `auto`.
pub const BACKEND_ENV: &str = "LOGIN_METRICS_ALERTMANAGER";
/// The configuration users run, which the harness runs too.
pub const CONFIG_FILE: &str = "alertmanager.yml";
/// `group_wait` and `group_interval` in tests.
pub const TEST_GROUP_DELAY: &str = "1s";

/// Alertmanager as the [`engine`](super::engine) launcher runs it.
pub static ENGINE: Engine = Engine::new(EngineSpec {
    name: "Alertmanager",
    backend_env: BACKEND_ENV,
    image_env: IMAGE_ENV,
    default_image: DEFAULT_IMAGE,
    binaries: &["alertmanager", "prometheus-alertmanager"],
    container_port: 9093,
    ready_path: "/-/ready",
    container_config_dir: "/etc/alertmanager",
    container_data_dir: "/alertmanager",
    install_hint: "install Docker with access to the image, or Alertmanager itself \
        (`apt install prometheus-alertmanager`, https://prometheus.io/download/)",
    skip_allowed_in_ci: false,
});

/// A running Alertmanager. Dropping it stops Alertmanager.
#[derive(Debug)]
pub struct Alertmanager {
    engine: Running,
}

impl Alertmanager {
    /// Starts Alertmanager with the repository's configuration, its receivers posting
    /// to the webhook listening on `webhook_port` of this machine (on all interfaces,
    /// so that a container reaches it too). `Ok(None)`: skipped, and said so.
    pub async fn start(webhook_port: u16) -> anyhow::Result<Option<Alertmanager>> {
        // A Prometheus in a container reaches a native Alertmanager through the host
        // gateway, so it must listen beyond loopback in that one case.
        let prometheus_in_container = matches!(
            prometheus::ENGINE.placement().await?,
            Some(Placement::Container { .. })
        );
        let reach = Reach {
            network: None,
            from_containers: prometheus_in_container,
        };
        let engine = ENGINE
            .start(reach, |ctx| {
                let config = config_for(&format!("{}:{webhook_port}", ctx.host))?;
                Ok(Launch {
                    files: vec![(CONFIG_FILE.to_owned(), config.into_bytes())],
                    args: vec![
                        format!("--config.file={}/{CONFIG_FILE}", ctx.config_dir),
                        format!("--storage.path={}", ctx.data_dir),
                        format!("--web.listen-address={}", ctx.listen),
                        // No gossip port: tests run side by side, each on its own.
                        "--cluster.listen-address=".to_owned(),
                        // Each run of the notification pipeline is logged at debug:
                        // what proves that an alert held back was considered.
                        "--log.level=debug".to_owned(),
                    ],
                    ..Launch::default()
                })
            })
            .await?;
        Ok(engine.map(|engine| Alertmanager { engine }))
    }

    /// The engine underneath: addresses, logs.
    #[must_use]
    pub fn engine(&self) -> &Running {
        &self.engine
    }

    /// How many times Alertmanager has run its notification pipeline over a group
    /// holding an alert named `alertname`: the `flushing` lines of its debug log,
    /// one per group interval. Each run sends, or holds back (inhibited, silenced),
    /// what the group holds; runs of one group follow each other, so once a run has
    /// started, the one before it has finished.
    pub async fn flushes_of(&self, alertname: &str) -> usize {
        let alert = format!("{alertname}[");
        self.engine
            .logs()
            .await
            .lines()
            .filter(|line| line.contains("msg=flushing") && line.contains(&alert))
            .count()
    }

    /// Waits until [`flushes_of`](Self::flushes_of) `alertname` reaches `count`.
    pub async fn wait_for_flushes(
        &self,
        alertname: &str,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("{count} runs of the notification pipeline over {alertname}");
        poll(&what, timeout, POLL_EVERY, || async {
            let flushes = self.flushes_of(alertname).await;
            if flushes >= count {
                Check::Met(())
            } else {
                Check::NotYet(format!("{flushes} runs"))
            }
        })
        .await?;
        Ok(())
    }

    /// `GET /api/v2/alerts`: every alert Alertmanager holds, with `status.state`
    /// (`active`, `suppressed`) and `status.inhibitedBy`.
    pub async fn alerts(&self) -> anyhow::Result<Vec<Value>> {
        let answer = self.engine.get_json("/api/v2/alerts").await?;
        match answer {
            Value::Array(alerts) => Ok(alerts),
            other => bail!("/api/v2/alerts answered {other}"),
        }
    }
}

/// The repository's `alertmanager.yml` for a test: every webhook URL's host and port
/// replaced by `webhook` (`HOST:PORT`), its path kept, and the grouping delays set to
/// [`TEST_GROUP_DELAY`]. Routes, matchers, inhibitions and receivers are unchanged.
pub fn config_for(webhook: &str) -> anyhow::Result<String> {
    let path = crate::repo_root().join(CONFIG_FILE);
    let original =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    rewrite_config(&original, webhook).with_context(|| format!("rewriting {}", path.display()))
}

fn rewrite_config(original: &str, webhook: &str) -> anyhow::Result<String> {
    let mut doc: Yaml = serde_yaml_ng::from_str(original).context("not valid YAML")?;
    shorten_grouping(&mut doc["route"], true);
    let mut urls = 0;
    for receiver in doc["receivers"].as_sequence_mut().into_iter().flatten() {
        for config in receiver["webhook_configs"]
            .as_sequence_mut()
            .into_iter()
            .flatten()
        {
            let url = config["url"].as_str().context("a webhook url")?;
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            let path = rest.find('/').map_or("/", |slash| &rest[slash..]);
            config["url"] = format!("http://{webhook}{path}").into();
            urls += 1;
        }
    }
    anyhow::ensure!(urls > 0, "no webhook receiver to point at the test");
    Ok(serde_yaml_ng::to_string(&doc)?)
}

/// Sets `group_wait` and `group_interval` on the top route, and on every route below
/// it that sets them itself (the others inherit them).
fn shorten_grouping(route: &mut Yaml, top: bool) {
    let Some(mapping) = route.as_mapping_mut() else {
        return;
    };
    for key in ["group_wait", "group_interval"] {
        if top || mapping.contains_key(key) {
            mapping.insert(key.into(), TEST_GROUP_DELAY.into());
        }
    }
    if let Some(routes) = mapping.get_mut("routes").and_then(Yaml::as_sequence_mut) {
        for child in routes {
            shorten_grouping(child, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_post_to_the_test_and_everything_else_is_kept() {
        let original = std::fs::read_to_string(crate::repo_root().join(CONFIG_FILE)).unwrap();
        let rewritten = rewrite_config(&original, "host.docker.internal:4321").unwrap();
        let before: Yaml = serde_yaml_ng::from_str(&original).unwrap();
        let after: Yaml = serde_yaml_ng::from_str(&rewritten).unwrap();
        let urls: Vec<&str> = after["receivers"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|r| r["webhook_configs"].as_sequence().unwrap())
            .map(|c| c["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            urls,
            [
                "http://host.docker.internal:4321/page",
                "http://host.docker.internal:4321/ticket"
            ]
        );
        assert_eq!(after["route"]["group_wait"], "1s");
        assert_eq!(after["route"]["group_interval"], "1s");
        assert_eq!(
            after["route"]["repeat_interval"],
            before["route"]["repeat_interval"]
        );
        assert_eq!(after["route"]["group_by"], before["route"]["group_by"]);
        assert_eq!(after["inhibit_rules"], before["inhibit_rules"]);
        for (old, new) in before["route"]["routes"]
            .as_sequence()
            .unwrap()
            .iter()
            .zip(after["route"]["routes"].as_sequence().unwrap())
        {
            assert_eq!(old["matchers"], new["matchers"]);
            assert_eq!(old["receiver"], new["receiver"]);
        }
    }
}
