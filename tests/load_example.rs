//! Runs the `load` example binary the way the book tells readers to, against
//! an in-process server, and checks its table against the server's own
//! counters; that it sends from many addresses, so that the server's default
//! per-client throttle refuses none of its default traffic and throttles its one
//! guessing address; and that it fails loudly when nothing listens.

use login_metrics_testkit::example::example;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::throttle::LoginRate;
use login_metrics_testkit::exposition::ScrapeMetrics as _;
use login_metrics_testkit::server::TestServer;
use reqwest::StatusCode;

/// Held by every test that makes a server hash passwords. Each server has a
/// hashing thread per core and sheds, with 503, a login that would wait more than
/// 500 ms for one: side by side, these tests would push each other's logins past
/// that bound, and count 503s that no single run causes.
static HASHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the example off the async runtime, which keeps serving meanwhile.
async fn run_load(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || example("load").args(args).output())
        .await
        .expect("the load example's runner panicked")
        .expect("the load example starts")
}

/// A server on `ip` with the demo user and the shipped defaults, the per-client
/// throttle included (ten attempts at once, then one a second per address).
async fn shipped_server(ip: IpAddr) -> TestServer {
    // Built first, so that the run starts as soon as the server does.
    drop(example("load"));
    TestServer::start_with(ip, AppState::new(UserStore::with_demo_user()))
        .await
        .unwrap()
}

/// Runs the example while watching `server`'s throttle; returns the output and
/// the most client addresses the throttle remembered at once. (The server
/// forgets idle addresses every ten seconds, so the count after a long run
/// could be lower than what the run used.)
async fn run_load_watching(server: &TestServer, args: &[&str]) -> (Output, usize) {
    let throttle = Arc::clone(&server.state.throttle);
    let most = Arc::new(AtomicUsize::new(0));
    let watcher = tokio::spawn({
        let most = Arc::clone(&most);
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
                most.fetch_max(throttle.clients(), Ordering::Relaxed);
            }
        }
    });
    let output = run_load(args.iter().map(|arg| (*arg).to_owned()).collect()).await;
    watcher.abort();
    most.fetch_max(server.state.throttle.clients(), Ordering::Relaxed);
    (output, most.load(Ordering::Relaxed))
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "load failed: {}\nstdout:\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
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
    let _one_at_a_time = HASHING.lock().await;
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
        stdout.contains("sent 30 good, 20 bad and 10 malformed logins"),
        "{stdout}"
    );
    assert!(stdout.contains("60 answers in "), "{stdout}");
    // Not a terminal: no progress bar drawn anywhere.
    assert!(
        !stderr.contains("requests ("),
        "progress bar drawn: {stderr}"
    );

    // The server's own counters agree with what the generator received.
    let counted = server.state.metrics.scrape();
    for (row, status, count) in &expected[..3] {
        assert_eq!(counted.requests(*status), *count, "server count for {row}");
    }
    assert_eq!(counted.latency_count(), 60);
    assert_eq!(counted.requests_in_flight(), 0);
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
    let _one_at_a_time = HASHING.lock().await;
    // (scenario, requests, expected 200/401/400): cycles of 1/9/0, 6/1/3, 1/0/0.
    for (scenario, requests, expected) in [
        ("password-guessing", "20", [2, 18, 0]),
        ("credential-stuffing", "20", [2, 18, 0]),
        ("broken-client", "20", [12, 2, 6]),
        ("slow", "12", [12, 0, 0]),
        ("flood", "12", [12, 0, 0]),
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
        let counted = server.state.metrics.scrape();
        let got = [
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::BAD_REQUEST,
        ]
        .map(|status| counted.requests(status));
        assert_eq!(
            got, expected,
            "{scenario}: 200/401/400 counted by the server"
        );
        server.stop().await.unwrap();
    }
}

