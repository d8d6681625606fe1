//! Macro measurements for the appendix "What monitoring costs": the real HTTP
//! server on loopback, driven by the `load` example, about one minute in all.
//!
//! ```sh
//! cargo run -p lab --release --bin measure
//! ```
//!
//! It prints one table: each figure, its goal and the margin (measured ÷ goal
//! for "at least" goals, goal ÷ measured for "at most" goals; 1.00 or more
//! means the goal is met).
//!
//! - **Metrics layer, cheap path.** The real `app()` and `app_without_metrics()`
//!   (the same router minus the metrics layer) serve malformed logins (400)
//!   on one server thread. The figure is the server's capacity, answers per
//!   second of server CPU, with ÷ without (goal ≥ 97 %). Counting CPU rather
//!   than wall time keeps the figure honest when the generator, not the
//!   server, is what saturates first.
//! - **Generator ceiling.** The same runs: answers per second of the
//!   generator's CPU, on one thread (goal ≥ 20,000/s).
//! - **Hash-bound logins.** The real server (`serve` + `app`) with the demo
//!   user, eight connections of good logins: logins/s ÷ (cores ÷ one
//!   verification's time) (goal ≥ 90 %), while `/metrics` is scraped every
//!   10 ms (goal: p99 < 5 ms).
//!
//! Linux only: per-thread CPU time comes from `/proc`.

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("measure reads per-thread CPU time from /proc, so it runs on Linux only");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail, ensure};
    use comfy_table::{CellAlignment, Table, presets};
    use hdrhistogram::Histogram;
    use lab::stats::median;
    use login_metrics::AppState;
    use login_metrics::auth::UserStore;
    use login_metrics::server::serve;
    use login_metrics_testkit::exposition::ScrapeMetrics as _;

    /// Numbers the cheap-path runs, so that each run's server thread has a
    /// name of its own (the previous run's may still be exiting).
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const CHEAP_RUN: Duration = Duration::from_millis(1500);
    const CHEAP_ROUNDS: usize = 8;
    /// Enough connections in flight that one side, not the wake-ups between
    /// them, sets the pace.
    const CHEAP_CONNECTIONS: u16 = 64;
    const LOGIN_RUN: Duration = Duration::from_secs(4);
    const LOGIN_ROUNDS: usize = 3;
    const SCRAPE_EVERY: Duration = Duration::from_millis(10);
    const IDLE_SCRAPES: Duration = Duration::from_secs(2);

    pub fn main() -> anyhow::Result<()> {
        if cfg!(debug_assertions) {
            eprintln!("warning: a debug build measures the compiler, not the code; use --release");
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        eprintln!("building the load example (release)...");
        let load = login_metrics_testkit::example::release_binary("load")?;

        eprintln!(
            "cheap path: {CHEAP_ROUNDS} rounds of {CHEAP_RUN:?} without and with the metrics layer..."
        );
        let mut rounds = Vec::new();
        for round in 0..CHEAP_ROUNDS {
            // Alternate which goes first, so a drift in the machine's load cancels out.
            let (without, with) = if round % 2 == 0 {
                let without = cheap_run(&load, false, 2)?;
                (without, cheap_run(&load, true, 2)?)
            } else {
                let with = cheap_run(&load, true, 2)?;
                (cheap_run(&load, false, 2)?, with)
            };
            rounds.push((without, with));
        }
        eprintln!("generator: {CHEAP_RUN:?} on one thread against the cheap path...");
        let generator = cheap_run(&load, true, 1)?;

        // The machine's speed drifts: each login run is compared with the
        // verification time measured just before it.
        let mut logins = Vec::new();
        for round in 1..=LOGIN_ROUNDS {
            eprintln!(
                "argon2 ({round}/{LOGIN_ROUNDS}): one verification alone, then every core..."
            );
            let hashing = time_verification(cores)?;
            eprintln!(
                "hash-bound ({round}/{LOGIN_ROUNDS}): {LOGIN_RUN:?} of good logins on 8 connections, \
                 scraping every {SCRAPE_EVERY:?}..."
            );
            logins.push((hashing, login_run(&load)?));
        }

        print_table(cores, &rounds, &generator, &logins);
        Ok(())
    }

    /// How long one verification takes alone, and how many all cores do together.
    struct Hashing {
        one: Duration,
        parallel_per_second: f64,
    }

    fn time_verification(cores: usize) -> anyhow::Result<Hashing> {
        let runtime = tokio::runtime::Runtime::new()?;
        let store = Arc::new(UserStore::with_demo_user());
        runtime.block_on(async {
            let mut times = Vec::new();
            for _ in 0..20 {
                let started = Instant::now();
                ensure!(
                    store
                        .verify("user", "pass".to_owned(), std::time::Duration::MAX)
                        .await?,
                    "the demo login fails"
                );
                times.push(started.elapsed());
            }
            times.drain(..8); // warm-up: the first ones are slower
            times.sort();
            let one = times[times.len() / 2];

            // Every core verifying at once, as the server does under load.
            let started = Instant::now();
            let tasks: Vec<_> = (0..cores)
                .map(|_| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move {
                        let mut done = 0_u32;
                        while started.elapsed() < Duration::from_secs(2) {
                            store
                                .verify("user", "pass".to_owned(), std::time::Duration::MAX)
                                .await
                                .ok();
                            done += 1;
                        }
                        done
                    })
                })
                .collect();
            let mut done = 0;
            for task in tasks {
                done += task.await?;
            }
            Ok(Hashing {
                one,
                parallel_per_second: f64::from(done) / started.elapsed().as_secs_f64(),
            })
        })
    }

    /// One cheap-path run, as seen by the server and by the generator.
    #[derive(Debug, Clone, Copy)]
    struct CheapRun {
        answers: u64,
        wall: Duration,
        server_cpu: Duration,
        generator_cpu: Duration,
    }

    impl CheapRun {
        #[expect(clippy::cast_precision_loss, reason = "counts stay far below 2^52")]
        fn server_capacity(&self) -> f64 {
            self.answers as f64 / self.server_cpu.as_secs_f64()
        }
        #[expect(clippy::cast_precision_loss, reason = "counts stay far below 2^52")]
        fn generator_capacity(&self) -> f64 {
            self.answers as f64 / self.generator_cpu.as_secs_f64()
        }
        #[expect(clippy::cast_precision_loss, reason = "counts stay far below 2^52")]
        fn rate(&self) -> f64 {
            self.answers as f64 / self.wall.as_secs_f64()
        }
    }

    // ANCHOR: cheap_run
    /// Serves the cheap path on one thread, with or without the metrics layer,
    /// and drives it with the load example on `threads` threads of its own.
    fn cheap_run(load: &PathBuf, with_metrics: bool, threads: u16) -> anyhow::Result<CheapRun> {
        // At most 15 bytes: the kernel truncates longer thread names.
        let thread = format!("server-{}", RUN.fetch_add(1, Ordering::Relaxed));
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(&thread)
            .enable_all()
            .build()?;
        let state = AppState::new(UserStore::with_demo_user());
        let metrics = Arc::clone(&state.metrics);
        let addr = server.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let router = if with_metrics {
                login_metrics::app(state)
            } else {
                login_metrics::routes::app_without_metrics(state)
            };
            tokio::spawn(async move { axum::serve(listener, router).await });
            anyhow::Ok(addr)
        })?;

        let cpu_before = thread_cpu(&thread)?;
        let threads = threads.to_string();
        let report = run_load(
            load,
            addr,
            &[
                "--malformed",
                "1",
                "--good",
                "0",
                "--bad",
                "0",
                "--threads",
                &threads,
                // One address, one pool of connections: malformed bodies are never
                // throttled, and spreading them over many addresses would only
                // add connections to what is measured.
                "--sources",
                "1",
            ],
            CHEAP_CONNECTIONS,
            CHEAP_RUN,
        )?;
        let server_cpu = thread_cpu(&thread)?.saturating_sub(cpu_before);
        server.shutdown_background();

        if with_metrics {
            ensure!(
                metrics
                    .scrape()
                    .requests(axum::http::StatusCode::BAD_REQUEST)
                    == report.answers,
                "the server counted a different number of 400s than the generator received"
            );
        }
        Ok(CheapRun {
            answers: report.answers,
            wall: report.wall,
            server_cpu,
            generator_cpu: report.cpu,
        })
    }
    // ANCHOR_END: cheap_run

    /// CPU time used so far by this process's threads called `name`.
    fn thread_cpu(name: &str) -> anyhow::Result<Duration> {
        let mut nanos = 0;
        for task in procfs::process::Process::myself()?.tasks()?.flatten() {
            // A thread may exit between the listing and the reads: skip it.
            if let (Ok(stat), Ok(schedstat)) = (task.stat(), task.schedstat())
                && stat.comm == name
            {
                nanos += schedstat.sum_exec_runtime;
            }
        }
        Ok(Duration::from_nanos(nanos))
    }

    /// What the load example printed.
    struct LoadReport {
        answers: u64,
        wall: Duration,
        cpu: Duration,
        text: String,
    }

    fn run_load(
        load: &PathBuf,
        addr: SocketAddr,
        args: &[&str],
        connections: u16,
        duration: Duration,
    ) -> anyhow::Result<LoadReport> {
        let output = Command::new(load)
            .args(["--url", &format!("http://{addr}/login"), "--quiet"])
            .args(["--connections", &connections.to_string()])
            .args(["--duration", &duration.as_secs_f64().to_string()])
            .args(args)
            .output()
            .context("running the load example")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "load failed: {}\n{text}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let summary = regex::Regex::new(r"(\d+) answers in ([\d.]+) s")?;
        let cpu = regex::Regex::new(r"Generator CPU: ([\d.]+) s")?;
        let (Some(summary), Some(cpu)) = (summary.captures(&text), cpu.captures(&text)) else {
            bail!("unexpected output from load:\n{text}");
        };
        Ok(LoadReport {
            answers: summary[1].parse()?,
            wall: Duration::from_secs_f64(summary[2].parse()?),
            cpu: Duration::from_secs_f64(cpu[1].parse()?),
            text,
        })
    }

    /// The hash-bound run and the scrapes made during it.
    struct LoginRun {
        logins_per_second: f64,
        scrapes: Histogram<u64>,
        idle_scrapes: Histogram<u64>,
        load_output: String,
    }

    // ANCHOR: login_run
    /// The real server, saturated with good logins, scraped every 10 ms.
    fn login_run(load: &PathBuf) -> anyhow::Result<LoginRun> {
        let server = tokio::runtime::Runtime::new()?;
        let state = AppState::new(UserStore::with_demo_user());
        let (app_addr, metrics_addr) = server.block_on(async {
            let app = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addrs = (app.local_addr()?, metrics.local_addr()?);
            tokio::spawn(serve(app, metrics, state.clone(), std::future::pending()));
            anyhow::Ok(addrs)
        })?;

        // First the same scrapes with no load at all, for comparison.
        let metrics_url = format!("http://{metrics_addr}/metrics");
        let idle_scrapes = {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let url = metrics_url.clone();
            let thread = std::thread::spawn(move || scrape_until(&url, &flag));
            std::thread::sleep(IDLE_SCRAPES);
            stop.store(true, Ordering::Relaxed);
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the scraper panicked"))??
        };

        let stop = Arc::new(AtomicBool::new(false));
        let scrape_thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || scrape_until(&metrics_url, &stop))
        };
        let report = run_load(
            load,
            app_addr,
            &[
                "--good",
                "1",
                "--bad",
                "0",
                "--malformed",
                "0",
                "--threads",
                "1",
            ],
            8,
            LOGIN_RUN,
        );
        stop.store(true, Ordering::Relaxed);
        let scrapes = scrape_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the scraper panicked"))??;
        let report = report?;
        server.shutdown_background();
        #[expect(clippy::cast_precision_loss, reason = "counts stay far below 2^52")]
        let logins_per_second = report.answers as f64 / report.wall.as_secs_f64();
        Ok(LoginRun {
            logins_per_second,
            scrapes,
            idle_scrapes,
            load_output: report.text,
        })
    }
    // ANCHOR_END: login_run

    /// Scrapes `url` every [`SCRAPE_EVERY`] until `stop`; latencies in µs.
    fn scrape_until(url: &str, stop: &AtomicBool) -> anyhow::Result<Histogram<u64>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let client = reqwest::Client::builder().no_proxy().build()?;
            let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut tick = tokio::time::interval(SCRAPE_EVERY);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let started = Instant::now();
                let text = client
                    .get(url)
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await?;
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.saturating_record(micros.max(1));
                ensure!(text.contains("login_requests_total"), "not a metrics page");
            }
            Ok(latencies)
        })
    }

    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    #[expect(clippy::too_many_lines, reason = "one block per row of the table")]
    fn print_table(
        cores: usize,
        rounds: &[(CheapRun, CheapRun)],
        generator: &CheapRun,
        logins: &[(Hashing, LoginRun)],
    ) {
        let ratio = median(
            rounds
                .iter()
                .map(|(without, with)| with.server_capacity() / without.server_capacity()),
        );
        let per_answer = |runs: Vec<CheapRun>| {
            let micros = median(runs.iter().map(|run| 1e6 / run.server_capacity()));
            let rate = median(runs.iter().map(CheapRun::rate));
            format!("{micros:.2} µs CPU/answer, {rate:.0} answers/s")
        };
        let busy = generator.generator_cpu.as_secs_f64() / generator.wall.as_secs_f64();
        let generator = generator.generator_capacity();

        let ideal = |hashing: &Hashing| cores as f64 / hashing.one.as_secs_f64();
        let of_logins =
            |value: &dyn Fn(&(Hashing, LoginRun)) -> f64| median(logins.iter().map(value));
        let one = of_logins(&|(hashing, _)| hashing.one.as_secs_f64());
        let parallel = of_logins(&|(hashing, _)| hashing.parallel_per_second);
        let scaling = of_logins(&|(hashing, _)| hashing.parallel_per_second / ideal(hashing));
        let rate = of_logins(&|(_, run)| run.logins_per_second);
        let versus_hashing =
            of_logins(&|(hashing, run)| run.logins_per_second / hashing.parallel_per_second);
        let login_ratio = of_logins(&|(hashing, run)| run.logins_per_second / ideal(hashing));
        let mut scrapes = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        let mut idle = scrapes.clone();
        for (_, run) in logins {
            scrapes.add(&run.scrapes).expect("same bounds");
            idle.add(&run.idle_scrapes).expect("same bounds");
        }
        let idle = |quantile: f64| Duration::from_micros(idle.value_at_quantile(quantile));
        let scrape = |quantile: f64| Duration::from_micros(scrapes.value_at_quantile(quantile));
        let p99 = scrape(0.99);

        let mut table = Table::new();
        table
            .load_preset(presets::ASCII_MARKDOWN)
            .set_header(["figure", "measured", "goal", "margin", "met"]);
        let mut row = |figure: &str, measured: String, goal: &str, margin: Option<f64>| {
            let (margin, met) = match margin {
                Some(margin) => (
                    format!("{margin:.2}"),
                    if margin >= 1.0 { "yes" } else { "NO" },
                ),
                None => (String::new(), ""),
            };
            table.add_row([figure, &measured, goal, &margin, met]);
        };
        row(
            "cheap path (400), without metrics layer",
            per_answer(rounds.iter().map(|(without, _)| *without).collect()),
            "",
            None,
        );
        row(
            "cheap path (400), with metrics layer",
            per_answer(rounds.iter().map(|(_, with)| *with).collect()),
            "",
            None,
        );
        row(
            "server throughput per core, with ÷ without metrics",
            format!("{:.1} %", 100.0 * ratio),
            "≥ 97 %",
            Some(ratio / 0.97),
        );
        row(
            "generator on one thread: answers per CPU-second",
            format!("{generator:.0}/s (busy {:.0} %)", 100.0 * busy),
            "≥ 20000/s",
            Some(generator / 20_000.0),
        );
        row(
            "one argon2 verification, alone",
            format!("{:.2} ms", one * 1e3),
            "",
            None,
        );
        row(
            "verifications/s on every core, no HTTP",
            format!("{parallel:.1}/s = {:.1} % of cores ÷ one", 100.0 * scaling),
            "",
            None,
        );
        row(
            "logins/s over HTTP ÷ verifications/s, no HTTP",
            format!("{rate:.1}/s, {:.1} %", 100.0 * versus_hashing),
            "",
            None,
        );
        row(
            "logins/s ÷ (cores ÷ one verification)",
            format!("{:.1} %", 100.0 * login_ratio),
            "≥ 90 %",
            Some(login_ratio / 0.90),
        );
        row(
            "/metrics scrape p50 / p90 / p99, no load",
            format!("{:.2?} / {:.2?} / {:.2?}", idle(0.5), idle(0.9), idle(0.99)),
            "",
            None,
        );
        row(
            "/metrics scrape p50 / p90 during the login runs",
            format!("{:.2?} / {:.2?}", scrape(0.5), scrape(0.9)),
            "",
            None,
        );
        row(
            "/metrics scrape p99 during the login runs",
            format!("{p99:.2?} ({} scrapes)", scrapes.len()),
            "< 5 ms",
            Some(5.0 / (p99.as_secs_f64() * 1e3)),
        );
        for column in 1..5 {
            if let Some(column) = table.column_mut(column) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        println!("cores: {cores}; each figure is the median of its rounds");
        println!("{table}");
        if let Some((_, last)) = logins.last() {
            println!(
                "\nThe load example's report of the last login run:\n{}",
                last.load_output
            );
        }
    }
}
