//! The hostile clients of the appendix "Hostile clients", played against the
//! real `login_server` binary over loopback, each attack bounded in count and
//! time; about six minutes per server.
//!
//! ```sh
//! cargo run -p lab --release --bin attack                              # this server
//! cargo run -p lab --release --bin attack -- --before OLD_LOGIN_SERVER # and an old one, side by side
//! cargo run -p lab --release --bin attack -- --only slow-readers,expect-100   # some attacks
//! ```
//!
//! Each attack starts a fresh server process under `ulimit -n 4096`, so that a
//! few thousand connections reach its descriptor limit, and measures from
//! outside: scrapes, a legitimate login, the process's descriptors, memory and
//! CPU time from `/proc`, and the server's own metrics. A figure an old server
//! cannot give (it lacks the metric, or the flag the attack needs) prints as
//! "n/a".
//!
//! - **slowloris**: 5,000 connections from 127.0.0.2-5 send half a request
//!   header and go silent, reconnecting when cut off, for 15 s; then SIGTERM
//!   with the attack still on.
//! - **slow bodies**: 1,000 clients send a login's 37-byte body one byte every
//!   500 ms.
//! - **hang-ups**: 3,000 logins, each closed right after it is sent.
//! - **404 flood**: 5 s of requests to distinct unknown paths.
//! - **login flood**: 512 connections of good logins for 10 s.
//! - **slow readers**: four clients pipeline requests with a tiny receive
//!   buffer and never read, against `--max-connections 4`, for 25 s; a fifth
//!   does the same to `/metrics`.
//! - **metrics hold**: one address holds 40 connections to the metrics listener,
//!   reopening each as it is closed, for 15 s while 127.0.0.1 scrapes every
//!   250 ms; then eight addresses, with `--metrics-allow 127.0.0.1`.
//! - **long methods**: 12,000 requests with a 7,000-byte method, then 3,000
//!   with a 390,000-byte one, each against a server whose log pipe is not read.
//! - **big headers**: 200 connections send 400 KB of a header and never end it.
//! - **expect-100**, **forwarded-for**, **array-login**, **mapped-peer**: one
//!   exchange each (a body announced at 1 MB with `Expect: 100-continue`; 50
//!   guesses behind a trusted proxy with a rotating entry left of an `ip:port`
//!   hop; `["user","pass"]`; an IPv4 client of a `[::]` listener).
//! - **metrics flood**: login latency for 5 s, then for 10 s with eight
//!   connections scraping back to back.
//!
//! Linux only (it reads `/proc`).

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("attack reads /proc, so it runs on Linux only");
}

#[cfg(target_os = "linux")]
mod linux {
    mod oversized;
    mod scrapes;
    mod slow_readers;
    mod steering;

    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use clap::Parser;
    use comfy_table::{Table, presets};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use lab::server_process::{LOGIN, OPEN_FILES, Server, WAIT, login_server_binary};
    use lab::stats::ms;
    use login_metrics_testkit::clients::{connect_from, login_request};
    use login_metrics_testkit::exposition::sample;

    /// Plays hostile clients against the login server and prints what it saw.
    #[derive(Debug, Parser)]
    struct Args {
        /// An older `login_server` binary to run the same attacks against,
        /// shown in a column of its own.
        #[arg(long)]
        before: Option<PathBuf>,
        /// The server to attack [default: this repository's `login_server`
        /// example, built in release mode].
        #[arg(long)]
        server: Option<PathBuf>,
        /// Run only the attacks whose names contain one of these, separated by
        /// commas (idle, slowloris, slow-bodies, hang-ups, 404-flood,
        /// login-flood, slow-readers, metrics-hold, long-methods, big-headers,
        /// expect-100, forwarded-for, array-login, mapped-peer, metrics-flood).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    }

    const SLOWLORIS: usize = 5000;
    const SLOWLORIS_FOR: Duration = Duration::from_secs(15);
    const SLOW_BODIES: usize = 1000;
    const BYTE_EVERY: Duration = Duration::from_millis(500);
    const HANG_UPS: usize = 3000;
    const FLOOD_404_FOR: Duration = Duration::from_secs(5);
    const FLOOD_CONNECTIONS: usize = 512;
    const FLOOD_FOR: Duration = Duration::from_secs(10);
    const HALF_A_HEADER: &[u8] = b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: appl";

