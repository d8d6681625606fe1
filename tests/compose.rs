//! The Docker Compose stack a reader starts in Step 4 (and its `scale` profile of
//! Step 9), checked without starting it: `docker compose config` accepts the file,
//! the images are the pinned ones the tests run, Grafana needs an admin password,
//! and every container is wired to the others as the book says.

use login_metrics_testkit::compose::Stack;
use login_metrics_testkit::harness::{
    alertmanager, blackbox, grafana, prometheus, victoria_metrics,
};
use login_metrics_testkit::{repo_root, repository_yaml};
use serde_yaml_ng::Value as Yaml;

#[test]
fn the_docker_prometheus_config_is_the_repository_one_with_the_containers_as_targets() {
    let mut docker = repository_yaml("deploy/prometheus.docker.yml");
    let original = repository_yaml("prometheus.yml");
    let targets = &mut docker["scrape_configs"][0]["static_configs"][0]["targets"];
    assert_eq!(targets[0], "host.docker.internal:8000");
    targets[0] = "localhost:8000".into();
    // Compose's Alertmanager is the container named alertmanager.
    let alertmanager = &mut docker["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"];
    assert_eq!(alertmanager[0], "alertmanager:9093");
    alertmanager[0] = "localhost:9093".into();
    assert_eq!(docker, original);
}

#[test]
fn the_compose_stack_is_valid_and_needs_an_admin_password() {
    let Some(config) = Stack::new().password("test-password").merged() else {
        return;
    };
    let services = &config["services"];
    assert_eq!(services["prometheus"]["image"], prometheus::DEFAULT_IMAGE);
    assert_eq!(services["grafana"]["image"], grafana::DEFAULT_IMAGE);
    assert_eq!(
        services["alertmanager"]["image"],
        alertmanager::DEFAULT_IMAGE
    );
    let env = &services["grafana"]["environment"];
    assert_eq!(env["GF_SECURITY_ADMIN_PASSWORD"], "test-password");
    assert_eq!(
        env["GF_AUTH_ANONYMOUS_ENABLED"], "false",
        "anonymous access is opt-in"
    );
    assert_eq!(env["GF_AUTH_ANONYMOUS_ORG_ROLE"], "Viewer");
    assert_eq!(env["PROMETHEUS_URL"], "http://prometheus:9090");
    assert_eq!(env["LONG_TERM_STORE_URL"], "http://victoria-metrics:8428");
    assert_eq!(
        env["PROMETHEUS_SCRAPE_INTERVAL"],
        repository_yaml("deploy/prometheus.docker.yml")["global"]["scrape_interval"],
        "Grafana's timeInterval is Prometheus' scrape interval"
    );
    let extra_hosts = format!("{:?}", services["prometheus"]["extra_hosts"]);
    assert!(
        extra_hosts.contains("host.docker.internal:host-gateway"),
        "{extra_hosts}"
    );

    // Without a password, compose refuses to start the stack.
    let refusal = Stack::new().refusal().unwrap();
    assert!(refusal.contains("GRAFANA_ADMIN_PASSWORD"), "{refusal}");
}

/// The value of `--flag=value` (or `-flag=value`) in a service's command.
fn flag<'a>(service: &'a Yaml, flag: &str) -> Option<&'a str> {
    service["command"]
        .as_sequence()?
        .iter()
        .filter_map(Yaml::as_str)
        .find_map(|arg| {
            arg.trim_start_matches('-')
                .strip_prefix(flag)?
                .strip_prefix('=')
        })
}

