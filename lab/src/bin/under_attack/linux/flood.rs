//! A login flood far above what the server can hash, from many addresses, each
//! login on a new connection, while a legitimate user logs in: defences on and off,
//! each with glibc's default allocator settings and with a mmap threshold.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;

use super::exchange::{Counts, CpuShare, Probes, describe, exchange, legitimate_user, login_once};
use super::report::{Comparison, met};
use super::{Args, defences_off, defences_on, with_mmap_threshold};
use lab::server_process::{LOGIN, Launch, Server, WAIT};
use lab::stats::{ms, per_second};
use login_metrics_testkit::clients::{connect_from, login_request};

/// Logins in flight the flood may have at once; past it a send is skipped and counted.
const MAX_IN_FLIGHT: u64 = 3000;
const PROBE_EVERY: Duration = Duration::from_millis(200);
const PROBE_ADDRESSES: u8 = 20;
/// The flood's goal: every legitimate login answered within this.
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);
/// The flood's goal for peak resident memory, MiB.
const PEAK_RSS_GOAL: u64 = 100;

/// Logins a second the server answers 200 with `2 × cores` connections
/// sending back to back, defences off.
pub(super) async fn capacity(binary: &Path) -> anyhow::Result<f64> {
    let server = Server::launch(binary, &defences_off())?;
    let to = server.login;
    let connections = 2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let warm = Instant::now() + Duration::from_millis(500);
    let until = warm + Duration::from_secs(2);
    let request: Arc<[u8]> = login_request(LOGIN).into_bytes().into();
    let mut senders = Vec::new();
    for _ in 0..connections {
        let request = Arc::clone(&request);
        senders.push(tokio::spawn(async move {
            let mut stream = connect_from([127, 0, 0, 4], to).await?;
            let mut buffer = Vec::with_capacity(1024);
            let mut ok = 0_u64;
            while Instant::now() < until {
                let answer =
                    tokio::time::timeout(WAIT, exchange(&mut stream, &request, &mut buffer))
                        .await??;
                if answer.status == 200 && Instant::now() >= warm && Instant::now() < until {
                    ok += 1;
                }
            }
            anyhow::Ok(ok)
        }));
    }
    let mut ok = 0;
    for sender in senders {
        ok += sender.await??;
    }
    Ok(per_second(ok, Duration::from_secs(2)))
}

/// What one flood run saw.
pub(super) struct Flood {
    pub(super) offered: u64,
    pub(super) sent: u64,
    pub(super) skipped: u64,
    pub(super) answers: Counts,
    pub(super) probes: Probes,
    pub(super) idle_rss: u64,
    pub(super) peak_rss: u64,
    pub(super) end_rss: u64,
    pub(super) later_rss: u64,
    pub(super) last_answer: Duration,
    pub(super) cpu: CpuShare,
}

pub(super) async fn flood(binary: &Path, args: &Args) -> anyhow::Result<()> {
    eprintln!("flood: measuring the capacity (2 s, defences off)...");
    let capacity = capacity(binary).await?;
    ensure!(capacity > 1.0, "the server answered {capacity:.1} logins/s");
    let rate = capacity * f64::from(args.flood_factor);
    let setups = [
        ("defences on", defences_on(), false),
        ("defences off", defences_off(), false),
        ("defences on, mmap threshold", defences_on(), true),
        ("defences off, mmap threshold", defences_off(), true),
    ];
    let names = setups.each_ref().map(|(name, ..)| *name);
    let mut runs = Vec::new();
    for (name, launch, threshold) in setups {
        eprintln!(
            "flood ({name}): {rate:.0} logins/s from {} addresses for {} s...",
            args.flood_addresses, args.flood_seconds
        );
        runs.push(flood_once(binary, &with_mmap_threshold(launch, threshold), rate, args).await?);
    }
    eprintln!("flood: measuring the capacity again...");
    let again = self::capacity(binary).await?;
    let mut table = flood_table(&names, &runs, capacity, rate, args);
    table.notes.insert(
        1,
        format!(
            "capacity measured again after the floods: {again:.0} logins/s \
             (the machine's other load moves it)"
        ),
    );
    table.print();
    Ok(())
}

