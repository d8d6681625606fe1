//! Prometheus from its binary, as Steps 2 and 9 start it, and the scrape errors
//! the troubleshooting page quotes. Without a `prometheus` binary each test says
//! so in one `skipped:` line (a failure under CI).

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::book::shell::{Background, run, run_ok, script, shell_quote, sub};
use login_metrics_testkit::harness::prometheus::config_for;
use login_metrics_testkit::repo_root;
use login_metrics_testkit::wait::{Check, poll_blocking};
use serde_json::Value;

use crate::{LoginServer, free_port, printed};

/// Whether `binary` runs here; one `skipped:` line when not.
fn have(binary: &str, install: &str) -> bool {
    let found = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        login_metrics_testkit::env::skip(&format!("no `{binary}` on PATH ({install})"));
    }
    found
}

/// `prometheus.yml` rewritten to scrape `target` every second, with the rules next
/// to it, in `dir`; returns the configuration's path.
fn config_in(dir: &Path, target: &str) -> String {
    let (config, _job) = config_for(target).unwrap();
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    for rules in ["recording.yml", "alerts.yml"] {
        std::fs::copy(
            repo_root().join("rules").join(rules),
            dir.join("rules").join(rules),
        )
        .unwrap();
    }
    dir.join("prometheus.yml").to_string_lossy().into_owned()
}

/// `GET url` with curl, parsed as JSON.
fn get_json(url: &str) -> Option<Value> {
    let output = run(&format!("curl -sf {}", shell_quote(url)), &[], "");
    serde_json::from_slice(&output.stdout).ok()
}