    pub fn main() -> anyhow::Result<()> {
        let args = Args::parse();
        if cfg!(debug_assertions) {
            eprintln!("warning: a debug build measures the compiler, not the code; use --release");
        }
        // The attacker needs descriptors too: thousands of connections.
        let _ = login_metrics::limits::raise_fd_limit();
        let after = login_server_binary(args.server)?;
        let runtime = tokio::runtime::Runtime::new()?;
        let mut columns = Vec::new();
        if let Some(before) = &args.before {
            columns.push(("before", runtime.block_on(attack_all(before, &args.only))?));
        }
        columns.push(("after", runtime.block_on(attack_all(&after, &args.only))?));
        print_table(&columns);
        Ok(())
    }

    /// One figure per row, in the order measured.
    type Report = Vec<(String, String)>;

    async fn attack_all(binary: &Path, only: &[String]) -> anyhow::Result<Report> {
        let mut report = Report::new();
        let wanted =
            |name: &str| only.is_empty() || only.iter().any(|only| name.contains(only.as_str()));
        eprintln!("{}:", binary.display());
        if wanted("idle") {
            eprintln!("idle...");
            idle(binary, &mut report).await?;
        }
        if wanted("slowloris") {
            eprintln!("slowloris ({SLOWLORIS} connections, {SLOWLORIS_FOR:?}) and SIGTERM...");
            slowloris(binary, &mut report).await?;
        }
        if wanted("slow-bodies") {
            eprintln!("slow bodies ({SLOW_BODIES})...");
            slow_bodies(binary, &mut report).await?;
        }
        if wanted("hang-ups") {
            eprintln!("hang-ups ({HANG_UPS})...");
            hang_ups(binary, &mut report).await?;
        }
        if wanted("404-flood") {
            eprintln!("404 flood ({FLOOD_404_FOR:?})...");
            flood_404(binary, &mut report).await?;
        }
        if wanted("login-flood") {
            eprintln!("login flood ({FLOOD_CONNECTIONS} connections, {FLOOD_FOR:?})...");
            login_flood(binary, &mut report).await?;
        }
        if wanted("slow-readers") {
            eprintln!("slow readers...");
            slow_readers::slow_readers(binary, &mut report).await?;
        }
        if wanted("metrics-hold") {
            eprintln!("metrics hold...");
            scrapes::metrics_hold(binary, &mut report, 1, false).await?;
            scrapes::metrics_hold(binary, &mut report, 8, true).await?;
        }
        if wanted("long-methods") {
            eprintln!("long methods...");
            oversized::long_methods(binary, &mut report).await?;
        }
        if wanted("big-headers") {
            eprintln!("big headers...");
            oversized::big_headers(binary, &mut report).await?;
        }
        if wanted("expect-100") {
            oversized::expect_100(binary, &mut report).await?;
        }
        if wanted("forwarded-for") {
            steering::forwarded_for(binary, &mut report).await?;
        }
        if wanted("array-login") {
            steering::array_login(binary, &mut report).await?;
        }
        if wanted("mapped-peer") {
            steering::mapped_peer(binary, &mut report).await?;
        }
        if wanted("metrics-flood") {
            eprintln!("metrics flood...");
            scrapes::metrics_flood(binary, &mut report).await?;
        }
        Ok(report)
    }

    async fn idle(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
        let server = Server::start(binary)?;
        report.push(("idle: scrape".into(), server.scrape_figure().await));
        report.push((
            "idle: legitimate login".into(),
            server.legitimate_login().await,
        ));
        let (rss, _) = server.memory();
        report.push(("idle: resident memory".into(), format!("{rss} MiB")));
        Ok(())
    }

