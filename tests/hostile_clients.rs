//! Clients that try to take the server down, over real loopback sockets: each
//! test is one claim of the book's "Limits" section. Timeouts are set short
//! (hundreds of milliseconds) so the tests stay fast; the deadlines the tests
//! wait with are generous, because what they check is that something happens
//! at all, not how fast.
//!
//! The modules hold the clients that read slowly or never ([`slow_readers`]),
//! that go for the metrics listener ([`metrics_listener`]), that send what the
//! log or the parser must bound ([`oversized`]), and that try to steer or fool
//! the login endpoint ([`steering`]).

#[path = "hostile_clients/metrics_listener.rs"]
mod metrics_listener;
#[path = "hostile_clients/oversized.rs"]
mod oversized;
#[path = "hostile_clients/slow_readers.rs"]
mod slow_readers;
#[path = "hostile_clients/steering.rs"]
mod steering;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::limits::Limits;
use login_metrics::metrics::{CLIENT_CLOSED_REQUEST, Closed, STATUS_CODES};
use login_metrics::metrics_listener::MetricsListener;
use login_metrics::throttle::Throttle;
use login_metrics_testkit::clients::{
    HALF_A_HEADER, HALF_A_LOGIN, connect_from, hang_up_mid_body, login_request, until_closed,
};
use login_metrics_testkit::exposition::{Scrape, ScrapeMetrics as _};
use login_metrics_testkit::logins::Login;
use login_metrics_testkit::logs::address_field;
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::wait::{Check, PATIENCE, eventually, poll, poll_blocking};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Short limits, so that a test sees each one fire quickly. The defences of
/// Step 8 (throttle, shedding, the per-client share of the budget) are out of
/// the way: these tests are about what a client can hold, not how often it may
/// try, and `tests/under_attack.rs` tests them.
fn short_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        max_connections: 64,
        shutdown_grace: Duration::from_secs(1),
        max_hash_wait: Duration::from_secs(600),
        max_connections_per_client: 64,
        write_timeout: Duration::from_millis(500),
        max_requests_per_connection: 100,
    }
}

async fn server(limits: Limits) -> TestServer {
    server_with(limits, MetricsListener::default(), Throttle::off()).await
}

/// A server on loopback with these limits, metrics listener and throttle.
async fn server_with(limits: Limits, scrapers: MetricsListener, throttle: Throttle) -> TestServer {
    let state = AppState::new(UserStore::with_demo_user())
        .with_limits(limits)
        .with_metrics_listener(scrapers)
        .with_throttle(throttle);
    TestServer::start_with(IpAddr::V4(Ipv4Addr::LOCALHOST), state)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stalled_header_is_cut_off_by_the_header_timeout() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut client = connect_from([127, 0, 0, 2], server.app_addr).await.unwrap();
    client.write_all(HALF_A_HEADER).await.unwrap();
    eventually("the connection is open", || {
        metrics.scrape().connections_open() == 1
    })
    .await;

    until_closed(&mut client).await;
    eventually("the connection is counted as closed", || {
        metrics.scrape().connections_open() == 0
    })
    .await;
    assert_eq!(
        metrics.scrape().connections_closed(Closed::HeaderTimeout),
        1
    );
    assert_eq!(
        metrics.scrape().latency_count(),
        0,
        "no request ever started"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut client = connect_from([127, 0, 0, 3], server.app_addr).await.unwrap();
    // One complete request, kept alive, then silence.
    client
        .write_all(b"GET /login HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    eventually("the connection is counted as closed", || {
        metrics.scrape().connections_open() == 0
    })
    .await;
    assert_eq!(metrics.scrape().connections_closed(Closed::IdleTimeout), 1);
    assert_eq!(
        metrics.scrape().connections_closed(Closed::HeaderTimeout),
        0
    );
}

