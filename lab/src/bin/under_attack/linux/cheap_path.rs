//! The cheap path under `wrk`: requests that cost no hash, with the throttle on and
//! off, and the throttle's own calls timed in this process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::Args;
use super::exchange::login_once;
use super::report::{Comparison, met};
use lab::server_process::{LOGIN, Launch, Server};
use lab::stats::median;
use login_metrics_testkit::clients::login_request;

/// The cheap path's goal: the throttle costs at most 3 % of throughput.
const CHEAP_PATH_GOAL: f64 = 0.97;

const MALFORMED: &str = r#"{"username":"#;

/// One `wrk` run: requests a second, answers that were 2xx (none expected:
/// each was hashed), and the server's CPU time per request.
pub(super) struct WrkRun {
    pub(super) rate: f64,
    pub(super) ok: u64,
    pub(super) cpu_per_request: Duration,
}

pub(super) fn cheap_path(binary: &Path, args: &Args) -> anyhow::Result<()> {
    ensure!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is not on PATH (Debian: apt install wrk)"
    );
    let script = |body: &str| -> anyhow::Result<tempfile::NamedTempFile> {
        let file = tempfile::Builder::new().suffix(".lua").tempfile()?;
        std::fs::write(
            file.path(),
            format!(
                "wrk.method = \"POST\"\nwrk.body = '{body}'\n\
                 wrk.headers[\"Content-Type\"] = \"application/json\"\n"
            ),
        )?;
        Ok(file)
    };
    let (malformed, good) = (script(MALFORMED)?, script(LOGIN)?);
    let columns = [
        "throttle on, malformed (400)",
        "throttle off, malformed (400)",
        "throttle on, burst spent (429)",
    ];
    let runtime = tokio::runtime::Runtime::new()?;
    // As shipped but for the throttle; logging at its default (a line per
    // request, and one more per refusal), then with the request lines off.
    for (log, filter) in [
        ("RUST_LOG unset (info: a line per request)", None),
        (
            "RUST_LOG=warn,login_server=info (no request lines)",
            Some("warn,login_server=info"),
        ),
    ] {
        let shipped = Launch {
            args: Vec::new(),
            env: vec![("RUST_LOG".to_owned(), filter.map(str::to_owned))],
            ..Launch::default()
        };
        let no_limit = Launch {
            args: vec!["--no-login-limit".to_owned()],
            ..shipped.clone()
        };
        let variants = [
            (&shipped, malformed.path(), false),
            (&no_limit, malformed.path(), false),
            (&shipped, good.path(), true),
        ];
        let mut runs: Vec<Vec<WrkRun>> = variants.iter().map(|_| Vec::new()).collect();
        for round in 1..=args.rounds {
            for (index, (launch, script, spend)) in variants.iter().enumerate() {
                eprintln!("cheap path, {log}, round {round}: {}...", columns[index]);
                let server = Server::launch(binary, launch)?;
                if *spend {
                    runtime.block_on(spend_the_burst(server.login))?;
                }
                runs[index].push(wrk(&server, script, args.wrk_seconds)?);
            }
        }
        cheap_path_table(log, &columns, &runs, args).print();
    }
    let (client, check) = throttle_calls();
    println!(
        "the throttle's own calls, timed in this process: Throttle::client {client:.0} ns, \
         Throttle::check on a spent bucket {check:.0} ns"
    );
    Ok(())
}

pub(super) fn cheap_path_table(
    log: &str,
    columns: &[&str],
    runs: &[Vec<WrkRun>],
    args: &Args,
) -> Comparison {
    let mut table = Comparison::new(
        format!(
            "cheap path, {log}: wrk -t1 -c8 -d{}s from 127.0.0.1, {} rounds, a fresh server \
             each run",
            args.wrk_seconds, args.rounds
        ),
        columns,
    );
    for round in 0..runs[0].len() {
        table.row(
            format!("round {}: requests/s", round + 1),
            runs.iter()
                .map(|r| format!("{:.0}", r[round].rate))
                .collect(),
        );
    }
    let medians: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(|run| run.rate)))
        .collect();
    table.row(
        "median requests/s",
        medians.iter().map(|m| format!("{m:.0}")).collect(),
    );
    table.row(
        "server CPU per request (median)",
        runs.iter()
            .map(|r| {
                let cpu = median(r.iter().map(|run| run.cpu_per_request.as_secs_f64() * 1e6));
                format!("{cpu:.1} µs")
            })
            .collect(),
    );
    table.row(
        "answers that were 200, hashed (all rounds)",
        runs.iter()
            .map(|r| r.iter().map(|run| run.ok).sum::<u64>().to_string())
            .collect(),
    );
    let same_requests = medians[0] / medians[1];
    let refused = medians[2] / medians[1];
    table.notes.push(format!(
        "goal: malformed requests, throttle on ÷ off: {:.1} % of the throughput, {}",
        same_requests * 100.0,
        met(same_requests >= CHEAP_PATH_GOAL)
    ));
    table.notes.push(format!(
        "goal: a refused (429) attempt ÷ the cheapest answer with no throttle (400): \
         {:.1} % of the throughput, {}",
        refused * 100.0,
        met(refused >= CHEAP_PATH_GOAL)
    ));
    table
}

/// Logins from 127.0.0.1, where `wrk` connects from, until one is refused.
pub(super) async fn spend_the_burst(to: SocketAddr) -> anyhow::Result<()> {
    let request = login_request(LOGIN).into_bytes();
    for _ in 0..100 {
        let (outcome, _) = login_once([127, 0, 0, 1], to, &request).await;
        if outcome.status() == Some(429) {
            return Ok(());
        }
    }
    bail!("100 logins from one address and none refused: is the throttle on?")
}

pub(super) fn wrk(server: &Server, script: &Path, seconds: u64) -> anyhow::Result<WrkRun> {
    let cpu = server.cpu();
    let output = Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{seconds}s"), "-s"])
        .arg(script)
        .arg(format!("http://{}/login", server.login))
        .output()?;
    let cpu = server.cpu().saturating_sub(cpu);
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let rate = field("Requests/sec:").with_context(|| format!("wrk said:\n{text}"))?;
    let total = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        .with_context(|| format!("wrk said:\n{text}"))?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a count"
    )]
    let non_2xx = field("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    // Every answer expected is a 4xx; with a spent burst, the throttle still
    // lets one attempt a second through, hashed and answered 200.
    let ok = total.saturating_sub(non_2xx);
    #[expect(clippy::cast_precision_loss, reason = "a count")]
    let cpu_per_request = Duration::from_secs_f64(cpu.as_secs_f64() / total.max(1) as f64);
    Ok(WrkRun {
        rate,
        ok,
        cpu_per_request,
    })
}

/// Nanoseconds per call of `Throttle::client` and of `Throttle::check` on
/// a spent bucket, a million calls each.
pub(super) fn throttle_calls() -> (f64, f64) {
    use login_metrics::throttle::Throttle;
    const CALLS: u32 = 1_000_000;
    let throttle = Throttle::default();
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let headers = axum::http::HeaderMap::new();
    let started = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(throttle.client(std::hint::black_box(peer), &headers));
    }
    let client = started.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS);
    let ip = peer.ip();
    while throttle.check(ip).is_ok() {}
    let started = Instant::now();
    for _ in 0..CALLS {
        let _ = std::hint::black_box(throttle.check(std::hint::black_box(ip)));
    }
    let check = started.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS);
    (client, check)
}
