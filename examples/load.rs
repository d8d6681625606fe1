//! A traffic generator for the login server: a mix of good, bad and malformed
//! logins over several connections, then a table of status codes, latency
//! percentiles and throughput.
//!
//! ```sh
//! cargo run --example login_server                      # one terminal
//! cargo run --release --example load                    # another: 10 s of a 70/25/5 mix
//! cargo run --release --example load -- --rate 20 --duration 120
//! cargo run --release --example load -- --requests 60 --good 3 --bad 2 --malformed 1
//! cargo run --release --example load -- --scenario password-guessing   # until Ctrl-C
//! ```
//!
//! Every run is bounded: by `--requests`, or else by `--duration` (10 s by
//! default, 20 minutes for the named scenarios, which make alerts fire), and
//! Ctrl-C stops it early with the same table. A request that gets no HTTP
//! answer at all (connection refused, reset, timed out) stops the run and makes
//! the exit status non-zero.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Parser;
use comfy_table::{CellAlignment, Table, presets};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use tokio::time::Instant;

// ANCHOR: args
/// Sends a mix of good, bad and malformed logins and reports what came back.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// The login endpoint.
    #[arg(long, default_value = "http://127.0.0.1:5000/login")]
    url: reqwest::Url,

    /// A named traffic pattern (mix, rate and connections), for making the
    /// dashboard and the alerts react; flags given as well override its values.
    #[arg(long, value_enum, default_value_t = Scenario::Normal)]
    scenario: Scenario,

    /// Weight of good logins (the demo user's credentials): answered 200.
    #[arg(long, value_parser = weight())]
    good: Option<u32>,

    /// Weight of logins with wrong credentials: answered 401.
    #[arg(long, value_parser = weight())]
    bad: Option<u32>,

    /// Weight of malformed bodies (truncated JSON): answered 400.
    #[arg(long, value_parser = weight())]
    malformed: Option<u32>,

    /// Requests per second over all connections [default: the scenario's; for
    /// `normal`, as fast as the server answers].
    #[arg(long, value_parser = positive)]
    rate: Option<f64>,

    /// Seconds to run, when --requests is not given [default: 10; 1200 for the
    /// scenarios other than `normal`].
    #[arg(long, value_parser = positive, conflicts_with = "requests")]
    duration: Option<f64>,

    /// Number of requests to send.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,

    /// Connections, each with one request in flight at a time [default: the
    /// scenario's; 8 for `normal`].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: Option<u16>,

    /// Threads for the generator itself [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,

    /// Keep sending after a request gets no answer (the exit status is still non-zero).
    #[arg(long)]
    keep_going: bool,

    /// No progress bar (it is also hidden when stdout is not a terminal).
    #[arg(long, short)]
    quiet: bool,

    /// Username of the good logins.
    #[arg(long, default_value = "user")]
    username: String,

    /// Password of the good logins.
    #[arg(long, default_value = "pass")]
    password: String,
}
// ANCHOR_END: args

// ANCHOR: scenarios
/// Situations the dashboard and the alerts of Step 7 should tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Everyday use: 70 % good logins, 25 % wrong passwords, 5 % malformed
    /// bodies, as fast as the server answers, for 10 s.
    Normal,
    /// One client guessing passwords: 90 % wrong passwords at 5 per second,
    /// past both thresholds of `LoginPasswordGuessing` (half of the logins, one
    /// 401 per second).
    PasswordGuessing,
    /// A client release that sends broken bodies: 30 % malformed at 5 per
    /// second, past `LoginMalformedRequests` (10 %, one every 10 seconds).
    BrokenClient,
    /// More logins at once than the cores can hash: 40 connections per core
    /// without pause, so each login waits for about 40 others and takes well
    /// over the 250 ms of the latency objective.
    Slow,
}

/// What a run sends, once the scenario and the flags are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mix {
    good: u32,
    bad: u32,
    malformed: u32,
    rate: Option<f64>,
    connections: u16,
    duration: f64,
}

