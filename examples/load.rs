//! A traffic generator for the login server: a mix of good, bad and malformed
//! logins over several connections, from many client addresses as many users
//! would send them, then a table of status codes, latency percentiles and
//! throughput.
//!
//! ```sh
//! cargo run --example login_server                      # one terminal
//! cargo run --release --example load                    # another: 10 s of a 70/25/5 mix
//! cargo run --release --example load -- --rate 20 --duration 120
//! cargo run --release --example load -- --requests 60 --good 3 --bad 2 --malformed 1
//! cargo run --release --example load -- --scenario credential-stuffing  # until Ctrl-C
//! ```
//!
//! The server throttles login attempts per client address (the book's Step 8),
//! so the generator spreads its requests over `--sources` addresses of the
//! loopback range (127.0.1.1 upward for the default scenario). Where it cannot
//! (a server that is not on loopback; macOS, which has only 127.0.0.1),
//! everything comes from one address, and it says so: start the server with
//! `--no-login-limit` then.
//!
//! Every run is bounded: by `--requests`, or else by `--duration` (10 s by
//! default, 20 minutes for the named scenarios, which make alerts fire), and
//! Ctrl-C stops it early with the same table. A request that gets no HTTP
//! answer at all (connection refused, reset, timed out) stops the run and makes
//! the exit status non-zero.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::{Parser, ValueEnum};
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

    /// A named traffic pattern (mix, rate, connections and sources), for making
    /// the dashboard and the alerts react; flags given as well override its values.
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

    /// Requests in flight at once, each on a kept-alive connection of its
    /// source [default: the scenario's; 8 for `normal`].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_CONNECTIONS)))]
    connections: Option<u16>,

    /// Client addresses to send from, one request each in turn: 127.S.1.1
    /// upward when the server is on loopback, S being the scenario's number (0
    /// for `normal`) [default: the scenario's; 256 for `normal`]. Each keeps a
    /// connection open to the server.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_SOURCES)))]
    sources: Option<u16>,

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

/// The most `--connections`.
const MAX_CONNECTIONS: u16 = 1024;

/// The most `--sources`: each keeps a connection open to the server, whose
/// default budget is 4,096 connections.
const MAX_SOURCES: u16 = 2048;

// ANCHOR: scenarios
/// Situations the dashboard, the alerts of Step 7 and the defences of Step 8
/// should tell apart. Each sends from addresses of its own, 127.S.1.1 upward
/// where S is its place in this list (0 for `normal`), so that a scenario run
/// next to `normal` does not share its addresses. The numbers of connections
/// and sources that grow with the cores are sized so that every address stays
/// under the server's throttle of one attempt a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Everyday use: 70 % good logins, 25 % wrong passwords, 5 % malformed
    /// bodies, as fast as the server answers over 8 connections, for 10 s, from
    /// 256 addresses: about one attempt every three or four seconds each at the
    /// 60 to 80 logins a second of a 2-core server. No alert fires.
    Normal,
    /// One address guessing passwords: 90 % wrong passwords at 5 per second
    /// over 2 connections. The throttle answers 429 past its burst of 10, so
    /// only about one guess a second is checked: too few 401s for
    /// `LoginPasswordGuessing`; `LoginClientsThrottled` (Step 8) fires.
    PasswordGuessing,
    /// Leaked credentials tried from many addresses: 90 % wrong passwords at
    /// 20 per second in all over 4 connections, from 256 addresses, each far
    /// under the throttle, which cannot see it: `LoginPasswordGuessing` fires
    /// (more than half of the logins and more than one a second fail with 401).
    CredentialStuffing,
    /// A client release that sends broken bodies: 30 % malformed at 5 per
    /// second over 2 connections, from 64 addresses: `LoginMalformedRequests`
    /// fires (more than 10 %, more than one every 10 seconds).
    BrokenClient,
    /// More logins at once than the cores can hash: good logins only, 10
    /// connections per core without pause, from 128 addresses per core. Each
    /// login waits for about 10 others: 250 to 400 ms at the 25 to 40 ms a hash
    /// takes on the book's machine, above the 250 ms of the latency objective
    /// and under the 500 ms at which the server sheds: `LoginLatencyBudgetBurn`
    /// fires. (A 503 row means slower hashes: lower --connections.)
    Slow,
    /// Far more logins than the cores can hash: good logins only, 64
    /// connections per core without pause, from 512 addresses per core, each
    /// under the throttle. The server sheds with 503 every login that would
    /// wait past 500 ms: `LoginAvailabilityBudgetBurn` and `LoginRequestsShed`
    /// (Step 8) fire.
    Flood,
}

