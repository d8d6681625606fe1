//! Runs the `load` example binary the way the book tells readers to, against
//! an in-process server, and checks its table against the server's own
//! counters; and checks that it fails loudly when nothing listens.

#[path = "support/example.rs"]
mod support_example;
use support_example::example;

use std::collections::BTreeMap;
use std::process::Output;

use login_metrics_testkit::testing::TestServer;
use reqwest::StatusCode;

/// Runs the example off the async runtime, which keeps serving meanwhile.
async fn run_load(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || example("load").args(args).output())
        .await
        .expect("the load example's runner panicked")
        .expect("the load example starts")
}

/// The `count` column of each row of the printed table, by its first cell
/// (`200 OK`, `all`, ...).
fn counts(stdout: &str) -> BTreeMap<String, u64> {
    stdout
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // `| status | count | share | ... |` splits into an empty first cell.
            let count = cells.get(2)?.parse().ok()?;
            Some((cells[1].to_owned(), count))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_example_sends_the_requested_mix_and_the_server_counts_the_same() {
    let server = TestServer::start_local().await.unwrap();
    // 60 requests in cycles of 3 good, 2 bad, 1 malformed: exactly 30/20/10.
    let output = run_load(
        [
            "--url",
            &server.login_url(),
            "--requests",
            "60",
            "--good",
            "3",
            "--bad",
            "2",
            "--malformed",
            "1",
            "--connections",
            "4",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "load failed: {stderr}\nstdout:\n{stdout}"
    );

    let table = counts(&stdout);
    let expected = [
        ("200 OK", StatusCode::OK, 30),
        ("400 Bad Request", StatusCode::BAD_REQUEST, 10),
        ("401 Unauthorized", StatusCode::UNAUTHORIZED, 20),
        ("all", StatusCode::OK, 60),
    ];
    for (row, _, count) in expected {
        assert_eq!(table.get(row), Some(&count), "row {row:?} in:\n{stdout}");
    }
    assert_eq!(table.len(), 4, "unexpected rows in:\n{stdout}");
    assert!(
        stdout.contains("Sent 30 good, 20 bad and 10 malformed logins"),
        "{stdout}"
    );
    assert!(stdout.contains("60 answers in "), "{stdout}");
    // Not a terminal: no progress bar drawn anywhere.
    assert!(
        !stderr.contains("requests ("),
        "progress bar drawn: {stderr}"
    );

    // The server's own counters agree with what the generator received.
    let metrics = &server.state.metrics;
    for (row, status, count) in &expected[..3] {
        assert_eq!(
            metrics.requests_with(*status),
            *count,
            "server count for {row}"
        );
    }
    assert_eq!(metrics.latency_count(), 60);
    assert_eq!(metrics.in_flight_now(), 0);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_example_fails_clearly_when_nothing_listens() {
    // Bind a free port, then close it: connecting there is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/login", closed.local_addr().unwrap());
    drop(closed);

    let output = run_load(
        ["--url", &url, "--requests", "5"]
            .map(str::to_owned)
            .to_vec(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "load succeeded against a closed port:\n{stdout}"
    );
    assert!(
        stderr.contains(&format!("no answer from {url}")),
        "unclear error: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("connection refused"),
        "the cause is not shown: {stderr}"
    );
    assert!(
        stderr.contains("cargo run --example login_server"),
        "no hint: {stderr}"
    );
    let table = counts(&stdout);
    assert!(
        table.get("no answer").is_some_and(|failed| *failed >= 1),
        "no `no answer` row in:\n{stdout}"
    );
}

/// Each named scenario sends its mix; flags given as well override it. The server's
/// own counters say what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scenario_sends_its_own_mix() {
    // (scenario, requests, expected 200/401/400): cycles of 1/9/0 and 6/1/3.
    for (scenario, requests, expected) in [
        ("password-guessing", "20", [2, 18, 0]),
        ("broken-client", "20", [12, 2, 6]),
        ("slow", "12", [12, 0, 0]),
    ] {
        let server = TestServer::start_local().await.unwrap();
        let output = run_load(
            [
                "--url",
                &server.login_url(),
                "--scenario",
                scenario,
                "--requests",
                requests,
                "--rate",
                "1000",
            ]
            .map(str::to_owned)
            .to_vec(),
        )
        .await;
        assert!(
            output.status.success(),
            "{scenario}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metrics = &server.state.metrics;
        let got = [
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::BAD_REQUEST,
        ]
        .map(|status| metrics.requests_with(status));
        assert_eq!(
            got, expected,
            "{scenario}: 200/401/400 counted by the server"
        );
        server.stop().await.unwrap();
    }
}