    async fn slowloris(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
        let mut server = Server::start(binary)?;
        let stop = Arc::new(AtomicBool::new(false));
        let cut_off = Arc::new(AtomicU64::new(0));
        let mut attackers = Vec::new();
        for index in 0..SLOWLORIS {
            let (stop, cut_off, to) = (Arc::clone(&stop), Arc::clone(&cut_off), server.login);
            let client = 2 + u8::try_from(index % 4)?;
            attackers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Ok(mut stream)) = tokio::time::timeout(
                        Duration::from_secs(2),
                        connect_from([127, 0, 0, client], to),
                    )
                    .await
                    else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let _ = stream.write_all(HALF_A_HEADER).await;
                    // Silence until the server closes it or the attack ends.
                    let mut byte = [0; 1];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(read) =
                            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte))
                                .await
                        {
                            if matches!(read, Ok(0) | Err(_)) {
                                cut_off.fetch_add(1, Ordering::Relaxed);
                            }
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        report.push((
            "slowloris: open descriptors after 5 s".into(),
            server.open_fds().to_string(),
        ));
        report.push(("slowloris: scrape".into(), server.scrape_figure().await));
        report.push((
            "slowloris: legitimate login".into(),
            server.legitimate_login().await,
        ));
        tokio::time::sleep(SLOWLORIS_FOR.saturating_sub(started.elapsed())).await;
        report.push((
            format!(
                "slowloris: connections cut off by the server in {} s",
                SLOWLORIS_FOR.as_secs()
            ),
            cut_off.load(Ordering::Relaxed).to_string(),
        ));
        for reason in ["over_budget", "header_timeout"] {
            report.push((
                format!("slowloris: login_connections_closed_total{{reason=\"{reason}\"}}"),
                server
                    .metric(&format!(
                        "login_connections_closed_total{{reason=\"{reason}\"}}"
                    ))
                    .await,
            ));
        }
        report.push((
            "slowloris: \"Too many open files\" log lines".into(),
            server
                .log_lines_containing("Too many open files")
                .to_string(),
        ));
        // SIGTERM with the attack still on.
        let exit = tokio::task::block_in_place(|| server.terminate(WAIT));
        report.push(("slowloris: SIGTERM (grace: 8 s, or none)".into(), exit));
        stop.store(true, Ordering::Relaxed);
        for attacker in attackers {
            let _ = attacker.await;
        }
        Ok(())
    }

