//! Clients that go for the metrics listener: idle sockets that take its budget,
//! and a flood of scrapes on the cores the logins need.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lab::server_process::{LOGIN, Launch, Server, WAIT};
use lab::stats::{median, ms};
use login_metrics_testkit::clients::{connect_from, login_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Report;

/// How long the holders hold, and the scrapes are counted.
const HOLD_FOR: Duration = Duration::from_secs(15);
/// Connections each holding address keeps open.
const HELD: usize = 40;

/// Scrapes every 250 ms from 127.0.0.1 until `stop`: (answered, attempted).
async fn scrape_meanwhile(server: &Server, stop: &AtomicBool) -> (u64, u64) {
    let (mut answered, mut attempted) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        attempted += 1;
        if server.scrape().await.is_ok() {
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (answered, attempted)
}

/// `addresses` addresses (127.0.1.1 up) each hold [`HELD`] connections to the
/// metrics listener, opening each again as soon as it is closed, for
/// [`HOLD_FOR`], while a scraper from 127.0.0.1 scrapes every 250 ms.
pub(super) async fn metrics_hold(
    binary: &Path,
    report: &mut Report,
    addresses: u8,
    allow: bool,
) -> anyhow::Result<()> {
    let what = format!(
        "metrics hold ({addresses} address{}, {HELD} connections each{})",
        if addresses == 1 { "" } else { "es" },
        if allow {
            ", --metrics-allow 127.0.0.1"
        } else {
            ""
        }
    );
    let launch = Launch {
        args: if allow {
            vec!["--metrics-allow".into(), "127.0.0.1".into()]
        } else {
            Vec::new()
        },
        ..Launch::default()
    };
    let server = match Server::launch(binary, &launch) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("{error}");
            report.push((
                format!("{what}: scrapes answered"),
                "n/a (does not start with these flags)".to_owned(),
            ));
            return Ok(());
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut holders = Vec::new();
    for address in 1..=addresses {
        for _ in 0..HELD {
            let (stop, to) = (Arc::clone(&stop), server.metrics);
            holders.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Ok(mut stream)) = tokio::time::timeout(
                        Duration::from_secs(1),
                        connect_from([127, 0, 1, address], to),
                    )
                    .await
                    else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    // Idle until the server closes it, or the attack ends.
                    let mut byte = [0; 1];
                    while !stop.load(Ordering::Relaxed) {
                        let read = tokio::time::timeout(
                            Duration::from_millis(200),
                            stream.read(&mut byte),
                        )
                        .await;
                        if matches!(read, Ok(Ok(0) | Err(_))) {
                            break;
                        }
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let timer = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            tokio::time::sleep(HOLD_FOR).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let (answered, attempted) = scrape_meanwhile(&server, &stop).await;
    timer.await?;
    for holder in holders {
        let _ = holder.await;
    }
    report.push((
        format!("{what}: scrapes answered"),
        format!("{answered} of {attempted}"),
    ));
    let mut counted = Vec::new();
    for reason in ["client_over_budget", "over_budget", "not_allowed"] {
        let series = format!("login_metrics_connections_refused_total{{reason=\"{reason}\"}}");
        counted.push(format!("{reason} {}", server.metric(&series).await));
    }
    report.push((
        format!("{what}: login_metrics_connections_refused_total"),
        counted.join(", "),
    ));
    report.push((
        format!("{what}: warnings logged"),
        server
            .log_lines_containing("metrics listener refused")
            .to_string(),
    ));
    Ok(())
}

/// One good login on a new connection from 127.0.0.9: its latency, if it was
/// answered 200.
async fn timed_login(server: &Server) -> Option<Duration> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = connect_from([127, 0, 0, 9], server.login).await.ok()?;
        stream
            .write_all(login_request(LOGIN).as_bytes())
            .await
            .ok()?;
        let mut answer = vec![0; 1024];
        let n = stream.read(&mut answer).await.ok()?;
        answer[..n]
            .starts_with(b"HTTP/1.1 200")
            .then(|| started.elapsed())
    };
    tokio::time::timeout(WAIT, exchange).await.ok().flatten()
}

/// Logins back to back for `over`: their latencies, in milliseconds.
async fn logins_for(server: &Server, over: Duration) -> Vec<f64> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < over {
        if let Some(latency) = timed_login(server).await {
            latencies.push(latency.as_secs_f64() * 1e3);
        }
    }
    latencies
}

/// Login latency alone, then with eight connections scraping back to back.
pub(super) async fn metrics_flood(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    let server = Arc::new(Server::launch(
        binary,
        &Launch {
            // One address logs in back to back: no throttle in the way.
            args: vec!["--no-login-limit".into()],
            ..Launch::default()
        },
    )?);
    let quiet = logins_for(&server, Duration::from_secs(5)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let scraped = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let flooders: Vec<_> = (0..8)
        .map(|_| {
            let (stop, scraped, to) = (Arc::clone(&stop), Arc::clone(&scraped), server.metrics);
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .expect("a client");
                while !stop.load(Ordering::Relaxed) {
                    let answer = client.get(format!("http://{to}/metrics")).send().await;
                    if let Ok(answer) = answer
                        && answer.bytes().await.is_ok()
                    {
                        scraped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let flooded = logins_for(&server, Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for flooder in flooders {
        let _ = flooder.await;
    }
    report.push((
        "metrics flood: login median, quiet → 8 connections scraping".into(),
        format!(
            "{} ({} logins) → {} ({} logins)",
            median_ms(&quiet),
            quiet.len(),
            median_ms(&flooded),
            flooded.len()
        ),
    ));
    report.push((
        "metrics flood: scrapes answered per second".into(),
        format!(
            "{:.0}",
            lab::stats::per_second(scraped.load(Ordering::Relaxed), elapsed)
        ),
    ));
    Ok(())
}

/// The median of latencies in milliseconds, for the table.
fn median_ms(latencies: &[f64]) -> String {
    if latencies.is_empty() {
        return "no login answered".to_owned();
    }
    ms(Duration::from_secs_f64(
        median(latencies.iter().copied()) / 1e3,
    ))
}
