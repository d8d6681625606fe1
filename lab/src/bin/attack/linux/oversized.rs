//! Clients that send more than a login needs: long methods, which end up in
//! the log, with a log pipe nobody reads; header blocks that never end; a body
//! announced far over the limit, with `Expect: 100-continue`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lab::server_process::{Launch, Server};
use login_metrics_testkit::clients::connect_from;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Report;

/// Floods `server` with `requests` requests whose method is `length` bytes of
/// `X`, on `connections` connections; their answers, by status.
async fn long_methods_flood(
    server: &Server,
    requests: usize,
    length: usize,
    connections: usize,
) -> BTreeMap<String, usize> {
    let method = reqwest::Method::from_bytes(&vec![b'X'; length]).expect("a token");
    let deadline = Instant::now() + Duration::from_secs(60);
    let senders: Vec<_> = (0..connections)
        .map(|_| {
            let (method, to) = (method.clone(), server.login);
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("a client");
                let mut answers = BTreeMap::<String, usize>::new();
                for _ in 0..requests / connections {
                    if Instant::now() > deadline {
                        break;
                    }
                    let answer = client
                        .request(method.clone(), format!("http://{to}/login"))
                        .send()
                        .await;
                    let key = answer.map_or_else(
                        |_| "closed".to_owned(),
                        |answer| answer.status().as_u16().to_string(),
                    );
                    *answers.entry(key).or_default() += 1;
                }
                answers
            })
        })
        .collect();
    let mut answers = BTreeMap::new();
    for sender in senders {
        for (status, count) in sender.await.unwrap_or_default() {
            *answers.entry(status).or_default() += count;
        }
    }
    answers
}

/// Two floods of long methods, each against a fresh server whose log pipe is
/// never read: 12,000 methods of 7,000 bytes (under the header limit), then
/// 3,000 of 390,000 bytes (over it, and under hyper's own default buffer).
pub(super) async fn long_methods(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    for (requests, length) in [(12_000, 7_000), (3_000, 390_000)] {
        let server = Server::launch(
            binary,
            &Launch {
                // The request lines are logged at info.
                env: vec![("RUST_LOG".into(), Some("info".into()))],
                unread_log: true,
                ..Launch::default()
            },
        )?;
        let (idle, _) = server.memory();
        let answers = long_methods_flood(&server, requests, length, 4).await;
        let (after, peak) = server.memory();
        let what = format!("long methods ({requests} × {length} bytes, log unread)");
        report.push((format!("{what}: answers"), format!("{answers:?}")));
        report.push((
            format!("{what}: resident memory idle / peak / after"),
            format!("{idle} / {peak} / {after} MiB"),
        ));
        report.push((
            format!("{what}: log_lines_dropped_total"),
            server.metric("log_lines_dropped_total").await,
        ));
    }
    Ok(())
}

/// Unfinished header blocks of this many bytes...
const HEADER_BLOCK: usize = 400_000;
/// ...on this many connections.
const HEADER_BLOCKS: usize = 200;

/// 200 connections each send 400 KB of one header and never end the block.
pub(super) async fn big_headers(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    let server = Server::start(binary)?;
    let (idle, _) = server.memory();
    let pad = vec![b'a'; HEADER_BLOCK];
    let mut clients = Vec::new();
    for index in 0..HEADER_BLOCKS {
        let (to, pad) = (server.login, pad.clone());
        let from = [127, 0, 0, 50 + u8::try_from(index % 4)?];
        clients.push(tokio::spawn(async move {
            let Ok(mut stream) = connect_from(from, to).await else {
                return "not connected".to_owned();
            };
            let _ = stream
                .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nX-Pad: ")
                .await;
            // The server may answer and close before it has read it all.
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&pad)).await;
            let mut answer = vec![0; 64];
            match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer)).await {
                Ok(Ok(n)) if n >= 12 => String::from_utf8_lossy(&answer[9..12]).into_owned(),
                Ok(_) => "closed".to_owned(),
                Err(_) => "still open".to_owned(),
            }
        }));
    }
    // While they hold: the most memory they made the server take.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (holding, peak) = server.memory();
    let mut answers = BTreeMap::<String, usize>::new();
    for client in clients {
        *answers.entry(client.await?).or_default() += 1;
    }
    let what = format!("big headers ({HEADER_BLOCKS} unfinished blocks of {HEADER_BLOCK} bytes)");
    report.push((
        format!("{what}: resident memory idle / holding / peak"),
        format!("{idle} / {holding} / {peak} MiB"),
    ));
    report.push((format!("{what}: answers"), format!("{answers:?}")));
    report.push((
        format!("{what}: login_connections_closed_total{{reason=\"too_large\"}}"),
        server
            .metric("login_connections_closed_total{reason=\"too_large\"}")
            .await,
    ));
    Ok(())
}

/// A login announcing a 1 MB body with `Expect: 100-continue`: what comes back
/// before any of the body is sent.
pub(super) async fn expect_100(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    let server = Server::start(binary)?;
    let mut stream = connect_from([127, 0, 0, 60], server.login).await?;
    stream
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await?;
    let mut answer = vec![0; 1024];
    let first = match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&answer[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Ok(_) => "closed".to_owned(),
        Err(_) => "nothing in 2 s".to_owned(),
    };
    report.push((
        "Expect: 100-continue, Content-Length 1 MB: the first answer".into(),
        first,
    ));
    Ok(())
}
