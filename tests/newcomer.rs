//! A newcomer's `cargo test` passes on any machine, and says what it did not check.
//!
//! Two tests start a real Prometheus the way every end-to-end test does, with whatever
//! this machine has: one decision, one note or one skip explained, whichever asks first. The others run this same test binary again as a child
//! process, with the environment of another machine (no image, no binary, no Docker),
//! and check what the child printed and how it ended: the engine launcher decides once
//! per test binary, so the only way to test a decision is a fresh process.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::time::Duration;

use login_metrics_testkit::harness::engine::find_binary;
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::server::TestServer;

/// An image name nobody publishes.
const NO_SUCH_IMAGE: &str = "login-metrics/no-such-image:0";
/// The filter that selects the two tests below in the child process.
const STARTERS: &str = "test_starts_prometheus_or_skips";

async fn start_prometheus_or_skip() {
    let server = TestServer::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .await
        .unwrap();
    let Some(prometheus) = Prometheus::start(server.metrics_addr.port()).await.unwrap() else {
        return; // the harness printed one `skipped:` line
    };
    prometheus
        .wait_for_target_health("up", Duration::from_secs(45))
        .await
        .unwrap();
}

/// Both this test and the next start Prometheus, in parallel; whichever asks first
/// gets the one decision explained, the other a short line pointing at it.
#[tokio::test]
async fn one_test_starts_prometheus_or_skips() {
    start_prometheus_or_skip().await;
}

#[tokio::test]
async fn another_test_starts_prometheus_or_skips() {
    start_prometheus_or_skip().await;
}

/// What the child printed of its own: harness notes and skip lines.
struct Child {
    output: Output,
    stderr: String,
}

impl Child {
    fn lines_starting(&self, prefix: &str) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.starts_with(prefix))
            .collect()
    }

    fn passed(&self) -> bool {
        self.output.status.success()
            && String::from_utf8_lossy(&self.output.stdout).contains("test result: ok. 2 passed")
    }

    fn describe(&self) -> String {
        format!(
            "status {}\nstdout:\n{}\nstderr:\n{}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout),
            self.stderr
        )
    }
}

/// Runs the two starter tests in a fresh process of this binary, as a newcomer
/// would (no `CI`, no backend chosen), with `env` on top.
fn newcomer(env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([STARTERS, "--test-threads=2"])
        .env_remove("CI")
        .env_remove("LOGIN_METRICS_PROMETHEUS")
        .env_remove("PROMETHEUS_IMAGE");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    Child { output, stderr }
}

/// A `PATH` with no `prometheus` on it.
fn empty_path() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

const NO_DOCKER: (&str, &str) = ("DOCKER_HOST", "unix:///nonexistent/docker.sock");

#[test]
fn a_missing_image_falls_back_to_the_prometheus_binary_with_one_note() {
    if find_binary(&["prometheus"]).is_none() {
        login_metrics_testkit::env::skip("no `prometheus` binary on PATH to fall back to");
        return;
    }
    let child = newcomer(&[("PROMETHEUS_IMAGE", NO_SUCH_IMAGE)]);
    assert!(child.passed(), "{}", child.describe());
    let notes = child.lines_starting("note: Prometheus runs from");
    assert_eq!(
        notes.len(),
        1,
        "one note for the whole binary:\n{}",
        child.describe()
    );
    assert!(notes[0].contains(NO_SUCH_IMAGE), "{}", notes[0]);
    assert!(notes[0].len() < 200, "a short note: {}", notes[0]);
    assert!(
        child.lines_starting("skipped:").is_empty(),
        "{}",
        child.describe()
    );
}

#[test]
fn no_docker_falls_back_to_the_prometheus_binary_with_one_note() {
    if find_binary(&["prometheus"]).is_none() {
        login_metrics_testkit::env::skip("no `prometheus` binary on PATH to fall back to");
        return;
    }
    let child = newcomer(&[NO_DOCKER]);
    assert!(child.passed(), "{}", child.describe());
    let notes = child.lines_starting("note: Prometheus runs from");
    assert_eq!(notes.len(), 1, "{}", child.describe());
    assert!(notes[0].contains("Docker"), "{}", notes[0]);
}

#[test]
fn a_missing_image_and_no_binary_skip_with_one_line_each() {
    let path = empty_path();
    let child = newcomer(&[
        ("PROMETHEUS_IMAGE", NO_SUCH_IMAGE),
        ("PATH", path.path().to_str().unwrap()),
    ]);
    assert!(child.passed(), "{}", child.describe());
    let skips = child.lines_starting("skipped:");
    assert_eq!(skips.len(), 2, "one line per test:\n{}", child.describe());
    let full = skips
        .iter()
        .find(|line| line.contains("no Prometheus to test against"))
        .unwrap_or_else(|| panic!("the reason, once:\n{}", child.describe()));
    assert!(full.contains(NO_SUCH_IMAGE), "{full}");
    assert!(full.contains("`prometheus` is not on PATH"), "{full}");
    assert!(full.contains("apt install prometheus"), "{full}");
    assert!(
        skips
            .iter()
            .any(|line| line.contains("see the first skip line above")),
        "the second test points at the first:\n{}",
        child.describe()
    );
    assert!(
        child.lines_starting("note:").is_empty(),
        "{}",
        child.describe()
    );
}

#[test]
fn no_docker_and_no_binary_skip_with_one_line_each() {
    let path = empty_path();
    let child = newcomer(&[NO_DOCKER, ("PATH", path.path().to_str().unwrap())]);
    assert!(child.passed(), "{}", child.describe());
    let skips = child.lines_starting("skipped:");
    assert_eq!(skips.len(), 2, "{}", child.describe());
    assert!(
        skips.iter().any(|line| line.contains("Docker")),
        "{}",
        child.describe()
    );
}

#[test]
fn an_explicit_backend_that_cannot_be_met_fails() {
    let path = empty_path();
    let child = newcomer(&[
        ("LOGIN_METRICS_PROMETHEUS", "native"),
        ("PATH", path.path().to_str().unwrap()),
    ]);
    assert!(!child.output.status.success(), "{}", child.describe());
    assert!(
        child
            .stderr
            .contains("LOGIN_METRICS_PROMETHEUS=native, but `prometheus` is not on PATH")
            || String::from_utf8_lossy(&child.output.stdout)
                .contains("LOGIN_METRICS_PROMETHEUS=native, but `prometheus` is not on PATH"),
        "{}",
        child.describe()
    );
}

#[test]
fn under_ci_a_skip_is_a_failure() {
    let path = empty_path();
    let mut child = newcomer(&[
        ("PROMETHEUS_IMAGE", NO_SUCH_IMAGE),
        ("PATH", path.path().to_str().unwrap()),
        ("CI", "true"),
    ]);
    child
        .stderr
        .push_str(&String::from_utf8_lossy(&child.output.stdout));
    assert!(!child.output.status.success(), "{}", child.describe());
    assert!(
        child.stderr.contains("under CI every test must run"),
        "{}",
        child.describe()
    );
}
