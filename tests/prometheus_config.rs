//! The Prometheus configurations the guide ships pass `promtool check config`,
//! and so does the rewritten one the tests run.

use login_metrics_testkit::harness::prometheus::config_for;
use login_metrics_testkit::testing::promtool;

fn assert_valid_config(name: &str, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, yaml).unwrap();
    let Some(output) = promtool(&["check", "config", path.to_str().unwrap()], b"") else {
        return;
    };
    assert!(
        output.status.success(),
        "promtool check config {name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn repository_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn prometheus_yml_passes_promtool_check_config() {
    assert_valid_config("prometheus.yml", &repository_file("prometheus.yml"));
}

#[test]
fn the_docker_variant_passes_promtool_check_config() {
    assert_valid_config(
        "deploy/prometheus.docker.yml",
        &repository_file("deploy/prometheus.docker.yml"),
    );
}

#[test]
fn the_config_the_tests_run_passes_promtool_check_config() {
    let (yaml, job) = config_for("host.docker.internal:41234").unwrap();
    assert_eq!(job, "login_server");
    assert!(yaml.contains("host.docker.internal:41234"), "{yaml}");
    assert_valid_config("the rewritten prometheus.yml", &yaml);
}
