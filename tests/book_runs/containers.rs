//! Step 2's `docker run` commands, with the image the test harness uses in place of
//! the official one (`PROMETHEUS_IMAGE`; CI builds a local one from Debian's
//! package), a free port for 9090 and a container name of the test's own. A mount
//! dropped from a command fails here: promtool exits 1 without the rules, and the
//! Prometheus started without them evaluates none.

use std::time::Duration;

use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::book::shell::{Background, run, script, sub};
use login_metrics_testkit::harness::engine::Placement;
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::wait::{Check, poll_blocking};
use serde_json::Value;

use crate::{free_port, printed};

/// The official image the book names.
const BOOK_IMAGE: &str = "prom/prometheus:v3.13.4";

/// The Prometheus image the harness would run, or `None` (and one `skipped:` line)
/// when it runs Prometheus from its binary here.
fn image() -> Option<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match runtime.block_on(Prometheus::placement()) {
        Ok(Some(Placement::Container { image })) => Some(image),
        Ok(Some(Placement::Native { .. })) => {
            login_metrics_testkit::env::skip(
                "the book's `docker run` commands need Prometheus in Docker, and the harness \
                 runs it from its binary here (set PROMETHEUS_IMAGE to a local image)",
            );
            None
        }
        Ok(None) => None,
        Err(error) => panic!("{error:#}"),
    }
}

/// Removes the container named `name` when dropped: killing `docker run` does not.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[test]
fn promtool_in_the_container_checks_the_mounted_configuration_and_rules() {
    let Some(image) = image() else { return };
    let output = run(
        &script("step-2/docker-promtool", &[sub(BOOK_IMAGE, image.clone())]),
        &[],
        "",
    );
    let printed = printed(&output);
    assert!(
        output.status.success(),
        "promtool in {image} failed (an image without promtool: rebuild it with \
         .ci/build-local-image.sh prometheus):\n{printed}"
    );
    // The same check as on the host, with the container's paths.
    check_output(
        "step-2/check-config",
        &printed.replace("/etc/prometheus/", ""),
        &Masks::none(),
    );
}

#[test]
fn prometheus_in_the_container_loads_the_mounted_rules_and_scrapes_the_host() {
    let Some(image) = image() else { return };
    let name = format!("login-metrics-book-{}", std::process::id());
    let _removed = Removed(name.clone());
    let port = free_port();
    let _container = Background::start(
        &script(
            "step-2/docker-prometheus",
            &[
                sub("login-metrics-prometheus", name.clone()),
                sub("127.0.0.1:9090:9090", format!("127.0.0.1:{port}:9090")),
                sub(BOOK_IMAGE, image),
            ],
        ),
        &[],
    );
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| -> Option<Value> {
        let output = run(&format!("curl -sf {base}{path}"), &[], "");
        serde_json::from_slice(&output.stdout).ok()
    };
    let groups = |rules: &Value| rules["data"]["groups"].as_array().map_or(0, Vec::len);
    let files: usize = ["rules/recording.yml", "rules/alerts.yml"]
        .iter()
        .map(|file| {
            login_metrics_testkit::repository_yaml(file)["groups"]
                .as_sequence()
                .map_or(0, Vec::len)
        })
        .sum();
    poll_blocking(
        "the container's Prometheus to load every rule group",
        Duration::from_secs(45),
        Duration::from_millis(250),
        || match get("/api/v1/rules") {
            Some(rules) if groups(&rules) == files => Check::Met(()),
            Some(rules) => Check::NotYet(format!(
                "{} of {files} rule groups loaded (is rules/ mounted?)",
                groups(&rules)
            )),
            None => Check::NotYet("no answer yet".to_owned()),
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));

    // Its target is the host through the bridge, where no server listens on 8000
    // for it: the error troubleshooting quotes for a server on 127.0.0.1.
    let error = poll_blocking(
        "a failed scrape of host.docker.internal:8000",
        Duration::from_secs(45),
        Duration::from_millis(250),
        || {
            let targets = get("/api/v1/targets");
            let error = targets
                .as_ref()
                .and_then(|t| t["data"]["activeTargets"][0]["lastError"].as_str())
                .unwrap_or_default()
                .to_owned();
            if error.is_empty() {
                Check::NotYet(format!("{targets:?}"))
            } else {
                Check::Met(error)
            }
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    check_output(
        "troubleshooting/bridge-refused",
        &error,
        &Masks::none().mask("[BRIDGE]", r"dial tcp (?<redacted>[0-9.]+):8000"),
    );
}
