//! Clients that try to take the server down, over real loopback sockets: each
//! test is one claim of the book's "Limits" section. Timeouts are set short
//! (hundreds of milliseconds) so the tests stay fast; the deadlines the tests
//! wait with are generous, because what they check is that something happens
//! at all, not how fast.

#[path = "support/example.rs"]
mod support_example;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::limits::Limits;
use login_metrics::metrics::{CLIENT_CLOSED_REQUEST, Closed, STATUS_CODES};
use login_metrics::throttle::Throttle;
use login_metrics_testkit::testing::{Login, TestServer};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Every wait in these tests ends by this deadline: long enough for a busy
/// machine, short enough that a server that never acts fails the test.
const PATIENCE: Duration = Duration::from_secs(10);

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
    }
}

async fn server(limits: Limits) -> TestServer {
    let state = AppState::new(UserStore::with_demo_user())
        .with_limits(limits)
        .with_throttle(Throttle::off());
    TestServer::start_with(IpAddr::V4(Ipv4Addr::LOCALHOST), state)
        .await
        .unwrap()
}

/// A connection from `127.0.0.<client>`, so that clients have addresses of
/// their own, as they would in the wild.
async fn connect_from(client: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, client], 0)))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes the connection (end of file or reset) and
/// returns what it sent; fails if it is still open after [`PATIENCE`].
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

/// Polls `condition` every 10 ms until it holds, for up to [`PATIENCE`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Half of a request header: what a slowloris client sends before going silent.
const HALF_A_HEADER: &[u8] = b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: appl";

#[tokio::test]
async fn a_stalled_header_is_cut_off_by_the_header_timeout() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut client = connect_from(2, server.app_addr).await;
    client.write_all(HALF_A_HEADER).await.unwrap();
    eventually("the connection is open", || metrics.connections_open() == 1).await;

    until_closed(&mut client).await;
    eventually("the connection is counted as closed", || {
        metrics.connections_open() == 0
    })
    .await;
    assert_eq!(metrics.connections_closed(Closed::HeaderTimeout), 1);
    assert_eq!(metrics.latency_count(), 0, "no request ever started");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut client = connect_from(3, server.app_addr).await;
    // One complete request, kept alive, then silence.
    client
        .write_all(b"GET /login HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    eventually("the connection is counted as closed", || {
        metrics.connections_open() == 0
    })
    .await;
    assert_eq!(metrics.connections_closed(Closed::IdleTimeout), 1);
    assert_eq!(metrics.connections_closed(Closed::HeaderTimeout), 0);
}

#[tokio::test]
async fn a_slow_body_is_cut_off_with_a_json_408_and_costs_no_hash() {
    let limits = short_limits();
    let server = server(limits).await;
    let state = server.state.clone();
    let mut client = connect_from(4, server.app_addr).await;
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

    assert_eq!(
        state
            .metrics
            .requests_with(reqwest::StatusCode::REQUEST_TIMEOUT),
        1
    );
    assert_eq!(state.metrics.latency_count(), 1);
    assert_eq!(state.users.verifications(), 0, "no hash for a slow body");
}