#[test]
fn the_scale_profile_runs_an_ha_pair_writing_to_victoria_metrics() {
    let stack = Stack::new().password("test-password").profile("scale");
    let Some(config) = stack.merged() else {
        return;
    };
    let services = &config["services"];
    let mounts = |service: &Yaml| format!("{:?}", service["volumes"]);
    for replica in ["a", "b"] {
        let service = &services[format!("prometheus-{replica}").as_str()];
        assert_eq!(service["image"], prometheus::DEFAULT_IMAGE, "{replica}");
        assert_eq!(
            format!("{:?}", service["profiles"]),
            format!("{:?}", Yaml::Sequence(vec!["scale".into()])),
            "only with --profile scale"
        );
        let volumes = mounts(service);
        for needle in [
            format!("deploy/scale/prometheus-{replica}.yml"),
            "deploy/scale/targets".to_owned(),
            "/etc/prometheus/targets".to_owned(),
            // The pair evaluates the same rules as the single Prometheus.
            "/rules:/etc/prometheus/rules:ro".to_owned(),
        ] {
            assert!(
                volumes.contains(&needle),
                "prometheus-{replica}: {needle} in {volumes}"
            );
        }
        let ports = format!("{:?}", service["ports"]);
        assert!(ports.contains("127.0.0.1"), "loopback only: {ports}");
    }
    let victoria = &services["victoria-metrics"];
    assert_eq!(victoria["image"], victoria_metrics::DEFAULT_IMAGE);
    assert!(format!("{:?}", victoria["profiles"]).contains("scale"));
    // Deduplication at the pair's scrape interval, with the replica label dropped.
    let pair_interval =
        repository_yaml("deploy/scale/prometheus-a.yml")["global"]["scrape_interval"].clone();
    assert_eq!(
        flag(victoria, "dedup.minScrapeInterval"),
        pair_interval.as_str()
    );
    assert_eq!(
        flag(victoria, "relabelConfig"),
        Some("/etc/victoria-metrics/relabel.yml")
    );
    assert!(mounts(victoria).contains(victoria_metrics::RELABEL_CONFIG));
    // The pair writes where the service listens.
    let remote = &repository_yaml("deploy/scale/prometheus-a.yml")["remote_write"][0]["url"];
    assert_eq!(remote, "http://victoria-metrics:8428/api/v1/write");
    assert_eq!(
        services["grafana"]["environment"]["LONG_TERM_STORE_URL"],
        "http://victoria-metrics:8428"
    );
}

#[test]
fn the_probe_override_adds_the_exporter_and_gives_prometheus_the_probe_job() {
    let stack = Stack::new()
        .password("test-password")
        .with_file("deploy/probe/compose.yml");
    let Some(config) = stack.merged() else {
        return;
    };
    let services = &config["services"];
    let exporter = &services["blackbox-exporter"];
    assert_eq!(exporter["image"], blackbox::DEFAULT_IMAGE);
    assert_eq!(
        flag(exporter, "config.file"),
        Some("/etc/blackbox_exporter/config.yml")
    );
    let volumes = format!("{:?}", exporter["volumes"]);
    assert!(
        volumes.contains("deploy/probe/blackbox.rendered.yml:/etc/blackbox_exporter/config.yml"),
        "the rendered file, not the template: {volumes}"
    );
    let ports = format!("{:?}", exporter["ports"]);
    assert!(ports.contains("127.0.0.1"), "loopback only: {ports}");
    // The rendered file holds the probe's password: never committed.
    let ignored = std::fs::read_to_string(repo_root().join(".gitignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l == "/deploy/probe/*.rendered.yml"),
        "{ignored}"
    );

    // Prometheus gets the configuration with the probe job, in place of the other,
    // and keeps its rules.
    let volumes = format!("{:?}", services["prometheus"]["volumes"]);
    assert!(
        volumes.contains("deploy/probe/prometheus.docker.yml:/etc/prometheus/prometheus.yml"),
        "{volumes}"
    );
    assert!(
        !volumes.contains("deploy/prometheus.docker.yml"),
        "{volumes}"
    );
    assert!(
        volumes.contains("/rules:/etc/prometheus/rules:ro"),
        "{volumes}"
    );
    // Its probe job scrapes the exporter where Compose runs it.
    let probe = repository_yaml("deploy/probe/prometheus.docker.yml")["scrape_configs"][1].clone();
    assert_eq!(probe["job_name"], "login_probe");
    assert_eq!(
        probe["relabel_configs"][2]["replacement"],
        format!(
            "blackbox-exporter:{}",
            blackbox::ENGINE.spec().container_port
        )
    );
}