pub(super) fn flood_table(
    names: &[&str],
    runs: &[Flood],
    capacity: f64,
    rate: f64,
    args: &Args,
) -> Comparison {
    let mut table = Comparison::new(
        format!(
            "flood: good logins at {} × capacity from {} addresses for {} s, each on a new \
             connection; a legitimate user logs in every 200 ms from addresses of its own",
            args.flood_factor, args.flood_addresses, args.flood_seconds
        ),
        names,
    );
    table.notes.push(format!(
        "capacity measured first: {capacity:.0} logins/s (2 s, {} connections, defences off); \
         flood offered at {rate:.0} logins/s",
        2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    ));
    let seconds = Duration::from_secs(args.flood_seconds);
    let each = |f: &dyn Fn(&Flood) -> String| runs.iter().map(f).collect::<Vec<_>>();
    table.row(
        "flood logins sent per second (offered)",
        each(&|run| {
            format!(
                "{:.0} ({:.0})",
                per_second(run.sent, seconds),
                per_second(run.offered, seconds)
            )
        }),
    );
    table.row(
        format!("flood sends skipped: {MAX_IN_FLIGHT} already in flight"),
        each(&|run| run.skipped.to_string()),
    );
    table.row("flood answers", each(&|run| describe(&run.answers)));
    table.row(
        "flood logins answered 200, per second until the last answer",
        each(&|run| {
            format!(
                "{:.0}",
                per_second(
                    run.answers.get("200").copied().unwrap_or(0),
                    run.last_answer.max(Duration::from_millis(1))
                )
            )
        }),
    );
    table.row(
        "last flood answer, after the start",
        each(&|run| ms(run.last_answer)),
    );
    table.row(
        "legitimate logins",
        each(&|run| describe(&run.probes.counts())),
    );
    table.row(
        "legitimate login latency p50 / p99 / max",
        each(&|run| run.probes.latency_figure()),
    );
    table.row(
        "every legitimate login answered within 1 s (200, or 503 with Retry-After)",
        each(&|run| {
            if run.probes.all_answered_within(ANSWERED_WITHIN) {
                "yes".to_owned()
            } else {
                "no".to_owned()
            }
        }),
    );
    table.row(
        "server resident memory: idle / peak (VmHWM)",
        each(&|run| format!("{} MiB / {} MiB", run.idle_rss, run.peak_rss)),
    );
    table.row(
        "server resident memory: at the last answer / 5 s later",
        each(&|run| format!("{} MiB / {} MiB", run.end_rss, run.later_rss)),
    );
    table.row(
        "CPU time: server / this generator / other processes",
        each(&|run| run.cpu.figure()),
    );
    let on = &runs[0];
    table.notes.push(format!(
        "goal: with the defences as shipped, every legitimate login answered within 1 s, a 200 \
         or a 503 with Retry-After: {}",
        met(on.probes.all_answered_within(ANSWERED_WITHIN))
    ));
    table.notes.push(format!(
        "goal: ... and mostly 200s: {} of {}, {}",
        on.probes.ok(),
        on.probes.0.len(),
        met(on.probes.ok() * 2 > on.probes.0.len())
    ));
    table.notes.push(format!(
        "goal: peak resident memory under {PEAK_RSS_GOAL} MiB with the defences: {} MiB as \
         shipped, {}; {} MiB with MALLOC_MMAP_THRESHOLD_=1048576, {}",
        on.peak_rss,
        met(on.peak_rss < PEAK_RSS_GOAL),
        runs[2].peak_rss,
        met(runs[2].peak_rss < PEAK_RSS_GOAL)
    ));
    table
}

pub(super) async fn flood_once(
    binary: &Path,
    launch: &Launch,
    rate: f64,
    args: &Args,
) -> anyhow::Result<Flood> {
    let server = Server::launch(binary, launch)?;
    let to = server.login;
    let (idle_rss, _) = server.memory();
    let cpu = CpuShare::start(&server);
    let seconds = Duration::from_secs(args.flood_seconds);
    let every = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let until = started + seconds;
    let request: Arc<[u8]> = login_request(LOGIN).into_bytes().into();
    let in_flight = Arc::new(AtomicU64::new(0));
    let last_answer = Arc::new(AtomicU64::new(0));
    let user = tokio::spawn(legitimate_user(
        to,
        (1..=PROBE_ADDRESSES).map(|d| [127, 2, 0, d]).collect(),
        PROBE_EVERY,
        PROBE_EVERY,
        until,
    ));
    // The sender: one login every `every`, whatever the answers, each on a
    // new connection from the next address in turn.
    let mut logins = Vec::new();
    let (mut offered, mut skipped) = (0_u64, 0_u64);
    let addresses = u32::from(args.flood_addresses);
    let mut next = started;
    let mut peak_sampled = 0;
    let mut sampled_at = started;
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        offered += 1;
        next += every;
        if sampled_at.elapsed() >= Duration::from_millis(250) {
            peak_sampled = peak_sampled.max(server.memory().0);
            sampled_at = Instant::now();
        }
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            skipped += 1;
            continue;
        }
        let index = u32::try_from(offered % u64::from(addresses))?;
        let from = [
            127,
            1,
            u8::try_from(index / 250)?,
            u8::try_from(index % 250 + 1)?,
        ];
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (request, in_flight, last_answer) = (
            Arc::clone(&request),
            Arc::clone(&in_flight),
            Arc::clone(&last_answer),
        );
        logins.push(tokio::spawn(async move {
            let (outcome, _) = login_once(from, to, &request).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let at = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            last_answer.fetch_max(at, Ordering::Relaxed);
            outcome
        }));
    }
    let sent = u64::try_from(logins.len())?;
    let mut answers = Counts::new();
    for login in logins {
        *answers.entry(login.await?.key()).or_default() += 1;
    }
    let probes = user.await?;
    let (end_rss, peak) = server.memory();
    let cpu = cpu.since(&server, started);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (later_rss, _) = server.memory();
    Ok(Flood {
        offered,
        sent,
        skipped,
        answers,
        probes,
        idle_rss,
        peak_rss: peak.max(peak_sampled),
        end_rss,
        later_rss,
        last_answer: Duration::from_micros(last_answer.load(Ordering::Relaxed)),
        cpu,
    })
}
