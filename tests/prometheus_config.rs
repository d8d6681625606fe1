//! The Prometheus configurations the guide ships pass `promtool check config`,
//! rule files included, and so does the rewritten one the tests run.

use login_metrics_testkit::harness::blackbox;
use login_metrics_testkit::harness::prometheus::{
    config_for, rewrite_repository_config, rule_files_for_test,
};
use login_metrics_testkit::repo_root;
use login_metrics_testkit::tools::promtool;

/// Checks `yaml` as `prometheus.yml` in a directory that also holds `files`, so that
/// its relative `rule_files` resolve the way they do next to the real file.
fn assert_valid_config(name: &str, yaml: &str, files: &[(String, Vec<u8>)]) {
    let dir = tempfile::tempdir().unwrap();
    for (path, bytes) in files {
        let target = dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, yaml).unwrap();
    let Some(output) = promtool(&["check", "config", path.to_str().unwrap()], b"") else {
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool check config {name} failed:\n{text}"
    );
    // promtool checks each rule file it names; a config without them would pass too.
    for (rule_file, _) in files {
        assert!(
            text.contains(rule_file.as_str()),
            "{name}: {rule_file} not checked:\n{text}"
        );
    }
}

/// The repository's rule files, unchanged.
fn repository_rules() -> Vec<(String, Vec<u8>)> {
    ["rules/recording.yml", "rules/alerts.yml"]
        .into_iter()
        .map(|path| {
            (
                path.to_owned(),
                std::fs::read(repo_root().join(path)).unwrap(),
            )
        })
        .collect()
}

fn repository_file(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

#[test]
fn prometheus_yml_passes_promtool_check_config() {
    assert_valid_config(
        "prometheus.yml",
        &repository_file("prometheus.yml"),
        &repository_rules(),
    );
}

#[test]
fn the_docker_variant_passes_promtool_check_config() {
    assert_valid_config(
        "deploy/prometheus.docker.yml",
        &repository_file("deploy/prometheus.docker.yml"),
        &repository_rules(),
    );
}

#[test]
fn the_config_the_tests_run_passes_promtool_check_config() {
    let (yaml, job) = config_for("host.docker.internal:41234").unwrap();
    assert_eq!(job, "login_server");
    assert!(yaml.contains("host.docker.internal:41234"), "{yaml}");
    assert_valid_config(
        "the rewritten prometheus.yml",
        &yaml,
        &rule_files_for_test().unwrap(),
    );
    let (yaml, _) = rewrite_repository_config("127.0.0.1:1", Some("127.0.0.1:9093")).unwrap();
    assert_valid_config(
        "the rewritten prometheus.yml with an Alertmanager",
        &yaml,
        &rule_files_for_test().unwrap(),
    );
}

/// Checks `path` (relative to the repository) where it is, so that relative
/// `file_sd` patterns resolve to the targets files shipped next to it, which
/// promtool then checks too.
fn assert_valid_file(path: &str) {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let Some(output) = promtool(&["check", "config", &full], b"") else {
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "promtool check config {path} failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_file_sd_config_and_its_targets_pass_promtool_check_config() {
    assert_valid_file("deploy/prometheus.file_sd.yml");
}

#[test]
fn both_prometheus_of_the_ha_pair_and_their_targets_pass_promtool_check_config() {
    assert_valid_file("deploy/scale/prometheus-a.yml");
    assert_valid_file("deploy/scale/prometheus-b.yml");
}

#[test]
fn the_two_replicas_differ_only_in_their_replica_label() {
    let yaml = |path: &str| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&repository_file(path)).unwrap()
    };
    let mut a = yaml("deploy/scale/prometheus-a.yml");
    let b = yaml("deploy/scale/prometheus-b.yml");
    assert_eq!(a["global"]["external_labels"]["replica"], "a");
    assert_eq!(b["global"]["external_labels"]["replica"], "b");
    a["global"]["external_labels"]["replica"] = "b".into();
    assert_eq!(a, b);
}