/// Runs `command` in the background (Prometheus, VictoriaMetrics) and waits until
/// `url` (its readiness or health endpoint) answers with success.
fn start_until_answers(command: &str, url: &str) -> Background {
    let process = Background::start(command, &[]);
    poll_blocking(
        &format!("{url} to answer"),
        Duration::from_secs(45),
        Duration::from_millis(200),
        || {
            let ok = run(&format!("curl -sf {}", shell_quote(url)), &[], "")
                .status
                .success();
            if ok {
                Check::Met(())
            } else {
                Check::NotYet("no answer".to_owned())
            }
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    process
}

/// The active targets of the Prometheus at `base`.
fn targets(base: &str) -> Vec<Value> {
    get_json(&format!("{base}/api/v1/targets"))
        .and_then(|v| v["data"]["activeTargets"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn step_2_runs_prometheus_scrapes_the_server_and_answers_the_first_queries() {
    if !have("prometheus", "apt install prometheus") {
        return;
    }
    let _hashing = crate::production::HASHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = LoginServer::start("step-2/server", &[]);
    let dir = tempfile::tempdir().unwrap();
    // The target named as in prometheus.yml, `localhost`, on the server's port.
    let port = server.metrics.rsplit(':').next().unwrap();
    let config = config_in(dir.path(), &format!("localhost:{port}"));
    let web = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{web}");
    let _prometheus = start_until_answers(
        &script(
            "step-2/prometheus",
            &[
                sub(
                    "--config.file=prometheus.yml",
                    format!("--config.file={config}"),
                ),
                sub(
                    "/tmp/login-metrics-prometheus",
                    format!(
                        "{} --web.listen-address={web}",
                        dir.path().join("data").display()
                    ),
                ),
            ],
        ),
        &format!("{base}/-/ready"),
    );

    // Thirty rounds of a second each, in the book; two short ones here.
    let _ = run_ok(
        &script(
            "step-2/logins",
            &[
                sub("seq 30", "seq 2"),
                sub("sleep 1", "sleep 0.1"),
                sub("127.0.0.1:5000", server.login.clone()),
            ],
        ),
        &[],
    );
    poll_blocking(
        "Prometheus to have scraped both rounds",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let answer = get_json(&format!(
                "{base}/api/v1/query?query=login_requests_total%7Bstatus_code%3D%22401%22%7D"
            ));
            let value = answer.as_ref().and_then(|a| {
                a["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_owned)
            });
            if value.as_deref() == Some("2") {
                Check::Met(())
            } else {
                Check::NotYet(format!("{value:?}"))
            }
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));

    let at_prometheus = sub("http://localhost:9090", base.clone());
    let answer_masks = Masks::none()
        .loopback_ports()
        .mask("[TIME]", r"@\[(?<redacted>[0-9.]+)\]")
        // Thirty rounds in the book, two here.
        .mask("[N]", r#"status_code="(?:200|401)"\} => (?<redacted>\d+)"#);
    let up = run_ok(
        &script(
            "step-2/promtool-query",
            std::slice::from_ref(&at_prometheus),
        ),
        &[],
    );
    check_output("step-2/up", &up, &answer_masks);
    let counters = run_ok(
        &script(
            "step-2/promtool-query",
            &[
                at_prometheus,
                sub("'up{job=\"login_server\"}'", "'login_requests_total'"),
            ],
        ),
        &[],
    );
    check_output("step-2/login-requests-total", &counters, &answer_masks);

    let targets_json = run_ok(
        &script(
            "troubleshooting/api-targets",
            &[sub("http://localhost:9090", base.clone())],
        ),
        &[],
    );
    assert!(targets_json.contains(r#""health":"up""#), "{targets_json}");
}

#[test]
fn a_scrape_fails_with_the_errors_troubleshooting_quotes() {
    if !have("prometheus", "apt install prometheus") {
        return;
    }
    let server = LoginServer::start("hardening/run", &[]);
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // Accepts connections and never answers: a firewall that drops them looks the same.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let login_port = server.login.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: login_server\n    \
         static_configs:\n      - targets: [\"localhost:{refused}\", \"localhost:{login_port}\", \
         \"127.0.0.1:{silent_port}\", \"host.docker.internal:8000\"]\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{web}");
    let _prometheus = start_until_answers(
        &format!(
            "prometheus --config.file={} --storage.tsdb.path={} --web.listen-address={web}",
            dir.path().join("prometheus.yml").display(),
            dir.path().join("data").display()
        ),
        &format!("{base}/-/ready"),
    );
    let errors = poll_blocking(
        "every target to have failed a scrape",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let found = targets(&base);
            let errors: Vec<(String, String)> = found
                .iter()
                .filter_map(|t| {
                    let error = t["lastError"].as_str().unwrap_or_default();
                    (!error.is_empty()).then(|| {
                        (
                            t["labels"]["instance"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            error.to_owned(),
                        )
                    })
                })
                .collect();
            if errors.len() == 4 {
                Check::Met(errors)
            } else {
                Check::NotYet(format!("{found:?}"))
            }
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    let error_of = |instance: &str| {
        errors.iter().find(|(i, _)| i == instance).map_or_else(
            || panic!("no error for {instance}: {errors:?}"),
            |(_, e)| e.clone(),
        )
    };
    check_output(
        "troubleshooting/connection-refused",
        &error_of(&format!("localhost:{refused}")),
        &Masks::none().loopback_ports(),
    );
    check_output(
        "troubleshooting/not-found",
        &error_of(&format!("localhost:{login_port}")),
        &Masks::none(),
    );
    // The book's target is the host as a container names it, on the metrics port.
    check_output(
        "troubleshooting/deadline-exceeded",
        &error_of(&format!("127.0.0.1:{silent_port}")).replace(
            &format!("127.0.0.1:{silent_port}"),
            "host.docker.internal:8000",
        ),
        &Masks::none(),
    );
    // Outside Docker the name is unknown too; which DNS server said so is the machine's.
    check_output(
        "troubleshooting/no-such-host",
        &error_of("host.docker.internal:8000"),
        &Masks::none().mask(
            "[DNS]",
            r"lookup host\.docker\.internal on (?<redacted>\S+):",
        ),
    );
    drop(silent);
}

#[test]
fn prometheus_says_so_when_its_port_is_taken() {
    if !have("prometheus", "apt install prometheus") {
        return;
    }
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), "localhost:8000");
    let output = run(
        &format!(
            "exec prometheus --config.file={config} --storage.tsdb.path={} --web.listen-address=0.0.0.0:{port}",
            dir.path().join("data").display()
        ),
        &[],
        "",
    );
    assert!(!output.status.success());
    // The book leaves out the time and the source line of Prometheus's log line.
    let line = String::from_utf8_lossy(&output.stderr)
        .lines()
        .find(|line| line.contains("Unable to start web listener"))
        .map_or_else(
            || panic!("{}", printed(&output)),
            |line| {
                regex::Regex::new(r"ts=\S+ caller=\S+ ")
                    .unwrap()
                    .replace(line, "")
                    .into_owned()
            },
        );
    check_output(
        "troubleshooting/prometheus-port-in-use",
        &line,
        &Masks::none().mask("[PORT]", r"0\.0\.0\.0:(?<redacted>\d+)"),
    );
}

#[test]
fn step_9_replicas_are_found_through_the_targets_file() {
    if !have("prometheus", "apt install prometheus") {
        return;
    }
    // Three replicas on free ports instead of 5001-5003 and 8001-8003, stopped
    // with the book's own `kill %1 %2 %3`.
    let binary = login_metrics_testkit::book::shell::example_binary("login_server");
    let replicas = run(
        &format!(
            "{}\nsleep 2\nkill %1 %2 %3\nwait",
            script(
                "step-9/replicas",
                &[
                    sub("cargo build --example login_server", "true"),
                    sub("./target/debug/examples/login_server", binary),
                    sub("127.0.0.1:500$n", "127.0.0.1:0"),
                    sub("127.0.0.1:800$n", "127.0.0.1:0"),
                ],
            )
        ),
        &[("RUST_LOG", "info")],
        "",
    );
    let log = printed(&replicas);
    assert_eq!(log.matches(" listening ").count(), 3, "{log}");

    // The configuration of the chapter, with the targets file beside it.
    let dir = tempfile::tempdir().unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{web}");
    let _prometheus = start_until_answers(
        &script(
            "step-9/prometheus-file-sd",
            &[sub(
                "/tmp/login-metrics-file-sd",
                format!(
                    "{} --web.listen-address={web}",
                    dir.path().join("data").display()
                ),
            )],
        ),
        &format!("{base}/-/ready"),
    );
    let shipped = std::fs::read_to_string(repo_root().join("deploy/targets/login_server.yml"))
        .unwrap()
        .matches("localhost:")
        .count();
    poll_blocking(
        "the targets of deploy/targets/ to be listed",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let found = targets(&base).len();
            if found == shipped && found > 0 {
                Check::Met(())
            } else {
                Check::NotYet(format!("{found} of {shipped}"))
            }
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
}

#[test]
fn step_9_runs_victoria_metrics_with_the_pairs_flags() {
    if !have("victoria-metrics", "apt install victoria-metrics") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    // It answers /health once it serves.
    let _store = start_until_answers(
        &script(
            "step-9/victoria-metrics",
            &[sub(
                "-storageDataPath=/tmp/login-metrics-vm",
                format!(
                    "-storageDataPath={} -httpListenAddr={http}",
                    dir.path().join("vm").display()
                ),
            )],
        ),
        &format!("http://{http}/health"),
    );
}
