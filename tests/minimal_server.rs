//! The minimal server of Step 1 (`examples/minimal.rs`), run as the reader runs
//! it: a process of its own, `cargo run --example minimal`, moved to free ports
//! with `LOGIN_ADDR` and `LOGIN_METRICS_ADDR`. Each test is a claim of Step 1, or
//! one of the shortcomings that "Hardening the server" starts from.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use login_metrics_testkit::book::TUTORIAL_QUERIES;
use login_metrics_testkit::dashboard::{dashboard_file, load_dashboard};
use login_metrics_testkit::example::{self, example};
use login_metrics_testkit::exposition::sample;
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::panels::{FIRST_ROW, row_answers};
use login_metrics_testkit::repo_root;
use login_metrics_testkit::traffic;
use login_metrics_testkit::wait::{Check, poll};
use regex::Regex;
use reqwest::StatusCode;

/// The minimal server, running; killed when dropped.
struct Minimal {
    child: Child,
    /// `http://127.0.0.1:PORT/login`.
    login_url: String,
    /// `http://127.0.0.1:PORT/metrics`.
    metrics_url: String,
    login_addr: String,
}

impl Drop for Minimal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Minimal {
    /// Starts the example with its metrics listener on `metrics_ip` (0.0.0.0 for a
    /// Prometheus in a container), both ports free, and waits for the line that
    /// says where it listens.
    fn start(metrics_ip: &str) -> Self {
        let mut child = example("minimal")
            .env("LOGIN_ADDR", "127.0.0.1:0")
            .env("LOGIN_METRICS_ADDR", format!("{metrics_ip}:0"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the minimal example starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut first)
            .expect("the example prints where it listens");
        let found = Regex::new(r"^login on http://(\S+)/login, metrics on http://(\S+)/metrics$")
            .unwrap()
            .captures(first.trim_end())
            .map(|c| (c[1].to_owned(), c[2].to_owned()));
        let Some((login, metrics)) = found else {
            let _ = child.kill();
            panic!("unexpected first line: {first:?}");
        };
        let metrics = metrics.replace("0.0.0.0", "127.0.0.1");
        Self {
            child,
            login_url: format!("http://{login}/login"),
            metrics_url: format!("http://{metrics}/metrics"),
            login_addr: login,
        }
    }

    fn metrics_port(&self) -> u16 {
        self.metrics_url
            .rsplit(':')
            .next()
            .and_then(|rest| rest.trim_end_matches("/metrics").parse().ok())
            .expect("a port in the metrics URL")
    }

    async fn scrape(&self) -> String {
        reqwest::get(&self.metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends SIGTERM, as `docker stop` and Kubernetes do.
    #[cfg(unix)]
    fn terminate(&self) {
        example::terminate(&self.child);
    }

    /// The exit status once the process has ended, waiting at most `patience`.
    fn exit_within(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        example::exit_within(&mut self.child, patience)
    }
}

/// `login_requests_total{status_code="CODE"}` on the page, if it is there.
fn count(text: &str, code: &str) -> Option<f64> {
    sample(
        text,
        &format!("login_requests_total{{status_code=\"{code}\"}}"),
    )
}

#[tokio::test]
async fn the_minimal_server_counts_every_answer_of_login_by_status_code() {
    let server = Minimal::start("127.0.0.1");
    let http = reqwest::Client::new();
    let json_post = |body: &'static str| {
        http.post(&server.login_url)
            .header("content-type", "application/json")
            .body(body)
    };
    let sent = [
        (json_post(r#"{"username":"user","password":"pass"}"#), 200),
        (json_post(r#"{"username":"user","password":"pass"}"#), 200),
        (json_post(r#"{"username":"user","password":"wrong"}"#), 401),
        (json_post(r#"{"username":"user","#), 400),
        (json_post(r#"{"username":"user"}"#), 422),
        (
            http.post(&server.login_url)
                .body(r#"{"username":"user","password":"pass"}"#),
            415,
        ),
        (http.get(&server.login_url), 405),
        (http.get(server.login_url.replace("/login", "/nope")), 404),
    ];
    for (request, expected) in sent {
        let status = request.send().await.unwrap().status();
        assert_eq!(status.as_u16(), expected);
    }

    // ANCHOR: exact_counts
    let text = server.scrape().await;
    for (code, expected) in [
        ("200", 2.0),
        ("400", 1.0),
        ("401", 1.0),
        ("405", 1.0),
        ("415", 1.0),
        ("422", 1.0),
    ] {
        assert_eq!(
            count(&text, code),
            Some(expected),
            "status {code} in\n{text}"
        );
    }
    assert_eq!(count(&text, "404"), None, "other paths are not logins");
    assert_eq!(
        sample(&text, "login_request_latency_seconds_count"),
        Some(7.0),
        "one observation per answer of /login:\n{text}"
    );
    assert_eq!(sample(&text, "login_requests_in_flight"), Some(0.0));
    // ANCHOR_END: exact_counts
}

#[tokio::test]
async fn every_status_the_minimal_server_answers_exists_at_zero_from_start() {
    let server = Minimal::start("127.0.0.1");
    let text = server.scrape().await;
    for code in ["200", "400", "401", "405", "415", "422"] {
        assert_eq!(
            sample(
                &text,
                &format!("login_requests_total{{status_code=\"{code}\"}}")
            ),
            Some(0.0),
            "status {code} at 0 before the first request:\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "login_request_latency_seconds_count"),
        Some(0.0)
    );
}

/// One of the minimal server's shortcomings, which the production server's
/// `client_went_away` answer fixes: a client that hangs up halfway through its
/// body leaves the JSON extractor a body that ends early, and the layer counts
/// what the extractor answers, a 400, as if the request had been malformed.
#[tokio::test]
async fn a_login_whose_client_hangs_up_mid_body_is_counted_as_a_400() {
    let server = Minimal::start("127.0.0.1");
    let mut stream = TcpStream::connect(&server.login_addr).unwrap();
    stream
        .write_all(
            b"POST /login HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
              content-length: 40\r\n\r\n{\"username\":",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(stream);

    let text = poll(
        "the abandoned login to be counted",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let text = server.scrape().await;
            if sample(&text, "login_request_latency_seconds_count") == Some(1.0) {
                Check::Met(text)
            } else {
                Check::NotYet(text)
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    assert_eq!(count(&text, "400"), Some(1.0), "{text}");
}

/// Another shortcoming: `axum::serve` gives hyper no timer, so a client that
/// sends half a request header and stops is never cut off, and a graceful
/// shutdown waits for it. The server exits, with status 0, once it leaves.
#[cfg(unix)]
#[tokio::test]
async fn a_stalled_client_keeps_the_minimal_server_running_after_sigterm() {
    let mut server = Minimal::start("127.0.0.1");
    let mut stalled = TcpStream::connect(&server.login_addr).unwrap();
    stalled
        .write_all(b"POST /login HTTP/1.1\r\nhost: te")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.terminate();
    assert_eq!(
        server.exit_within(Duration::from_secs(2)),
        None,
        "the minimal server exited while a client was still sending its headers"
    );
    drop(stalled);
    let status = server
        .exit_within(Duration::from_secs(10))
        .expect("the server exits once the stalled client has gone");
    assert!(status.success(), "{status}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_minimal_server_exits_with_status_0_on_sigterm() {
    let mut server = Minimal::start("127.0.0.1");
    let status = reqwest::Client::new()
        .post(&server.login_url)
        .json(&serde_json::json!({"username": "user", "password": "pass"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    server.terminate();
    let status = server
        .exit_within(Duration::from_secs(10))
        .expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_tutorials_queries_and_the_dashboards_first_row_answer_from_a_real_prometheus() {
    // ANCHOR: real_prometheus
    // A Prometheus in a container reaches the server through the Docker bridge.
    let server = Minimal::start("0.0.0.0");
    let Some(prometheus) = Prometheus::start(server.metrics_port()).await.unwrap() else {
        return; // the harness printed why
    };
    let traffic = traffic::Traffic::start(server.login_url.clone(), Duration::from_millis(20));
    prometheus
        .wait_for_target_health("up", Duration::from_secs(45))
        .await
        .unwrap();
    for query in TUTORIAL_QUERIES {
        let value = prometheus
            .wait_for_nonzero(query, Duration::from_secs(45))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e:#}"));
        eprintln!("{query}: {value}");
    }
    // ANCHOR_END: real_prometheus

    // ANCHOR: first_row
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let answers = row_answers(&dashboard, FIRST_ROW, prometheus.api())
        .await
        .unwrap();
    let value = |panel: &str, ref_id: &str| {
        answers
            .iter()
            .find(|a| a.panel == panel && a.ref_id == ref_id)
            .map_or_else(|| panic!("{panel} {ref_id} in {answers:#?}"), |a| a.value)
    };
    for (panel, ref_id) in [
        ("Target up", "A"),
        ("Targets up of expected", "A"),
        ("Targets up of expected", "B"),
    ] {
        let up = value(panel, ref_id);
        assert!((up - 1.0).abs() < f64::EPSILON, "{panel} {ref_id}: {up}");
    }
    // Rounds of one good login, one wrong password and one malformed body.
    let ratio = value("Login success ratio", "A");
    assert!(
        (ratio - 1.0 / 3.0).abs() < 0.1,
        "one success in three: {ratio}"
    );
    assert!(value("Requests in flight", "A") >= 0.0);
    // ANCHOR_END: first_row
    assert!(!traffic.failed(), "the traffic stopped early");
    let counts = traffic.stop().await.unwrap();
    assert!(counts.ok > 0 && counts.unauthorized > 0 && counts.bad_request > 0);
}

// ---------------------------------------------------------------------------
// What Step 1 shows of it
// ---------------------------------------------------------------------------

fn step_1() -> String {
    std::fs::read_to_string(repo_root().join("book/src/step-1-server.md")).unwrap()
}

/// The anchors of `file` (relative to the repository) that Step 1 includes.
fn anchors_step_1_includes(file: &str) -> BTreeSet<String> {
    let include = Regex::new(&format!(
        r"\{{\{{#include \.\./\.\./{}:([\w-]+)\}}\}}",
        regex::escape(file)
    ))
    .unwrap();
    include
        .captures_iter(&step_1())
        .map(|c| c[1].to_owned())
        .collect()
}

#[test]
fn step_1_shows_every_line_of_the_minimal_server() {
    let shown = anchors_step_1_includes("examples/minimal.rs");
    let source = std::fs::read_to_string(repo_root().join("examples/minimal.rs")).unwrap();
    let mut open: Option<String> = None;
    let mut hidden = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("// ANCHOR: ") {
            open = Some(name.to_owned());
        } else if trimmed.starts_with("// ANCHOR_END: ") {
            open = None;
        } else if !(trimmed.is_empty()
            || trimmed.starts_with("//!")
            || open.as_ref().is_some_and(|name| shown.contains(name)))
        {
            hidden.push(format!("{}: {line}", number + 1));
        }
    }
    assert!(
        hidden.is_empty(),
        "lines of examples/minimal.rs that Step 1 does not show (anchors shown: {shown:?}):\n{}",
        hidden.join("\n")
    );
    assert!(
        anchors_step_1_includes("examples/minimal-Cargo.toml").contains("dependencies"),
        "Step 1 shows the dependency lines"
    );
}

/// What cargo sets for this crate's tests; a nested build must not inherit it.
fn nested_cargo(args: &[&str], dir: &Path, target: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("CARGO_PKG_") || k.starts_with("CARGO_MANIFEST"))
            || key == "CARGO_CRATE_NAME"
            || key == "CARGO_PRIMARY_PACKAGE"
            || key == "CARGO_TARGET_TMPDIR"
        {
            command.env_remove(key);
        }
    }
    command
}

/// A reader copies two things: the dependency lines Step 1 shows and the file. This
/// builds exactly that as a project of its own (offline, with this repository's
/// lock file, so the versions are the ones tested here), so that a missing feature
/// or crate in the lines fails here rather than in the reader's project.
#[test]
fn the_dependency_lines_step_1_shows_build_the_minimal_server_on_their_own() {
    let root = repo_root();
    let listing = std::fs::read_to_string(root.join("examples/minimal-Cargo.toml")).unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"minimal-login-server\"\nversion = \"0.1.0\"\n\
             edition = \"2024\"\npublish = false\n\n[workspace]\n\n{listing}"
        ),
    )
    .unwrap();
    std::fs::create_dir(project.path().join("src")).unwrap();
    std::fs::copy(
        root.join("examples/minimal.rs"),
        project.path().join("src/main.rs"),
    )
    .unwrap();
    std::fs::copy(root.join("Cargo.lock"), project.path().join("Cargo.lock")).unwrap();
    // A target directory of its own that outlives the run: the next run is incremental.
    let target: PathBuf = root.join("target").join("minimal-standalone");
    let output = nested_cargo(
        &["check", "--offline", "--quiet", "--message-format=short"],
        project.path(),
        &target,
    )
    .output()
    .expect("cargo runs");
    assert!(
        output.status.success(),
        "the minimal server does not build with the lines Step 1 shows:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