impl Scenario {
    fn mix(self) -> Mix {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let long = 20.0 * 60.0;
        match self {
            Scenario::Normal => Mix {
                good: 70,
                bad: 25,
                malformed: 5,
                rate: None,
                connections: 8,
                duration: 10.0,
            },
            Scenario::PasswordGuessing => Mix {
                good: 1,
                bad: 9,
                malformed: 0,
                rate: Some(5.0),
                connections: 2,
                duration: long,
            },
            Scenario::BrokenClient => Mix {
                good: 6,
                bad: 1,
                malformed: 3,
                rate: Some(5.0),
                connections: 2,
                duration: long,
            },
            Scenario::Slow => Mix {
                good: 1,
                bad: 0,
                malformed: 0,
                rate: None,
                connections: u16::try_from(40 * cores).unwrap_or(1024).min(1024),
                duration: long,
            },
        }
    }
}
// ANCHOR_END: scenarios

impl Args {
    /// The scenario's values, with every flag given explicitly taking precedence.
    fn mix(&self) -> Mix {
        let preset = self.scenario.mix();
        Mix {
            good: self.good.unwrap_or(preset.good),
            bad: self.bad.unwrap_or(preset.bad),
            malformed: self.malformed.unwrap_or(preset.malformed),
            rate: self.rate.or(preset.rate),
            connections: self.connections.unwrap_or(preset.connections),
            duration: self.duration.unwrap_or(preset.duration),
        }
    }
}

fn weight() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(0..=1000)
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// The three kinds of request, in the order of their columns and bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Good,
    Bad,
    Malformed,
}

/// When the run stops.
#[derive(Debug, Clone, Copy)]
enum Limit {
    Requests(u64),
    Until(Instant),
}

/// Everything a connection needs to know, shared read-only.
struct Plan {
    url: reqwest::Url,
    started: Instant,
    bodies: [&'static str; 3],
    order: Vec<Kind>,
    limit: Limit,
    rate: Option<f64>,
    keep_going: bool,
}

/// What the connections update while they run.
#[derive(Default)]
struct Progress {
    next_ticket: AtomicU64,
    finished: AtomicU64,
    stop: AtomicBool,
}

// ANCHOR: bodies
/// The request bodies, built once. Bad credentials are the original
/// tutorial's; the malformed body is JSON cut off in the middle.
fn bodies(args: &Args) -> [&'static str; 3] {
    let good = serde_json::json!({ "username": args.username, "password": args.password });
    let bad = serde_json::json!({ "username": "wrong_user", "password": "wrong_pass" });
    let malformed = r#"{"username": "user", "password": "#.to_owned();
    // Leaked once, so that each request borrows its body instead of copying it.
    [good.to_string(), bad.to_string(), malformed].map(|body| &*body.leak())
}
// ANCHOR_END: bodies

// ANCHOR: order
/// The order in which kinds are sent: smooth weighted round-robin (the way
/// nginx spreads requests over weighted upstreams). Over one cycle of
/// `good + bad + malformed` requests each kind is sent exactly its weight, and
/// the kinds are interleaved rather than sent in blocks.
fn order(weights: [(Kind, u32); 3]) -> Vec<Kind> {
    let total: i64 = weights.iter().map(|(_, weight)| i64::from(*weight)).sum();
    let mut current = [0_i64; 3];
    (0..total)
        .map(|_| {
            for (credit, (_, weight)) in current.iter_mut().zip(&weights) {
                *credit += i64::from(*weight);
            }
            // The largest credit goes next; on a tie, the earlier kind.
            let next = (0..3)
                .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                .expect("three kinds");
            current[next] -= total;
            weights[next].0
        })
        .collect()
}
// ANCHOR_END: order

/// Answers per status code with their latencies, and what got no answer.
struct Tally {
    by_status: BTreeMap<u16, Histogram<u64>>,
    sent: [u64; 3],
    failed: u64,
    first_error: Option<anyhow::Error>,
}

impl Tally {
    fn new() -> Self {
        Self {
            by_status: BTreeMap::new(),
            sent: [0; 3],
            failed: 0,
            first_error: None,
        }
    }

    fn answered(&mut self, status: StatusCode, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.by_status
            .entry(status.as_u16())
            .or_insert_with(new_histogram)
            .saturating_record(micros.max(1));
    }