/// What a run sends, once the scenario and the flags are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mix {
    good: u32,
    bad: u32,
    malformed: u32,
    rate: Option<f64>,
    connections: u16,
    sources: u16,
    duration: f64,
}

impl Scenario {
    fn mix(self) -> Mix {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let per_core = |count: usize, most: u16| {
            u16::try_from(count * cores).map_or(most, |total| total.min(most))
        };
        let long = 20.0 * 60.0;
        match self {
            Scenario::Normal => Mix {
                good: 70,
                bad: 25,
                malformed: 5,
                rate: None,
                connections: 8,
                sources: 256,
                duration: 10.0,
            },
            Scenario::PasswordGuessing => Mix {
                good: 1,
                bad: 9,
                malformed: 0,
                rate: Some(5.0),
                connections: 2,
                sources: 1,
                duration: long,
            },
            Scenario::CredentialStuffing => Mix {
                good: 1,
                bad: 9,
                malformed: 0,
                rate: Some(20.0),
                connections: 4,
                sources: 256,
                duration: long,
            },
            Scenario::BrokenClient => Mix {
                good: 6,
                bad: 1,
                malformed: 3,
                rate: Some(5.0),
                connections: 2,
                sources: 64,
                duration: long,
            },
            Scenario::Slow => Mix {
                good: 1,
                bad: 0,
                malformed: 0,
                rate: None,
                connections: per_core(10, MAX_CONNECTIONS),
                sources: per_core(128, MAX_SOURCES),
                duration: long,
            },
            Scenario::Flood => Mix {
                good: 1,
                bad: 0,
                malformed: 0,
                rate: None,
                connections: per_core(64, MAX_CONNECTIONS),
                sources: per_core(512, MAX_SOURCES),
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
            sources: self.sources.unwrap_or(preset.sources),
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
    /// One client per source address; ticket `n` is sent with client `n % len`.
    clients: Vec<reqwest::Client>,
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

// ANCHOR: sources
/// Source `index` (from 0) of `scenario`: 127.S.1.1, 127.S.1.2, ..., 127.S.1.254,
/// 127.S.2.1, ... where S is the scenario's number; no .0 or .255, which look
/// like network and broadcast addresses.
fn source_address(scenario: Scenario, index: u16) -> Ipv4Addr {
    let [third, fourth] = [index / 254, index % 254]
        .map(|part| u8::try_from(1 + part).expect("--sources is at most 2048"));
    Ipv4Addr::new(127, scenario as u8, third, fourth)
}

/// The addresses to send from: `wanted` of them when the server is on loopback
/// and this system answers on more of 127.0.0.0/8 than 127.0.0.1 (Linux does;
/// macOS does not unless more addresses are aliased). Otherwise why not: every
/// request then comes from the one address the system picks.
fn source_addresses(
    url: &reqwest::Url,
    scenario: Scenario,
    wanted: u16,
) -> Result<Vec<Ipv4Addr>, String> {
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "the server's host, {host}, is not an IPv4 loopback address"
        ));
    }
    // One socket bound to 127.0.0.2 tells whether the others can be bound too.
    UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).map_err(|error| {
        format!("this system has no loopback address but 127.0.0.1 (binding 127.0.0.2: {error})")
    })?;
    Ok((0..wanted)
        .map(|index| source_address(scenario, index))
        .collect())
}