#[test]
fn every_remote_write_example_passes_promtool_check_config() {
    let text = repository_file("deploy/scale/remote-write-examples.yml");
    let documents: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(documents.len(), 3, "VictoriaMetrics, Mimir, Thanos");
    for (n, document) in documents.iter().enumerate() {
        // Each fragment becomes a whole configuration with one scrape job.
        let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(document).unwrap();
        assert!(config["remote_write"][0]["url"].is_string(), "{document}");
        config["scrape_configs"] = serde_yaml_ng::from_str(
            "[{job_name: login_server, static_configs: [{targets: ['localhost:8000']}]}]",
        )
        .unwrap();
        assert_valid_config(
            &format!("remote-write-examples.yml document {}", n + 1),
            &serde_yaml_ng::to_string(&config).unwrap(),
            &[],
        );
    }
}

#[test]
fn the_probe_configs_and_their_rules_pass_promtool_check_config() {
    assert_valid_file("deploy/probe/prometheus.yml");
    assert_valid_file("deploy/probe/prometheus.docker.yml");
}

fn yaml(path: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&repository_file(path)).unwrap()
}

/// The job `name` of a configuration, taken out of it.
fn take_job(config: &mut serde_yaml_ng::Value, name: &str) -> serde_yaml_ng::Value {
    let jobs = config["scrape_configs"].as_sequence_mut().unwrap();
    let at = jobs
        .iter()
        .position(|job| job["job_name"] == name)
        .unwrap_or_else(|| panic!("no job {name}"));
    jobs.remove(at)
}

#[test]
fn the_probe_config_is_prometheus_yml_and_the_login_probe_job() {
    let mut probe = yaml("deploy/probe/prometheus.yml");
    let job = take_job(&mut probe, "login_probe");
    assert_eq!(probe, yaml("prometheus.yml"), "nothing else differs");
    // It asks the exporter for blackbox.yml's login module, about the login URL.
    assert_eq!(job["metrics_path"], "/probe");
    assert_eq!(job["params"]["module"][0], blackbox::MODULE);
    let modules = yaml(blackbox::CONFIG_FILE);
    assert_eq!(modules["modules"][blackbox::MODULE]["prober"], "http");
    assert_eq!(
        job["static_configs"][0]["targets"][0],
        "http://localhost:5000/login"
    );
    // The usual relabelling: target → ?target= → instance, then the exporter.
    let rules = job["relabel_configs"].as_sequence().unwrap();
    let rule = |n: usize| {
        (
            rules[n]["source_labels"][0].as_str().unwrap_or_default(),
            rules[n]["target_label"].as_str().unwrap(),
            rules[n]["replacement"].as_str().unwrap_or_default(),
        )
    };
    assert_eq!(
        (0..rules.len()).map(rule).collect::<Vec<_>>(),
        [
            ("__address__", "__param_target", ""),
            ("__param_target", "instance", ""),
            ("", "__address__", "localhost:9115"),
        ]
    );
}

#[test]
fn the_docker_probe_config_is_the_docker_one_and_the_same_job_at_container_addresses() {
    let mut docker = yaml("deploy/probe/prometheus.docker.yml");
    let mut job = take_job(&mut docker, "login_probe");
    assert_eq!(docker, yaml("deploy/prometheus.docker.yml"));
    let target = &mut job["static_configs"][0]["targets"][0];
    assert_eq!(*target, "http://host.docker.internal:5000/login");
    *target = "http://localhost:5000/login".into();
    // The exporter is Compose's blackbox-exporter service (deploy/probe/compose.yml).
    let exporter = &mut job["relabel_configs"][2]["replacement"];
    assert_eq!(*exporter, "blackbox-exporter:9115");
    *exporter = "localhost:9115".into();
    let native = take_job(&mut yaml("deploy/probe/prometheus.yml"), "login_probe");
    assert_eq!(job, native);
}
