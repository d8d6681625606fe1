//! Clients that send more than a login needs: a header block, a method, a
//! body announced larger than the limit. Each is refused before the server
//! holds it, and nothing a client sends reaches the log at full length.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use login_metrics::limits::HEADER_BLOCK_LIMIT;
use login_metrics::metrics::Closed;
use login_metrics::routes::LOGIN_BODY_LIMIT;
use login_metrics_testkit::clients::{connect_from, until_closed};
use login_metrics_testkit::exposition::{ScrapeMetrics as _, sample};
use login_metrics_testkit::logs::address_field;
use login_metrics_testkit::wait::{PATIENCE, eventually};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Running, scrape, server, short_limits};

#[tokio::test]
async fn a_header_block_over_8_kib_is_answered_431_and_counted() {
    let server = server(short_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    // A cookie that a login has no use for, a little over the limit.
    let cookie = "a".repeat(HEADER_BLOCK_LIMIT);
    let mut client = connect_from([127, 0, 0, 140], server.app_addr)
        .await
        .unwrap();
    let _ = client
        .write_all(
            format!("POST /login HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\n\r\n").as_bytes(),
        )
        .await;
    let answer = until_closed(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    eventually("the connection is counted as too large", || {
        metrics.scrape().connections_closed(Closed::TooLarge) == 1
    })
    .await;

    // What a browser sends with a couple of cookies still fits.
    let mut client = connect_from([127, 0, 0, 140], server.app_addr)
        .await
        .unwrap();
    let cookie = "a".repeat(HEADER_BLOCK_LIMIT / 2);
    client
        .write_all(
            format!("GET /login HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let answer = until_closed(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
}

#[tokio::test]
async fn expect_100_continue_with_a_declared_body_over_the_limit_gets_413_without_100_continue() {
    let server = server(short_limits()).await;
    let mut client = connect_from([127, 0, 0, 141], server.app_addr)
        .await
        .unwrap();
    client
        .write_all(
            format!(
                "POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                LOGIN_BODY_LIMIT + 1
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // The client waits for an answer before it sends a byte of the body.
    let mut answer = Vec::new();
    let mut buffer = [0; 1024];
    while !String::from_utf8_lossy(&answer).contains('}') {
        let read = tokio::time::timeout(PATIENCE, client.read(&mut buffer))
            .await
            .expect("an answer without the body");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(
        answer.contains("\"error\":\"payload_too_large\""),
        "{answer}"
    );
    assert_eq!(
        server
            .state
            .metrics
            .scrape()
            .requests(StatusCode::PAYLOAD_TOO_LARGE),
        1
    );
}

/// Resident memory of process `pid` now and at its peak (`VmRSS`, `VmHWM`), in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Requests in the flood: more than the log queue's 10,000 lines.
const LONG_METHODS: usize = 12_000;
/// Each method's length: as long as fits under the header block limit.
const METHOD_LENGTH: usize = 7_000;
/// The most the server's memory may grow by under the flood.
const MAX_GROWTH_KIB: u64 = 32 * 1024;

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_with_an_unread_log_pipe_under_a_flood_of_long_methods() {
    let mut command = login_metrics_testkit::example::example("login_server");
    command
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Running(command.spawn().unwrap());
    let pid = child.0.id();
    // Read the log until the server says where it listens, then never again:
    // the pipe stays open, full, like a log shipper that stopped.
    let mut log = BufReader::new(child.0.stdout.take().unwrap());
    let listening = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        while log.read_line(&mut line).unwrap() > 0 {
            if line.contains("listening") {
                return (log, line);
            }
            line.clear();
        }
        panic!("the server exited before it listened");
    });
    let (unread, line) = tokio::time::timeout(PATIENCE, listening)
        .await
        .expect("the server logs where it listens")
        .unwrap();
    let (login, metrics) = (
        address_field(&line, "login"),
        address_field(&line, "metrics"),
    );
    let (before, _) = memory_kib(pid);

    // The flood: long methods on eight connections, each answered 405 and
    // logged, within a minute at most.
    let method = reqwest::Method::from_bytes(&vec![b'X'; METHOD_LENGTH]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let method = method.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                let mut answered = 0;
                for _ in 0..LONG_METHODS / 8 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let answer = client
                        .request(method.clone(), format!("http://{login}/login"))
                        .timeout(PATIENCE)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for sender in senders {
        answered += sender.await.unwrap();
    }
    assert_eq!(answered, LONG_METHODS, "the flood ran out of time");

    let (after, peak) = memory_kib(pid);
    let text = scrape(metrics).await;
    let dropped = sample(&text, "log_lines_dropped_total").unwrap();
    eprintln!(
        "resident memory {before} KiB before, {after} KiB after, peak {peak} KiB; \
         {dropped} log lines dropped"
    );
    assert!(
        peak.saturating_sub(before) < MAX_GROWTH_KIB,
        "resident memory {before} KiB before, {after} KiB after, peak {peak} KiB"
    );
    // The pipe was full: the queue filled, and dropped what did not fit.
    assert!(dropped > 0.0, "no line dropped: {text}");
    drop(unread);
    drop(child);
}

#[tokio::test]
async fn a_long_method_is_cut_short_in_the_log() {
    let log = login_metrics_testkit::logs::Captured::start();
    let server = server(short_limits()).await;
    let mut client = connect_from([127, 0, 0, 142], server.app_addr)
        .await
        .unwrap();
    let method = "X".repeat(METHOD_LENGTH);
    client
        .write_all(format!("{method} /login HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = [0; 12];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 405");
    eventually("the request is logged", || !log.request_lines().is_empty()).await;
    let lines = log.request_lines();
    assert!(
        lines[0].contains(&format!(" method={}… ", &method[..16])),
        "{lines:#?}"
    );
    assert!(lines[0].len() < 300, "{} bytes: {lines:#?}", lines[0].len());
}