#[tokio::test]
async fn a_slow_body_is_cut_off_with_a_json_408_and_costs_no_hash() {
    let limits = short_limits();
    let server = server(limits).await;
    let state = server.state.clone();
    let mut client = connect_from([127, 0, 0, 4], server.app_addr).await.unwrap();
    let body = br#"{"username":"user","password":"pass"}"#;
    client
        .write_all(
            format!(
                "POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = client.into_split();
    // One byte every 100 ms: each arrives well within the timeout, so only a
    // deadline on the whole body, not one between reads, cuts this client off.
    let dribble = tokio::spawn(async move {
        for byte in body {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .ok();
    dribble.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(json["error"], "body_timeout", "{json}");
    assert!(json["message"].is_string(), "{json}");

    let counted = state.metrics.scrape();
    assert_eq!(counted.requests(reqwest::StatusCode::REQUEST_TIMEOUT), 1);
    assert_eq!(counted.latency_count(), 1);
    assert_eq!(state.users.verifications(), 0, "no hash for a slow body");
}

#[tokio::test]
async fn a_client_that_half_closes_mid_header_is_cut_off_and_counted() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut client = connect_from([127, 0, 0, 5], server.app_addr).await.unwrap();
    client.write_all(HALF_A_HEADER).await.unwrap();
    client.shutdown().await.unwrap();
    until_closed(&mut client).await;
    eventually("the connection is counted as closed", || {
        metrics.scrape().connections_open() == 0
    })
    .await;
    assert_eq!(metrics.scrape().connections_closed(Closed::ClientGone), 1);
}

#[tokio::test]
async fn a_scrape_is_answered_while_the_login_port_is_at_its_budget() {
    let budget = 20;
    let server = server(Limits {
        header_timeout: Duration::from_secs(60),
        max_connections: budget,
        ..short_limits()
    })
    .await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut stalled = Vec::new();
    for index in 0..budget {
        let mut client = connect_from(
            [127, 0, 0, 10 + u8::try_from(index % 4).unwrap()],
            server.app_addr,
        )
        .await
        .unwrap();
        client.write_all(HALF_A_HEADER).await.unwrap();
        stalled.push(client);
    }
    eventually("the budget is full", || {
        metrics.scrape().connections_open() == u64::try_from(budget).unwrap()
    })
    .await;

    // Ten more: each is closed at once, and counted.
    for _ in 0..10 {
        let mut late = connect_from([127, 0, 0, 14], server.app_addr)
            .await
            .unwrap();
        until_closed(&mut late).await;
    }
    eventually("the refusals are counted", || {
        metrics.scrape().connections_closed(Closed::OverBudget) == 10
    })
    .await;

    let scrape = reqwest::Client::new()
        .get(server.metrics_url())
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.unwrap();
    assert!(text.contains("login_connections_open 20"), "{text}");
    assert!(text.contains("login_connections_max 20"), "{text}");
    assert!(
        text.contains("login_connections_closed_total{reason=\"over_budget\"} 10"),
        "{text}"
    );

    // Once the stalled clients leave, logins are accepted again.
    drop(stalled);
    eventually("the stalled connections are gone", || {
        metrics.scrape().connections_open() == 0
    })
    .await;
    Login::Good
        .send(&reqwest::Client::new(), &server.login_url())
        .await
        .unwrap();
}

#[tokio::test]
async fn clients_that_hang_up_mid_hash_never_run_more_hashes_than_cores() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let clients = 50 * cores;
    let server = server(Limits {
        max_connections: clients,
        ..short_limits()
    })
    .await;
    let state = server.state.clone();
    assert_eq!(state.users.hashing().threads(), cores);
    let request = login_request(Login::Good.body());
    let counted = || {
        let scrape = state.metrics.scrape();
        STATUS_CODES
            .iter()
            .map(|code| scrape.requests(*code))
            .sum::<u64>()
    };
    // Every login reaches the server at once: a few are hashing, the rest
    // wait, far longer than the hang-ups below take.
    let sends: Vec<_> = (0..clients)
        .map(|index| {
            let (request, addr) = (request.clone(), server.app_addr);
            tokio::spawn(async move {
                let mut stream =
                    connect_from([127, 0, 0, 20 + u8::try_from(index % 8).unwrap()], addr)
                        .await
                        .unwrap();
                stream.write_all(request.as_bytes()).await.unwrap();
                stream
            })
        })
        .collect();
    let mut streams = Vec::new();
    for send in sends {
        streams.push(send.await.unwrap());
    }
    let all = u64::try_from(clients).unwrap();
    eventually("every login reaches the router", || {
        state.metrics.scrape().requests_in_flight() + counted() >= all
    })
    .await;
    // Then the clients hang up one after the other, so that each permit a
    // hang-up could free finds a login still waiting for it.
    for stream in streams {
        drop(stream);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eventually("every login is counted", || {
        counted() == u64::try_from(clients).unwrap()
    })
    .await;

    let peak = state.users.hashing().peak_jobs();
    assert!(
        (1..=cores).contains(&peak),
        "{peak} hashes in the pool at once on {cores} cores"
    );
    let abandoned = state.metrics.scrape().requests(CLIENT_CLOSED_REQUEST);
    let answered = state.metrics.scrape().requests(StatusCode::OK);
    assert!(abandoned > 0, "no hang-up counted as 499");
    assert_eq!(abandoned + answered, u64::try_from(clients).unwrap());
}

#[tokio::test]
async fn abandoned_logins_are_counted_as_499_and_timed() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    // Headers and half the body, then the client is gone.
    hang_up_mid_body(&server, [127, 0, 0, 30]).await;
    eventually("the request is counted", || {
        metrics.scrape().latency_count() == 1
    })
    .await;
    let counted = metrics.scrape();
    assert_eq!(
        counted.requests(CLIENT_CLOSED_REQUEST),
        1,
        "{}",
        counted.text()
    );
    assert_eq!(counted.requests_in_flight(), 0);
    assert!(
        counted
            .text()
            .contains("login_requests_total{status_code=\"499\"} 1"),
        "{}",
        counted.text()
    );
}

#[tokio::test]
async fn a_404_flood_adds_one_series() {
    let server = server(short_limits()).await;
    let client = reqwest::Client::new();
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let before = scrape(server.metrics_addr).await;
    for index in 0..300 {
        let url = format!("http://{}/scan-{index}", server.app_addr);
        let response = client.post(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let after = scrape(server.metrics_addr).await;
    assert!(
        after.contains("login_unmatched_requests_total 300"),
        "{after}"
    );
    assert!(!after.contains("scan-"), "a path became a label:\n{after}");
    assert_eq!(
        series(&before),
        series(&after),
        "the flood added series:\n{after}"
    );
    assert_eq!(
        server.state.metrics.scrape().latency_count(),
        0,
        "not logins"
    );
}

#[tokio::test]
async fn hypers_own_431_and_400_answers_are_counted_by_reason() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);

    let mut huge = connect_from([127, 0, 0, 40], server.app_addr)
        .await
        .unwrap();
    let cookie = "a".repeat(512 * 1024);
    // The server may answer and close before it has read everything.
    let _ = huge
        .write_all(format!("GET / HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\n\r\n").as_bytes())
        .await;
    let answer = until_closed(&mut huge).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let mut garbage = connect_from([127, 0, 0, 41], server.app_addr)
        .await
        .unwrap();
    garbage.write_all(b"HELLO\x01 THERE\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut garbage).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    eventually("both connections are counted", || {
        metrics.scrape().connections_open() == 0
    })
    .await;
    assert_eq!(metrics.scrape().connections_closed(Closed::TooLarge), 1);
    assert_eq!(metrics.scrape().connections_closed(Closed::Malformed), 1);
}

#[tokio::test]
async fn every_connection_series_exists_at_zero_from_start() {
    let server = server(short_limits()).await;
    let text = server.state.metrics.render();
    for reason in Closed::ALL {
        let line = format!(
            "login_connections_closed_total{{reason=\"{}\"}} 0",
            reason.as_str()
        );
        assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
    }
    for line in [
        "login_connections_open 0",
        "login_connections_max 64",
        "login_unmatched_requests_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
    }
}

#[tokio::test]
async fn the_latency_histogram_tells_apart_latencies_up_to_10_seconds() {
    let metrics = login_metrics::metrics::Metrics::new();
    metrics.observe(StatusCode::OK, Duration::from_secs(7));
    let text = metrics.render();
    for (bucket, count) in [("5", 0), ("10", 1), ("+Inf", 1)] {
        let line = format!("login_request_latency_seconds_bucket{{le=\"{bucket}\"}} {count}");
        assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
    }
}

/// One scrape of the metrics listener at `metrics`; every scrape must be answered.
async fn scrape(metrics: SocketAddr) -> String {
    reqwest::Client::new()
        .get(format!("http://{metrics}/metrics"))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("a scrape is answered")
        .text()
        .await
        .unwrap()
}

/// The example binary, killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `login_server` example on free loopback ports with `args`,
/// under an open files limit of `open_files`, and returns it with its two
/// addresses and a channel of every line it logs.
fn start_example(
    open_files: u32,
    args: &[&str],
) -> (
    Running,
    SocketAddr,
    SocketAddr,
    std::sync::mpsc::Receiver<String>,
) {
    let binary = login_metrics_testkit::example::example("login_server");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
        .arg(binary.get_program())
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Wrapped at once, so that a failed start does not leave it running.
    let mut child = Running(command.spawn().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    for output in [
        Box::new(child.0.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.0.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let line = loop {
        let line = lines
            .recv_timeout(PATIENCE)
            .expect("the server logs where it listens");
        if line.contains("listening") {
            break line;
        }
    };
    (
        child,
        address_field(&line, "login"),
        address_field(&line, "metrics"),
        lines,
    )
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_metrics_port_keeps_descriptors_when_stalled_clients_fill_the_login_port() {
    // 256 open files: the budget is half, 128, and 300 stalled clients would
    // use every descriptor without one.
    let (_server, login, metrics, _log) = start_example(256, &["--header-timeout", "60s"]);
    let mut stalled = Vec::new();
    for index in 0..300_u16 {
        let Ok(client) = tokio::time::timeout(
            PATIENCE,
            connect_from([127, 0, 0, 50 + u8::try_from(index % 4).unwrap()], login),
        )
        .await
        else {
            break;
        };
        let mut client = client.unwrap();
        let _ = client.write_all(HALF_A_HEADER).await;
        stalled.push(client);
    }
    // The server accepts from its queue at its own pace: scrape until every
    // client has been accepted or refused. Every scrape must be answered.
    let all_placed = "login_connections_closed_total{reason=\"over_budget\"} 172";
    let scrape = poll(
        "every stalled client accepted or refused",
        PATIENCE,
        Duration::from_millis(100),
        || async {
            let scrape = scrape(metrics).await;
            if scrape.contains(all_placed) {
                Check::Met(scrape)
            } else {
                Check::NotYet(scrape)
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    assert!(scrape.contains("login_connections_open 128"), "{scrape}");
    assert!(scrape.contains("login_connections_max 128"), "{scrape}");
    drop(stalled);
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_with_stalled_clients_exits_0_within_the_grace_period() {
    let (mut server, login, metrics, log) = start_example(
        1024,
        &[
            "--header-timeout",
            "60s",
            "--body-timeout",
            "60s",
            "--shutdown-grace",
            "1s",
        ],
    );
    let mut stalled = Vec::new();
    for index in 0..50_u8 {
        let mut client = connect_from([127, 0, 0, 60 + index % 4], login)
            .await
            .unwrap();
        client.write_all(HALF_A_HEADER).await.unwrap();
        stalled.push(client);
    }
    for index in 0..10_u8 {
        let mut client = connect_from([127, 0, 0, 64 + index % 4], login)
            .await
            .unwrap();
        client.write_all(HALF_A_LOGIN).await.unwrap();
        stalled.push(client);
    }
    // The signal comes once the server holds them all: 60 connections open, ten
    // of them with a request in flight that the grace period cannot see finish.
    poll(
        "60 connections open and 10 requests in flight",
        PATIENCE,
        Duration::from_millis(20),
        || async {
            let text = scrape(metrics).await;
            let seen = Scrape::from_text(text.as_str());
            if seen.connections_open() == 60 && seen.requests_in_flight() == 10 {
                Check::Met(())
            } else {
                Check::NotYet(text)
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));

    let signalled = std::time::Instant::now();
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = poll_blocking(
        "exited within 6 s of SIGTERM, with a 1 s grace period",
        Duration::from_secs(6),
        Duration::from_millis(20),
        || match server.0.try_wait().unwrap() {
            Some(status) => Check::Met(status),
            None => Check::NotYet(format!("still running {:?} after", signalled.elapsed())),
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    // The process has exited: its log ends, and every line is in the channel.
    let log: Vec<String> = log.iter().collect();
    assert!(
        log.iter()
            .any(|line| line.contains("closing connections still open after the shutdown grace")),
        "{log:#?}"
    );
    drop(stalled);
}

#[test]
fn limits_come_from_flags_with_safe_defaults() {
    use clap::Parser;
    use login_metrics::config::Config;

    let defaults = Config::parse_from(["login_server"]);
    let limits = defaults.limits(Some(20_000)).unwrap();
    assert_eq!(limits.header_timeout, Duration::from_secs(10));
    assert_eq!(limits.body_timeout, Duration::from_secs(10));
    assert_eq!(limits.shutdown_grace, Duration::from_secs(8));
    assert_eq!(limits.max_connections, 4096);
    assert_eq!(defaults.limits(Some(1024)).unwrap().max_connections, 512);

    let set = Config::parse_from([
        "login_server",
        "--header-timeout",
        "500ms",
        "--body-timeout",
        "2s",
        "--max-connections",
        "100",
        "--shutdown-grace",
        "3s",
    ]);
    assert_eq!(
        set.limits(Some(1024)).unwrap(),
        Limits {
            header_timeout: Duration::from_millis(500),
            body_timeout: Duration::from_secs(2),
            max_connections: 100,
            shutdown_grace: Duration::from_secs(3),
            max_hash_wait: Duration::from_millis(500),
            max_connections_per_client: 64,
            write_timeout: Duration::from_secs(10),
            max_requests_per_connection: 100,
        }
    );

    let too_many = Config::parse_from(["login_server", "--max-connections", "1000"]);
    let refused = too_many.limits(Some(1024)).unwrap_err().to_string();
    assert!(refused.contains("--max-connections 1000"), "{refused}");

    assert!(Config::try_parse_from(["login_server", "--header-timeout", "0s"]).is_err());
    assert!(Config::try_parse_from(["login_server", "--max-connections", "0"]).is_err());
}
