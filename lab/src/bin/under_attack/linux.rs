//! The measurements themselves: they read `/proc`, so they run on Linux only.
//! Each attack has a module; what they share is here (the arguments, the two ways
//! to launch the server) and in `exchange` (one login seen from outside) and
//! `report` (the side-by-side tables).

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use lab::server_process::{Launch, OPEN_FILES, login_server_binary};

mod cheap_path;
mod exchange;
mod flood;
mod guessing;
mod report;

use cheap_path::cheap_path;
use flood::flood;
use guessing::guessing;

/// Measures the Step 8 defences against the same attacks with them off.
#[derive(Debug, Parser)]
pub(super) struct Args {
    /// The server to attack [default: this repository's `login_server`
    /// example, built in release mode].
    #[arg(long)]
    pub(super) server: Option<PathBuf>,
    /// Run only the attacks whose names contain this (guessing, flood, cheap-path).
    #[arg(long)]
    pub(super) only: Option<String>,
    /// The flood offers this many times the measured capacity.
    #[arg(long, default_value_t = 10)]
    pub(super) flood_factor: u32,
    /// Addresses the flood comes from.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub(super) flood_addresses: u16,
    /// Seconds of flood.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub(super) flood_seconds: u64,
    /// Rounds of the cheap-path comparison.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(super) rounds: u32,
    /// Seconds of `wrk` per cheap-path run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub(super) wrk_seconds: u64,
}

/// The whole connection budget under `ulimit -n 4096` (half of it): as many
/// connections per client as there are at all, that is, no per-client cap.
pub(super) const BUDGET: u32 = OPEN_FILES / 2;

pub fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build measures the compiler, not the code; use --release");
    }
    // Thousands of connections at once.
    let _ = login_metrics::limits::raise_fd_limit();
    let binary = login_server_binary(args.server.clone())?;
    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| name.contains(only));
    println!("{}", machine());
    let runtime = tokio::runtime::Runtime::new()?;
    if wanted("guessing") {
        runtime.block_on(guessing(&binary))?;
    }
    if wanted("flood") {
        runtime.block_on(flood(&binary, &args))?;
    }
    if wanted("cheap-path") {
        cheap_path(&binary, &args)?;
    }
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// The date, the cores and the load: what the figures depend on.
pub(super) fn machine() -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{date}; {} cores; load average {}; servers under `ulimit -n {OPEN_FILES}`",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        load_average()
    )
}

pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The server as shipped.
pub(super) fn defences_on() -> Launch {
    Launch::default()
}

/// The same server with every Step 8 defence off.
pub(super) fn defences_off() -> Launch {
    Launch {
        args: [
            "--no-login-limit",
            "--max-hash-wait",
            "3600s",
            "--max-connections-per-client",
            &BUDGET.to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
        ..Launch::default()
    }
}

/// `launch` with glibc's allocator left at its defaults, or with large
/// blocks in mappings of their own.
pub(super) fn with_mmap_threshold(mut launch: Launch, threshold: bool) -> Launch {
    launch.env.push((
        "MALLOC_MMAP_THRESHOLD_".to_owned(),
        threshold.then(|| "1048576".to_owned()),
    ));
    launch
}
