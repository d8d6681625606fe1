//! The Prometheus configurations the guide ships pass `promtool check config`,
//! rule files included, and so does the rewritten one the tests run.

use login_metrics_testkit::harness::prometheus::{
    config_for, rewrite_repository_config, rule_files_for_test,
};
use login_metrics_testkit::repo_root;
use login_metrics_testkit::testing::promtool;

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