    fn merge(&mut self, other: Self) {
        for (status, histogram) in other.by_status {
            self.by_status
                .entry(status)
                .or_insert_with(new_histogram)
                .add(histogram)
                .expect("histograms with the same bounds");
        }
        for (mine, theirs) in self.sent.iter_mut().zip(other.sent) {
            *mine += theirs;
        }
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Latencies from 1 µs to 1 hour in microseconds, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

// ANCHOR: send
/// Sends one login and reads the whole answer, so the connection can be reused.
async fn send(client: &reqwest::Client, plan: &Plan, kind: Kind) -> anyhow::Result<StatusCode> {
    let response = client
        .post(plan.url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(plan.bodies[kind as usize])
        .send()
        .await?;
    let status = response.status();
    response.bytes().await?;
    Ok(status)
}
// ANCHOR_END: send

// ANCHOR: connection
/// One connection: takes the next ticket, waits for its turn when a rate is
/// set, sends, records; until the limit is reached.
async fn connection(client: reqwest::Client, plan: Arc<Plan>, progress: Arc<Progress>) -> Tally {
    let mut tally = Tally::new();
    while !progress.stop.load(Ordering::Relaxed) {
        let ticket = progress.next_ticket.fetch_add(1, Ordering::Relaxed);
        if let Limit::Requests(count) = plan.limit
            && ticket >= count
        {
            break;
        }
        if let Some(rate) = plan.rate {
            // Ticket n is due n/rate seconds after the start, whoever sends it.
            #[expect(clippy::cast_precision_loss, reason = "tickets stay far below 2^52")]
            let due = plan.started + Duration::from_secs_f64(ticket as f64 / rate);
            if let Limit::Until(deadline) = plan.limit
                && due >= deadline
            {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        if let Limit::Until(deadline) = plan.limit
            && Instant::now() >= deadline
        {
            break;
        }
        let kind = plan.order[usize::try_from(ticket).unwrap_or(usize::MAX) % plan.order.len()];
        let sent = Instant::now();
        match send(&client, &plan, kind).await {
            Ok(status) => tally.answered(status, sent.elapsed()),
            Err(error) => {
                tally.failed += 1;
                tally.first_error.get_or_insert(error);
                if !plan.keep_going {
                    progress.stop.store(true, Ordering::Relaxed);
                }
            }
        }
        tally.sent[kind as usize] += 1;
        progress.finished.fetch_add(1, Ordering::Relaxed);
    }
    tally
}
// ANCHOR_END: connection

fn progress_bar(args: &Args, limit: Limit, started: Instant) -> ProgressBar {
    if args.quiet || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    match limit {
        Limit::Requests(count) => ProgressBar::new(count).with_style(
            ProgressStyle::with_template(
                "{elapsed:>4} [{wide_bar}] {pos}/{len} requests ({per_sec}, eta {eta})",
            )
            .expect("valid template"),
        ),
        Limit::Until(deadline) => {
            let millis = deadline.duration_since(started).as_millis();
            ProgressBar::new(u64::try_from(millis).unwrap_or(u64::MAX)).with_style(
                ProgressStyle::with_template("{elapsed:>4} [{wide_bar}] {msg}")
                    .expect("valid template"),
            )
        }
    }
}

/// Redraws the progress bar ten times a second from the shared counters, so
/// the connections never touch the bar themselves.
async fn show_progress(bar: ProgressBar, progress: Arc<Progress>, limit: Limit, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let finished = progress.finished.load(Ordering::Relaxed);
        match limit {
            Limit::Requests(_) => bar.set_position(finished),
            Limit::Until(_) => {
                let millis = started.elapsed().as_millis();
                bar.set_position(u64::try_from(millis).unwrap_or(u64::MAX));
                bar.set_message(format!("{finished} requests"));
            }
        }
    }
}

// ANCHOR: report
/// Prints one row per status code (and one for requests with no answer) with
/// its count, share and latency percentiles, then the throughput.
#[expect(clippy::cast_precision_loss, reason = "counts stay far below 2^52")]
fn report(args: &Args, mix: &Mix, tally: &Tally, elapsed: Duration, cpu: Option<Duration>) {
    let latency = |micros: u64| format!("{:.1?}", Duration::from_micros(micros));
    let answered: u64 = tally.by_status.values().map(Histogram::len).sum();
    let total = answered + tally.failed;
    let share = |count: u64| format!("{:.1} %", 100.0 * count as f64 / total.max(1) as f64);

    let mut table = Table::new();
    table
        .load_preset(presets::ASCII_MARKDOWN)
        .set_header(["status", "count", "share", "p50", "p90", "p99", "max"]);
    let mut all = new_histogram();
    for (code, histogram) in &tally.by_status {
        let reason = StatusCode::from_u16(*code)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("");
        table.add_row([
            format!("{code} {reason}"),
            histogram.len().to_string(),
            share(histogram.len()),
            latency(histogram.value_at_quantile(0.50)),
            latency(histogram.value_at_quantile(0.90)),
            latency(histogram.value_at_quantile(0.99)),
            latency(histogram.max()),
        ]);
        all.add(histogram).expect("histograms with the same bounds");
    }
    if tally.failed > 0 {
        table.add_row([
            "no answer".to_owned(),
            tally.failed.to_string(),
            share(tally.failed),
        ]);
    }
    let mut total_row = vec!["all".to_owned(), total.to_string(), share(total)];
    if !all.is_empty() {
        total_row.extend([0.50, 0.90, 0.99].map(|q| latency(all.value_at_quantile(q))));
        total_row.push(latency(all.max()));
    }
    table.add_row(total_row);
    for column in 1..7 {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }

    let [good, bad, malformed] = tally.sent;
    println!(
        "Sent {good} good, {bad} bad and {malformed} malformed logins to {}",
        args.url
    );
    println!("{table}");
    println!(
        "{answered} answers in {:.2} s over {} connections: {:.1} requests/s",
        elapsed.as_secs_f64(),
        mix.connections,
        answered as f64 / elapsed.as_secs_f64()
    );
    // A generator that is busy all the time measures itself, not the server.
    if let Some(cpu) = cpu {
        let threads = args.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            usize::from,
        );
        let busy = cpu.as_secs_f64() / (elapsed.as_secs_f64() * threads as f64);
        print!("Generator CPU: {:.2} s", cpu.as_secs_f64());
        if elapsed < Duration::from_secs(1) {
            println!();
            return;
        }
        println!(", {:.0} % of its {threads} thread(s)", 100.0 * busy);
        if busy > 0.9 && mix.rate.is_none() {
            println!(
                "The generator was the limit: the server may answer faster than this. \
                 Give it more --threads, or run it on another machine."
            );
        }
    }
}
// ANCHOR_END: report

// ANCHOR: run
async fn run(args: Args) -> anyhow::Result<()> {
    let mix = args.mix();
    ensure!(
        mix.good + mix.bad + mix.malformed > 0,
        "at least one of --good, --bad and --malformed must be above 0"
    );
    let started = Instant::now();
    let cpu_at_start = cpu_time::ProcessTime::try_now().ok();
    let limit = match args.requests {
        Some(count) => Limit::Requests(count),
        None => Limit::Until(started + Duration::from_secs_f64(mix.duration)),
    };
    let plan = Arc::new(Plan {
        url: args.url.clone(),
        started,
        bodies: bodies(&args),
        order: order([
            (Kind::Good, mix.good),
            (Kind::Bad, mix.bad),
            (Kind::Malformed, mix.malformed),
        ]),
        limit,
        rate: mix.rate,
        keep_going: args.keep_going,
    });
    // One client: its pool keeps one connection per task alive between requests.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(usize::from(mix.connections))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?;

    let progress = Arc::new(Progress::default());
    let bar = progress_bar(&args, limit, started);
    let ticker = tokio::spawn(show_progress(
        bar.clone(),
        Arc::clone(&progress),
        limit,
        started,
    ));
    // Ctrl-C ends the run early; the table is still printed.
    let interrupt = {
        let progress = Arc::clone(&progress);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                progress.stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let connections: Vec<_> = (0..mix.connections)
        .map(|_| {
            tokio::spawn(connection(
                client.clone(),
                Arc::clone(&plan),
                Arc::clone(&progress),
            ))
        })
        .collect();
    let mut tally = Tally::new();
    for connection in connections {
        tally.merge(connection.await.context("a connection task panicked")?);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_at_start.and_then(|start| start.try_elapsed().ok());
    ticker.abort();
    interrupt.abort();
    bar.finish_and_clear();

    report(&args, &mix, &tally, elapsed, cpu);
    match tally.first_error {
        Some(error) => Err(error.context(format!(
            "no answer from {} to {} request(s); is the login server running \
             (`cargo run --example login_server`)?",
            args.url, tally.failed
        ))),
        None => Ok(()),
    }
}
// ANCHOR_END: run

fn main() -> ExitCode {
    // `{:#}` prints the error and its causes on one line, without a backtrace.
    match start(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    let mut runtime = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(threads));
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all().build()?.block_on(run(args))
}
