//! The repository's configuration files as a test runs them: addresses and
//! intervals rewritten, everything else as a reader deploys it.
//!
//! A test must run what the reader runs, so nothing here writes a configuration
//! of its own: it reads `prometheus.yml` (or another file of the repository) and
//! its rule files, and changes only what cannot be the same on a test machine,
//! the targets, the intervals, the `for:` durations and where alerts and samples go.

use std::path::Path;

use anyhow::{Context, bail};
use serde_yaml_ng::{Mapping, Value as Yaml};

use super::{CONFIG_FILE, CONFIGURED_METRICS_PORT, TEST_INTERVAL_TEXT};

/// What the harness changes in a configuration file.
#[derive(Debug, Default)]
pub(super) struct Changes<'a> {
    /// Every static target on port 8000 becomes this.
    pub static_target: Option<String>,
    /// Where `file_sd` files are, as Prometheus sees it.
    pub targets_dir: Option<String>,
    /// `global.external_labels` to add or replace.
    pub external_labels: &'a [(String, String)],
    /// Where every `remote_write` entry sends.
    pub remote_write: Option<&'a str>,
}

/// The repository's `prometheus.yml` rewritten for a test: returns the YAML and the
/// job name whose target now points at `target`. Its `alerting` section is removed
/// (see [`PrometheusBuilder::alertmanager`](super::PrometheusBuilder::alertmanager)).
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
pub(super) fn point_alerting_at(root: &mut Mapping, address: Option<&str>) -> anyhow::Result<()> {
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

/// The path a probe job scrapes on the blackbox exporter: what marks a job as one.
const PROBE_PATH: &str = "/probe";

/// Points every probe job (`metrics_path: /probe`) at a blackbox exporter: its static
/// targets become `target` (`http://HOST:PORT/login`, as the exporter reaches it), and
/// the relabelling rule that sets `__address__` puts `exporter` (`HOST:PORT`, as
/// Prometheus reaches it) there. Without an exporter the probe jobs are removed: a
/// test must never probe through an exporter that happens to run on the machine.
pub(super) fn point_probes_at(
    root: &mut Mapping,
    probe: Option<(&str, &str)>,
) -> anyhow::Result<()> {
    let is_probe = |job: &Yaml| job.get("metrics_path").and_then(Yaml::as_str) == Some(PROBE_PATH);
    let jobs = root
        .get_mut("scrape_configs")
        .and_then(Yaml::as_sequence_mut)
        .context("no `scrape_configs` list")?;
    let Some((exporter, target)) = probe else {
        jobs.retain(|job| !is_probe(job));
        return Ok(());
    };
    let mut found = false;
    for job in jobs.iter_mut().filter(|job| is_probe(job)) {
        found = true;
        for static_config in job["static_configs"]
            .as_sequence_mut()
            .into_iter()
            .flatten()
        {
            static_config["targets"] = Yaml::Sequence(vec![target.into()]);
        }
        let mut address_rules = 0;
        for rule in job["relabel_configs"]
            .as_sequence_mut()
            .into_iter()
            .flatten()
        {
            if rule.get("target_label").and_then(Yaml::as_str) == Some("__address__") {
                rule["replacement"] = exporter.into();
                address_rules += 1;
            }
        }
        anyhow::ensure!(
            address_rules == 1,
            "a probe job must set __address__ to the exporter once, not {address_rules} times"
        );
    }
    anyhow::ensure!(
        found,
        "an exporter was given, but the config has no probe job (metrics_path: {PROBE_PATH})"
    );
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
    rule_files_shortened(&path, &original)
}

/// The rule files the configuration at `config_path` (text `yaml`) names, at the
/// same relative paths, so that a configuration with `rule_files:` runs as it is:
/// their `for:` durations divided by [`FOR_DIVISOR`], like the intervals.
pub(super) fn rule_files_shortened(
    config_path: &Path,
    yaml: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    rule_files_of(config_path, yaml)?
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
pub(super) fn rewrite_config(
    original: &str,
    changes: &Changes,
) -> anyhow::Result<(Yaml, Option<String>)> {
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
    fn probe_jobs_point_at_the_test_exporter_or_go() {
        let original =
            std::fs::read_to_string(crate::repo_root().join("deploy/probe/prometheus.yml"))
                .unwrap();
        let job = |doc: &Yaml, name: &str| {
            doc["scrape_configs"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|j| j["job_name"] == name)
                .cloned()
        };
        let mut doc: Yaml = serde_yaml_ng::from_str(&original).unwrap();
        let before = job(&doc, "login_probe").expect("a login_probe job");
        point_probes_at(
            doc.as_mapping_mut().unwrap(),
            Some(("127.0.0.1:9999", "http://127.0.0.1:5555/login")),
        )
        .unwrap();
        let after = job(&doc, "login_probe").unwrap();
        assert_eq!(
            after["static_configs"][0]["targets"],
            Yaml::Sequence(vec!["http://127.0.0.1:5555/login".into()])
        );
        let rules = after["relabel_configs"].as_sequence().unwrap();
        assert_eq!(
            rules.len(),
            before["relabel_configs"].as_sequence().unwrap().len()
        );
        assert_eq!(rules[2]["target_label"], "__address__");
        assert_eq!(rules[2]["replacement"], "127.0.0.1:9999");
        assert_eq!(
            rules[..2],
            before["relabel_configs"].as_sequence().unwrap()[..2]
        );
        assert_eq!(after["params"], before["params"]);
        assert!(job(&doc, "login_server").is_some());

        let mut doc: Yaml = serde_yaml_ng::from_str(&original).unwrap();
        point_probes_at(doc.as_mapping_mut().unwrap(), None).unwrap();
        assert!(
            job(&doc, "login_probe").is_none(),
            "no exporter, no probe job"
        );
        assert!(job(&doc, "login_server").is_some());

        let mut plain: Yaml = serde_yaml_ng::from_str("scrape_configs: []").unwrap();
        assert!(
            point_probes_at(plain.as_mapping_mut().unwrap(), Some(("a:1", "http://b/"))).is_err()
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