#[tokio::test]
async fn a_client_that_half_closes_mid_header_is_cut_off_and_counted() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut client = connect_from(5, server.app_addr).await;
    client.write_all(HALF_A_HEADER).await.unwrap();
    client.shutdown().await.unwrap();
    until_closed(&mut client).await;
    eventually("the connection is counted as closed", || {
        metrics.connections_open() == 0
    })
    .await;
    assert_eq!(metrics.connections_closed(Closed::ClientGone), 1);
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
        let mut client = connect_from(10 + u8::try_from(index % 4).unwrap(), server.app_addr).await;
        client.write_all(HALF_A_HEADER).await.unwrap();
        stalled.push(client);
    }
    eventually("the budget is full", || {
        metrics.connections_open() == i64::try_from(budget).unwrap()
    })
    .await;

    // Ten more: each is closed at once, and counted.
    for _ in 0..10 {
        let mut late = connect_from(14, server.app_addr).await;
        until_closed(&mut late).await;
    }
    eventually("the refusals are counted", || {
        metrics.connections_closed(Closed::OverBudget) == 10
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
        metrics.connections_open() == 0
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
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{}",
        Login::Good.body().len(),
        Login::Good.body()
    );
    let counted = || {
        STATUS_CODES
            .iter()
            .map(|code| state.metrics.requests_with(*code))
            .sum::<u64>()
    };
    // Every login reaches the server at once: a few are hashing, the rest
    // wait, far longer than the hang-ups below take.
    let sends: Vec<_> = (0..clients)
        .map(|index| {
            let (request, addr) = (request.clone(), server.app_addr);
            tokio::spawn(async move {
                let mut stream = connect_from(20 + u8::try_from(index % 8).unwrap(), addr).await;
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
        u64::try_from(state.metrics.in_flight_now()).unwrap() + counted() >= all
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
    let abandoned = state.metrics.requests_with(CLIENT_CLOSED_REQUEST);
    let answered = state.metrics.requests_with(StatusCode::OK);
    assert!(abandoned > 0, "no hang-up counted as 499");
    assert_eq!(abandoned + answered, u64::try_from(clients).unwrap());
}

#[tokio::test]
async fn abandoned_logins_are_counted_as_499_and_timed() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut client = connect_from(30, server.app_addr).await;
    // Headers and half the body, then the client is gone.
    client
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\"",
        )
        .await
        .unwrap();
    eventually("the request is in flight", || metrics.in_flight_now() == 1).await;
    drop(client);
    eventually("the request is counted", || metrics.latency_count() == 1).await;
    assert_eq!(
        metrics.requests_with(CLIENT_CLOSED_REQUEST),
        1,
        "{}",
        metrics.render()
    );
    assert_eq!(metrics.in_flight_now(), 0);
    let text = metrics.render();
    assert!(
        text.contains("login_requests_total{status_code=\"499\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_404_flood_adds_one_series() {
    let server = server(short_limits()).await;
    let client = reqwest::Client::new();
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let before = client
        .get(server.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for index in 0..300 {
        let url = format!("http://{}/scan-{index}", server.app_addr);
        let response = client.post(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let after = client
        .get(server.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    assert_eq!(server.state.metrics.latency_count(), 0, "not logins");
}

#[tokio::test]
async fn hypers_own_431_and_400_answers_are_counted_by_reason() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);

    let mut huge = connect_from(40, server.app_addr).await;
    let cookie = "a".repeat(512 * 1024);
    // The server may answer and close before it has read everything.
    let _ = huge
        .write_all(format!("GET / HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\n\r\n").as_bytes())
        .await;
    let answer = until_closed(&mut huge).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let mut garbage = connect_from(41, server.app_addr).await;
    garbage.write_all(b"HELLO\x01 THERE\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut garbage).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    eventually("both connections are counted", || {
        metrics.connections_open() == 0
    })
    .await;
    assert_eq!(metrics.connections_closed(Closed::TooLarge), 1);
    assert_eq!(metrics.connections_closed(Closed::Malformed), 1);
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
    let binary = support_example::example("login_server");
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
    let field = |key: &str| -> SocketAddr {
        let start = line.find(&format!("{key}=")).unwrap() + key.len() + 1;
        line[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (child, field("login"), field("metrics"), lines)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_metrics_port_keeps_descriptors_when_stalled_clients_fill_the_login_port() {
    // 256 open files: the budget is half, 128, and 300 stalled clients would
    // use every descriptor without one.
    let (_server, login, metrics, _log) = start_example(256, &["--header-timeout", "60s"]);
    let mut stalled = Vec::new();
    for index in 0..300_u16 {
        let Ok(mut client) = tokio::time::timeout(
            PATIENCE,
            connect_from(50 + u8::try_from(index % 4).unwrap(), login),
        )
        .await
        else {
            break;
        };
        let _ = client.write_all(HALF_A_HEADER).await;
        stalled.push(client);
    }
    // The server accepts from its queue at its own pace: scrape until every
    // client has been accepted or refused. Every scrape must be answered.
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let scrape = loop {
        let scrape = client
            .get(format!("http://{metrics}/metrics"))
            .timeout(PATIENCE)
            .send()
            .await
            .expect("a scrape is answered")
            .text()
            .await
            .unwrap();
        if scrape.contains("login_connections_closed_total{reason=\"over_budget\"} 172")
            || tokio::time::Instant::now() > deadline
        {
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        scrape.contains("login_connections_closed_total{reason=\"over_budget\"} 172"),
        "{scrape}"
    );
    assert!(scrape.contains("login_connections_open 128"), "{scrape}");
    assert!(scrape.contains("login_connections_max 128"), "{scrape}");
    drop(stalled);
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_with_stalled_clients_exits_0_within_the_grace_period() {
    let (mut server, login, _, log) = start_example(
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
        let mut client = connect_from(60 + index % 4, login).await;
        client.write_all(HALF_A_HEADER).await.unwrap();
        stalled.push(client);
    }
    for index in 0..10_u8 {
        let mut client = connect_from(64 + index % 4, login).await;
        client
            .write_all(
                b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                  Content-Length: 100\r\n\r\n{\"user",
            )
            .await
            .unwrap();
        stalled.push(client);
    }
    // Give the server time to accept them all before the signal.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = std::time::Instant::now();
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(6),
            "still running {:?} after SIGTERM, with a 1 s grace period",
            signalled.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
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
        }
    );

    let too_many = Config::parse_from(["login_server", "--max-connections", "1000"]);
    let refused = too_many.limits(Some(1024)).unwrap_err().to_string();
    assert!(refused.contains("--max-connections 1000"), "{refused}");

    assert!(Config::try_parse_from(["login_server", "--header-timeout", "0s"]).is_err());
    assert!(Config::try_parse_from(["login_server", "--max-connections", "0"]).is_err());
}
