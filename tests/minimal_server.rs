//! The minimal server of Step 1 (`examples/minimal.rs`), run as the reader runs
//! it: a process of its own, `cargo run --example minimal`, moved to free ports
//! with `LOGIN_ADDR` and `LOGIN_METRICS_ADDR`. Each test is a claim of Step 1, or
//! one of the shortcomings that "Hardening the server" starts from. The claims any
//! minimal server must meet, whichever crate it uses, are in `minimal_claims/`.

mod minimal_claims;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use login_metrics_testkit::example::{ExampleServer, check_standalone, example};
use login_metrics_testkit::exposition::sample;
use login_metrics_testkit::repo_root;
use login_metrics_testkit::wait::{Check, poll};
use minimal_claims::count;
use regex::Regex;
use reqwest::StatusCode;

/// The minimal server, as a reader runs it: `cargo run --example minimal`, with its
/// metrics listener on `metrics_ip`, both on free ports.
fn start_minimal(metrics_ip: &str) -> ExampleServer {
    ExampleServer::start(example("minimal"), metrics_ip)
}

#[tokio::test]
async fn the_minimal_server_counts_every_answer_of_login_by_status_code() {
    minimal_claims::counts_every_answer_by_status_code(&start_minimal("127.0.0.1")).await;
}

#[tokio::test]
async fn every_status_the_minimal_server_answers_exists_at_zero_from_start() {
    minimal_claims::every_status_exists_at_zero_from_start(&start_minimal("127.0.0.1")).await;
}

/// One of the minimal server's shortcomings, which the production server's
/// `client_went_away` answer fixes: a client that hangs up halfway through its
/// body leaves the JSON extractor a body that ends early, and the layer counts
/// what the extractor answers, a 400, as if the request had been malformed.
#[tokio::test]
async fn a_login_whose_client_hangs_up_mid_body_is_counted_as_a_400() {
    let server = start_minimal("127.0.0.1");
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
    let mut server = start_minimal("127.0.0.1");
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
    let mut server = start_minimal("127.0.0.1");
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

/// A SIGTERM sent the moment the server says where it listens stops it: the handler
/// is in place before that line.
#[cfg(unix)]
#[tokio::test]
async fn a_sigterm_sent_as_soon_as_the_server_says_where_it_listens_stops_it() {
    for _ in 0..5 {
        let mut server = start_minimal("127.0.0.1");
        server.terminate();
        let status = server
            .exit_within(Duration::from_secs(10))
            .expect("exits within 10 s of SIGTERM");
        assert!(status.success(), "{status}");
    }
}

#[tokio::test]
async fn the_tutorials_queries_and_the_dashboards_first_row_answer_from_a_real_prometheus() {
    // A Prometheus in a container reaches the server through the Docker bridge.
    minimal_claims::the_tutorials_queries_and_the_first_row_answer(&start_minimal("0.0.0.0")).await;
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

/// A reader copies two things: the dependency lines Step 1 shows and the file. This
/// builds exactly that as a project of its own, so that a missing feature or crate
/// in the lines fails here rather than in the reader's project.
#[test]
fn the_dependency_lines_step_1_shows_build_the_minimal_server_on_their_own() {
    check_standalone(
        "minimal-standalone",
        "examples/minimal-Cargo.toml",
        "examples/minimal.rs",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}