    async fn slow_bodies(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
        let server = Server::start(binary)?;
        let cpu_before = server.cpu();
        let started = Instant::now();
        let mut clients = Vec::new();
        for index in 0..SLOW_BODIES {
            let to = server.login;
            let client = 6 + u8::try_from(index % 2)?;
            clients.push(tokio::spawn(async move {
                let Ok(mut stream) = connect_from([127, 0, 0, client], to).await else {
                    return Some(("not connected".to_owned(), started.elapsed()));
                };
                let head = format!(
                    "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n",
                    LOGIN.len()
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return Some(("closed before the body".to_owned(), started.elapsed()));
                }
                for byte in LOGIN.bytes() {
                    if stream.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(BYTE_EVERY).await;
                }
                let mut answer = vec![0; 256];
                let status = match tokio::time::timeout(WAIT, stream.read(&mut answer)).await {
                    Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&answer[..n])
                        .chars()
                        .skip(9)
                        .take(3)
                        .collect::<String>(),
                    // Closing a socket with unread bytes sends a reset, which
                    // can overtake the answer.
                    Ok(_) => "closed or reset before the answer".to_owned(),
                    Err(_) => "no answer".to_owned(),
                };
                Some((status, started.elapsed()))
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        report.push((
            "slow bodies: legitimate login while they trickle".into(),
            server.legitimate_login().await,
        ));
        // The bodies are complete after 37 × 500 ms: a login just after that
        // meets whatever they left queued.
        let complete = BYTE_EVERY * u32::try_from(LOGIN.len())? + Duration::from_millis(500);
        tokio::time::sleep(complete.saturating_sub(started.elapsed())).await;
        report.push((
            format!(
                "slow bodies: legitimate login at {:.1} s, as the bodies complete",
                complete.as_secs_f64()
            ),
            server.legitimate_login().await,
        ));
        let mut statuses = std::collections::BTreeMap::<String, usize>::new();
        let mut last = Duration::ZERO;
        for client in clients {
            if let Ok(Some((status, at))) = client.await {
                *statuses.entry(status).or_default() += 1;
                last = last.max(at);
            }
        }
        report.push((
            "slow bodies: answers, and when the last came".into(),
            format!("{statuses:?} by {:.1} s", last.as_secs_f64()),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        report.push((
            "slow bodies: server CPU time (≈ hashes × 12.5 ms)".into(),
            format!(
                "{:.1} s",
                server.cpu().saturating_sub(cpu_before).as_secs_f64()
            ),
        ));
        Ok(())
    }

    async fn hang_ups(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
        let server = Server::start(binary)?;
        let request = login_request(LOGIN);
        let sent = Arc::new(AtomicU64::new(0));
        let mut senders = Vec::new();
        for _ in 0..64 {
            let (sent, request, to) = (Arc::clone(&sent), request.clone(), server.login);
            senders.push(tokio::spawn(async move {
                while sent.fetch_add(1, Ordering::Relaxed) < HANG_UPS as u64 {
                    if let Ok(mut stream) = connect_from([127, 0, 0, 8], to).await {
                        let _ = stream.write_all(request.as_bytes()).await;
                    }
                }
            }));
        }
        for sender in senders {
            let _ = sender.await;
        }
        let left = Instant::now();
        let cpu_left = server.cpu();
        let login = server.legitimate_login().await;
        // Busy until the CPU time stops growing (two quiet 250 ms samples).
        let mut quiet = 0;
        let mut last = server.cpu();
        while quiet < 2 && left.elapsed() < WAIT {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = server.cpu();
            quiet = if now.saturating_sub(last) < Duration::from_millis(25) {
                quiet + 1
            } else {
                0
            };
            last = now;
        }
        let busy = left.elapsed().saturating_sub(Duration::from_millis(500));
        report.push((
            "hang-ups: server busy after the last client left".into(),
            format!(
                "{:.1} s, {:.1} CPU-s",
                busy.as_secs_f64(),
                last.saturating_sub(cpu_left).as_secs_f64()
            ),
        ));
        report.push(("hang-ups: legitimate login just after".into(), login));
        let text = server
            .scrape()
            .await
            .map(|(_, text)| text)
            .unwrap_or_default();
        let total: f64 = text
            .lines()
            .filter(|line| line.starts_with("login_requests_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        report.push((
            format!("hang-ups: login_requests_total, of {HANG_UPS}"),
            format!("{total}"),
        ));
        report.push((
            "hang-ups: of which 499".into(),
            sample(&text, "login_requests_total{status_code=\"499\"}")
                .map_or("n/a".into(), |v| v.to_string()),
        ));
        let reasons: Vec<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix("login_connections_closed_total{reason=\""))
            .filter(|line| !line.ends_with(" 0"))
            .map(|line| line.replace("\"}", ""))
            .collect();
        report.push((
            "hang-ups: login_connections_closed_total".into(),
            if reasons.is_empty() {
                "n/a".to_owned()
            } else {
                reasons.join(", ")
            },
        ));
        Ok(())
    }

    async fn flood_404(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
        let server = Server::start(binary)?;
        let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
        let before = series(&server.scrape().await.map(|(_, t)| t).unwrap_or_default());
        let answered = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut flooders = Vec::new();
        for task in 0..8 {
            let (answered, to) = (Arc::clone(&answered), server.login);
            flooders.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .expect("client");
                let mut index = 0_u64;
                while started.elapsed() < FLOOD_404_FOR {
                    index += 1;
                    let url = format!("http://{to}/scan/{task}/{index}");
                    if client.get(url).send().await.is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for flooder in flooders {
            let _ = flooder.await;
        }
        #[expect(clippy::cast_precision_loss, reason = "counts are small")]
        let rate = answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        let text = server.scrape().await.map(|(_, t)| t).unwrap_or_default();
        report.push(("404 flood: answers/s".into(), format!("{rate:.0}")));
        report.push((
            "404 flood: login_unmatched_requests_total".into(),
            sample(&text, "login_unmatched_requests_total").map_or("n/a".into(), |v| v.to_string()),
        ));
        report.push((
            "404 flood: series before → after".into(),
            format!("{before} → {}", series(&text)),
        ));
        Ok(())
    }

    async fn login_flood(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
        let server = Arc::new(Server::start(binary)?);
        let (_, idle_peak) = server.memory();
        let answered = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut clients = Vec::new();
        for index in 0..FLOOD_CONNECTIONS {
            let (answered, to) = (Arc::clone(&answered), server.login);
            let client = 10 + u8::try_from(index % 4)?;
            clients.push(tokio::spawn(async move {
                let Ok(mut stream) = connect_from([127, 0, 0, client], to).await else {
                    return;
                };
                let request = login_request(LOGIN);
                let mut buffer = vec![0; 1024];
                while started.elapsed() < FLOOD_FOR {
                    if stream.write_all(request.as_bytes()).await.is_err() {
                        return;
                    }
                    match tokio::time::timeout(WAIT, stream.read(&mut buffer)).await {
                        Ok(Ok(n)) if n > 0 => answered.fetch_add(1, Ordering::Relaxed),
                        _ => return,
                    };
                }
            }));
        }
        let mut worst_scrape = Duration::ZERO;
        let mut failed_scrapes = 0;
        let mut peak_rss = 0;
        while started.elapsed() < FLOOD_FOR {
            match server.scrape().await {
                Ok((latency, _)) => worst_scrape = worst_scrape.max(latency),
                Err(_) => failed_scrapes += 1,
            }
            peak_rss = peak_rss.max(server.memory().0);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for client in clients {
            let _ = client.await;
        }
        #[expect(clippy::cast_precision_loss, reason = "counts are small")]
        let rate = answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        report.push(("login flood: logins/s".into(), format!("{rate:.0}")));
        report.push((
            "login flood: worst scrape (failed)".into(),
            format!("{} ({failed_scrapes})", ms(worst_scrape)),
        ));
        let (_, peak) = server.memory();
        report.push((
            "login flood: peak resident memory (idle peak)".into(),
            format!("{} MiB ({idle_peak} MiB)", peak.max(peak_rss)),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        report.push((
            "login flood: resident memory 5 s later".into(),
            format!("{} MiB", server.memory().0),
        ));
        let text = server.scrape().await.map(|(_, t)| t).unwrap_or_default();
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("login_request_latency_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        if let (Some(one), Some(all)) = (bucket("1"), bucket("+Inf")) {
            let top = text
                .lines()
                .filter_map(|line| {
                    let rest = line.strip_prefix("login_request_latency_seconds_bucket{le=\"")?;
                    let (le, _) = rest.split_once('"')?;
                    (le != "+Inf").then(|| le.to_owned())
                })
                .next_back()
                .unwrap_or_default();
            let last = bucket(&top).unwrap_or(all);
            report.push((
                "login flood: logins over 1 s; over the last bucket".into(),
                format!("{} of {all}; {} over {top} s", all - one, all - last),
            ));
        }
        Ok(())
    }

    fn print_table(columns: &[(&str, Report)]) {
        let mut table = Table::new();
        table.load_preset(presets::ASCII_MARKDOWN);
        let mut header = vec!["figure".to_owned()];
        header.extend(columns.iter().map(|(name, _)| (*name).to_owned()));
        table.set_header(header);
        let rows = columns.last().map_or(0, |(_, report)| report.len());
        for row in 0..rows {
            let figure = &columns.last().expect("a column").1[row].0;
            let mut cells = vec![figure.clone()];
            for (_, report) in columns {
                cells.push(
                    report
                        .iter()
                        .find(|(name, _)| name == figure)
                        .map_or(String::new(), |(_, value)| value.clone()),
                );
            }
            table.add_row(cells);
        }
        println!(
            "cores: {}, each server under `ulimit -n {OPEN_FILES}`",
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        );
        println!("{table}");
    }
}
