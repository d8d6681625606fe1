//! Clients that send and never read: pipelined requests, a receive buffer as
//! small as the kernel allows, and silence. The answers pile up in the socket
//! buffers; without a write timeout the connection is held as long as the
//! client likes, and four of them hold a budget of four.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use lab::server_process::{Launch, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use super::Report;

/// How long the readers keep at it: past the write timeout (10 s) and the time
/// their answers take to fill the buffers.
const HOLD_FOR: Duration = Duration::from_secs(25);
/// Requests each reader pipelines at most (37 bytes each).
const MOST: usize = 2_000_000;

/// Pipelines `request` to `to` from `from` without reading, until the server
/// closes the connection or [`HOLD_FOR`] runs out; returns when the server
/// closed it, if it did.
async fn never_read(from: [u8; 4], to: SocketAddr, request: &'static [u8]) -> Option<Duration> {
    let started = Instant::now();
    let socket = TcpSocket::new_v4().ok()?;
    socket.set_recv_buffer_size(4096).ok()?;
    socket.bind(SocketAddr::from((from, 0))).ok()?;
    let mut stream = socket.connect(to).await.ok()?;
    let batch = request.repeat(1000);
    let mut sent = 0;
    while sent < MOST {
        let left = HOLD_FOR.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.write_all(&batch)).await {
            Ok(Ok(())) => sent += 1000,
            // The server closed the connection.
            Ok(Err(_)) => return Some(started.elapsed()),
            // Still open, the attack is over.
            Err(_) => return None,
        }
    }
    None
}

/// When the connections were closed, for the table.
fn closed(ends: &[Option<Duration>]) -> String {
    let times: Vec<f64> = ends.iter().flatten().map(Duration::as_secs_f64).collect();
    if times.is_empty() {
        return format!(
            "0 of {}: still open after {} s",
            ends.len(),
            HOLD_FOR.as_secs()
        );
    }
    let (first, last) = times
        .iter()
        .fold((f64::MAX, 0.0_f64), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
    format!(
        "{} of {}, after {first:.1} to {last:.1} s",
        times.len(),
        ends.len()
    )
}

pub(super) async fn slow_readers(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    let server = Server::launch(
        binary,
        &Launch {
            args: vec!["--max-connections".into(), "4".into()],
            ..Launch::default()
        },
    )?;
    let readers: Vec<_> = (0..4_u8)
        .map(|n| {
            let to = server.login;
            tokio::spawn(never_read(
                [127, 0, 0, 20 + n],
                to,
                b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n",
            ))
        })
        .collect();
    let scraper = tokio::spawn(never_read(
        [127, 0, 0, 24],
        server.metrics,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    report.push((
        "slow readers: legitimate login while four hold a budget of four".into(),
        server.legitimate_login().await,
    ));
    report.push((
        "slow readers: scrape meanwhile".into(),
        server.scrape_figure().await,
    ));
    let mut ends = Vec::new();
    for reader in readers {
        ends.push(reader.await?);
    }
    report.push((
        "slow readers: login connections closed by the server".into(),
        closed(&ends),
    ));
    report.push((
        "slow readers: metrics connection closed by the server".into(),
        closed(&[scraper.await?]),
    ));
    report.push((
        "slow readers: legitimate login once they are closed or given up".into(),
        server.legitimate_login().await,
    ));
    for reason in ["write_timeout", "over_budget"] {
        report.push((
            format!("slow readers: login_connections_closed_total{{reason=\"{reason}\"}}"),
            server
                .metric(&format!(
                    "login_connections_closed_total{{reason=\"{reason}\"}}"
                ))
                .await,
        ));
    }
    Ok(())
}