/// One HTTP client per address, each with a pool just large enough for its
/// share of the requests in flight; one client and the system's choice of
/// address when there are none.
fn clients(addresses: &[Ipv4Addr], connections: u16) -> reqwest::Result<Vec<reqwest::Client>> {
    let per_source = usize::from(connections).div_ceil(addresses.len().max(1));
    let client = |address: Option<Ipv4Addr>| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(address.map(IpAddr::V4))
            .pool_max_idle_per_host(per_source)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
    };
    if addresses.is_empty() {
        return Ok(vec![client(None)?]);
    }
    addresses
        .iter()
        .map(|&address| client(Some(address)))
        .collect()
}
// ANCHOR_END: sources

/// How many addresses the requests came from, for the report.
fn describe_sources(addresses: &[Ipv4Addr]) -> String {
    match addresses {
        [] => "1 address".to_owned(),
        [one] => format!("1 address ({one})"),
        [first, .., last] => format!("{} addresses ({first} to {last})", addresses.len()),
    }
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
/// set, sends from the ticket's source, records; until the limit is reached.
async fn connection(plan: Arc<Plan>, progress: Arc<Progress>) -> Tally {
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
        let ticket = usize::try_from(ticket).unwrap_or(usize::MAX);
        let kind = plan.order[ticket % plan.order.len()];
        let client = &plan.clients[ticket % plan.clients.len()];
        let sent = Instant::now();
        match send(client, &plan, kind).await {
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
fn report(
    args: &Args,
    mix: &Mix,
    sources: &str,
    tally: &Tally,
    elapsed: Duration,
    cpu: Option<Duration>,
) {
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
    let scenario = args
        .scenario
        .to_possible_value()
        .expect("no variant is skipped");
    println!(
        "Scenario {}: sent {good} good, {bad} bad and {malformed} malformed logins \
         from {sources} to {}",
        scenario.get_name(),
        args.url
    );
    println!("{table}");
    println!(
        "{answered} answers in {:.2} s, {} at a time: {:.1} requests/s",
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
    let addresses = source_addresses(&args.url, args.scenario, mix.sources).unwrap_or_else(|why| {
        if mix.sources > 1 {
            eprintln!(
                "note: every request comes from one address: {why}. The server's \
                 per-client throttle may answer most of them with 429; for a load test \
                 from one machine, start the server with --no-login-limit."
            );
        }
        Vec::new()
    });
    if addresses.len() > 1 {
        make_room_for(addresses.len(), mix.connections)?;
    }
    let clients = clients(&addresses, mix.connections)?;
    let started = Instant::now();
    let cpu_at_start = cpu_time::ProcessTime::try_now().ok();
    let limit = match args.requests {
        Some(count) => Limit::Requests(count),
        None => Limit::Until(started + Duration::from_secs_f64(mix.duration)),
    };
    let plan = Arc::new(Plan {
        url: args.url.clone(),
        clients,
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
        .map(|_| tokio::spawn(connection(Arc::clone(&plan), Arc::clone(&progress))))
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

    report(
        &args,
        &mix,
        &describe_sources(&addresses),
        &tally,
        elapsed,
        cpu,
    );
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

/// Raises this process's open files limit to what it may be, as the server
/// does: each source keeps a connection open, and a soft limit of 1,024 is
/// common. Fails when even that is too low.
fn make_room_for(sources: usize, connections: u16) -> anyhow::Result<()> {
    let needed = sources + usize::from(connections) + 64;
    if let Some(limit) = login_metrics::limits::raise_fd_limit() {
        ensure!(
            u64::try_from(needed).is_ok_and(|needed| needed <= limit),
            "{sources} sources need about {needed} open files, and this process may \
             have {limit}: lower --sources, or raise `ulimit -n`"
        );
    }
    Ok(())
}

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