/// The default scenario at full speed, against the shipped server: its requests
/// come from 256 loopback addresses in turn, so the per-client throttle refuses
/// none of them, where it would refuse all but about a dozen from one address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_scenario_stays_under_the_per_client_limit() {
    let _one_at_a_time = HASHING.lock().await;
    let server = shipped_server(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    // One cycle of the 70/25/5 mix, each request from the next address.
    let (output, clients) = run_load_watching(
        &server,
        &["--url", &server.login_url(), "--requests", "100"],
    )
    .await;
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(
            "Scenario normal: sent 70 good, 25 bad and 5 malformed logins \
             from 256 addresses (127.0.1.1 to 127.0.2.2)"
        ),
        "{stdout}"
    );

    let counted = server.state.metrics.scrape();
    assert_eq!(counted.requests(StatusCode::TOO_MANY_REQUESTS), 0);
    assert_eq!(counted.requests(StatusCode::OK), 70);
    assert_eq!(counted.requests(StatusCode::UNAUTHORIZED), 25);
    assert_eq!(counted.requests(StatusCode::BAD_REQUEST), 5);
    // A malformed body is not an attempt the throttle counts, so the five
    // addresses that sent only one are not among those it remembers.
    assert_eq!(clients, 95, "client addresses the throttle saw:\n{stdout}");
    server.stop().await.unwrap();
}

/// The password-guessing scenario, as fast as it can, against the shipped
/// server: its one address gets its burst, and what refilled while it ran, and
/// 429 for everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_guessing_address_is_throttled() {
    let _one_at_a_time = HASHING.lock().await;
    let server = shipped_server(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let started = Instant::now();
    let (output, clients) = run_load_watching(
        &server,
        &[
            "--url",
            &server.login_url(),
            "--scenario",
            "password-guessing",
            "--requests",
            "40",
            "--rate",
            "1000",
        ],
    )
    .await;
    // An upper bound on how long the address's bucket had to refill.
    let elapsed = started.elapsed();
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(
            "Scenario password-guessing: sent 4 good, 36 bad and 0 malformed logins \
             from 1 address (127.1.1.1)"
        ),
        "{stdout}"
    );

    let counted = server.state.metrics.scrape();
    let checked = counted.requests(StatusCode::OK) + counted.requests(StatusCode::UNAUTHORIZED);
    let throttled = counted.requests(StatusCode::TOO_MANY_REQUESTS);
    let shipped = LoginRate::default();
    let refilled = elapsed.as_nanos().div_ceil(shipped.interval.as_nanos());
    let at_most = u64::from(shipped.burst.get()) + u64::try_from(refilled).unwrap();
    assert!(
        checked <= at_most,
        "{checked} logins checked in {elapsed:?}: more than the burst and what refilled"
    );
    assert!(throttled > 0, "nothing throttled");
    assert_eq!(checked + throttled, 40);
    assert_eq!(clients, 1, "client addresses the throttle saw");
    server.stop().await.unwrap();
}

/// A server that is not on an IPv4 loopback address cannot tell the sources
/// apart: the generator sends from one address, and says once, before it
/// starts, that the throttle may refuse most of it and what to do about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_ipv4_loopback_everything_comes_from_one_address_and_the_generator_says_so() {
    let _one_at_a_time = HASHING.lock().await;
    if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("skipped: no IPv6 loopback address here");
        return;
    }
    let server = shipped_server(IpAddr::V6(Ipv6Addr::LOCALHOST)).await;
    let (output, clients) =
        run_load_watching(&server, &["--url", &server.login_url(), "--requests", "30"]).await;
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("note:").count(), 1, "{stderr}");
    assert!(
        stderr.contains("[::1], is not an IPv4 loopback address")
            && stderr.contains("may answer most of them with 429")
            && stderr.contains("--no-login-limit"),
        "{stderr}"
    );
    assert!(stdout.contains(" from 1 address to "), "{stdout}");
    assert_eq!(clients, 1, "client addresses the throttle saw");
    // As the note says: past the burst, the throttle answers.
    assert!(
        server
            .state
            .metrics
            .scrape()
            .requests(StatusCode::TOO_MANY_REQUESTS)
            > 0
    );
    server.stop().await.unwrap();
}

/// Every source keeps a connection open, so many sources need many open files:
/// when the process may not have enough, the run does not start, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_open_files_for_the_sources_stop_the_run_before_it_starts() {
    // Bind a free port, then close it: nothing is sent anywhere even if the check fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/login", closed.local_addr().unwrap());
    drop(closed);
    let load = example("load").get_program().to_owned();
    // The shell lowers both limits, soft and hard, so the generator cannot raise its own.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .args(["-c", r#"ulimit -n 256 && exec "$@""#, "sh"])
            .arg(load)
            .args(["--url", &url, "--sources", "2048", "--requests", "1"])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("2048 sources need about 2120 open files, and this process may have 256"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
