//! The defences of the book's Step 8, measured: each attack is played against
//! the real `login_server` binary twice in one run, once as shipped (the
//! defences on) and once with them off, and printed side by side.
//!
//! ```sh
//! cargo build --release --example login_server
//! cargo run -p lab --release --bin under_attack                  # about four minutes
//! cargo run -p lab --release --bin under_attack -- --only flood   # or guessing, cheap-path
//! ```
//!
//! "Defences off" is the same binary with
//! `--no-login-limit --max-hash-wait 3600s --max-connections-per-client 2048`
//! (2048 is the whole connection budget under `ulimit -n 4096`).
//!
//! - **guessing**: one address, 127.0.0.2, sends wrong passwords on 64
//!   connections, back to back, for 10 s; a legitimate user on 127.0.0.3 logs
//!   in once a second meanwhile.
//! - **flood**: the server's capacity is measured first (2 s of good logins on
//!   2 × cores connections, defences off); then good logins are sent at
//!   `--flood-factor` (10) times that rate for 15 s, each on a new connection,
//!   from 256 addresses in turn (127.1.0.1 upward), whatever the server
//!   answers; meanwhile a legitimate user logs in every 200 ms, from one of 20
//!   addresses of its own in turn (127.2.0.1-20, so each logs in every 4 s).
//!   Four servers: defences on and off, each with glibc's default allocator
//!   settings and with `MALLOC_MMAP_THRESHOLD_=1048576`.
//! - **cheap-path**: `wrk -t1 -c8` (needs `wrk` on PATH) on requests that cost
//!   no hash: malformed bodies (400) with the throttle on and off, and good
//!   logins from one address whose burst is spent (429) with the throttle on;
//!   in rounds, each run a fresh server with its default logging. Plus the
//!   throttle's own calls timed in this process.
//!
//! The load comes from this process, over loopback. On a machine with few
//! cores it competes with the server for them: the table shows both CPU times.
//! Linux only (it reads `/proc`).

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("under_attack reads /proc, so it runs on Linux only");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail, ensure};
    use clap::Parser;
    use comfy_table::{Table, presets};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use lab::server_process::{LOGIN, Launch, OPEN_FILES, Server, WAIT, login_server_binary};
    use lab::stats::{median, ms, per_second, percentile};
    use login_metrics_testkit::clients::{connect_from, login_request};

    /// Measures the Step 8 defences against the same attacks with them off.
    #[derive(Debug, Parser)]
    struct Args {
        /// The server to attack [default: this repository's `login_server`
        /// example, built in release mode].
        #[arg(long)]
        server: Option<PathBuf>,
        /// Run only the attacks whose names contain this (guessing, flood, cheap-path).
        #[arg(long)]
        only: Option<String>,
        /// The flood offers this many times the measured capacity.
        #[arg(long, default_value_t = 10)]
        flood_factor: u32,
        /// Addresses the flood comes from.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=10_000))]
        flood_addresses: u16,
        /// Seconds of flood.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=120))]
        flood_seconds: u64,
        /// Rounds of the cheap-path comparison.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: u32,
        /// Seconds of `wrk` per cheap-path run.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
        wrk_seconds: u64,
    }

    /// The whole connection budget under `ulimit -n 4096` (half of it): as many
    /// connections per client as there are at all, that is, no per-client cap.
    const BUDGET: u32 = OPEN_FILES / 2;
    const GUESSING_FOR: Duration = Duration::from_secs(10);
    const GUESSING_CONNECTIONS: usize = 64;
    const WRONG: &str = r#"{"username":"user","password":"wrong"}"#;
    /// Logins in flight the flood may have at once; past it a send is skipped and counted.
    const MAX_IN_FLIGHT: u64 = 3000;
    const PROBE_EVERY: Duration = Duration::from_millis(200);
    const PROBE_ADDRESSES: u8 = 20;
    /// The flood's goal: every legitimate login answered within this.
    const ANSWERED_WITHIN: Duration = Duration::from_secs(1);
    /// The flood's goal for peak resident memory, MiB.
    const PEAK_RSS_GOAL: u64 = 100;
    /// The cheap path's goal: the throttle costs at most 3 % of throughput.
    const CHEAP_PATH_GOAL: f64 = 0.97;

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
    fn machine() -> String {
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

    fn load_average() -> String {
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
    fn defences_on() -> Launch {
        Launch::default()
    }

    /// The same server with every Step 8 defence off.
    fn defences_off() -> Launch {
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
            env: Vec::new(),
        }
    }

    /// `launch` with glibc's allocator left at its defaults, or with large
    /// blocks in mappings of their own.
    fn with_mmap_threshold(mut launch: Launch, threshold: bool) -> Launch {
        launch.env.push((
            "MALLOC_MMAP_THRESHOLD_".to_owned(),
            threshold.then(|| "1048576".to_owned()),
        ));
        launch
    }

    // ---------------------------------------------------------------------
    // One request, its answer
    // ---------------------------------------------------------------------

    /// What came back for one request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Answer {
        status: u16,
        retry_after: bool,
        /// The server said it closes the connection.
        close: bool,
    }

    /// How one login ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Outcome {
        Answered(Answer),
        /// Could not connect, or the connection was closed or reset before an answer.
        Closed,
        /// No answer within [`WAIT`].
        NoAnswer,
    }

    impl Outcome {
        /// A name to count outcomes under.
        fn key(self) -> String {
            match self {
                Self::Answered(Answer {
                    status: 503,
                    retry_after: false,
                    ..
                }) => "503 without Retry-After".to_owned(),
                Self::Answered(answer) => answer.status.to_string(),
                Self::Closed => "closed".to_owned(),
                Self::NoAnswer => "no answer".to_owned(),
            }
        }

        fn status(self) -> Option<u16> {
            match self {
                Self::Answered(answer) => Some(answer.status),
                _ => None,
            }
        }
    }

    /// Sends `request` on `stream` and reads one whole answer.
    async fn exchange(
        stream: &mut TcpStream,
        request: &[u8],
        buffer: &mut Vec<u8>,
    ) -> std::io::Result<Answer> {
        let broken = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        stream.write_all(request).await?;
        buffer.clear();
        let head_end = loop {
            if stream.read_buf(buffer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buffer.len() > 64 * 1024 {
                return Err(broken("a header larger than 64 KiB"));
            }
        };
        let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| broken("not UTF-8"))?;
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| broken("no status line"))?;
        let (mut length, mut retry_after, mut close) = (0, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse().map_err(|_| broken("length"))?,
                "retry-after" => retry_after = true,
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        while buffer.len() < head_end + length {
            if stream.read_buf(buffer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(Answer {
            status,
            retry_after,
            close,
        })
    }

    /// One login on a new connection from `from`: how it ended and how long it took.
    async fn login_once(from: [u8; 4], to: SocketAddr, request: &[u8]) -> (Outcome, Duration) {
        let started = Instant::now();
        let attempt = async {
            let mut stream = connect_from(from, to).await?;
            exchange(&mut stream, request, &mut Vec::with_capacity(1024)).await
        };
        let outcome = match tokio::time::timeout(WAIT, attempt).await {
            Ok(Ok(answer)) => Outcome::Answered(answer),
            Ok(Err(_)) => Outcome::Closed,
            Err(_) => Outcome::NoAnswer,
        };
        (outcome, started.elapsed())
    }

    type Counts = BTreeMap<String, u64>;

    fn describe(counts: &Counts) -> String {
        if counts.is_empty() {
            return "none".to_owned();
        }
        counts
            .iter()
            .map(|(key, n)| format!("{key}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn process_cpu() -> Duration {
        cpu_time::ProcessTime::try_now().map_or(Duration::ZERO, |t| t.as_duration())
    }

    /// CPU time the whole machine spent busy so far (`/proc/stat`: user, nice,
    /// system, irq, softirq), and stolen by the hypervisor.
    fn machine_cpu() -> (Duration, Duration) {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        let tick = |indices: &[usize]| {
            let sum: u64 = indices.iter().filter_map(|&i| ticks.get(i)).sum();
            #[expect(clippy::cast_precision_loss, reason = "tick counts are small")]
            let seconds = sum as f64 / procfs::ticks_per_second() as f64;
            Duration::from_secs_f64(seconds)
        };
        (tick(&[0, 1, 2, 5, 6]), tick(&[7]))
    }

    /// Where the CPU time went while an attack ran.
    #[derive(Debug, Clone, Copy, Default)]
    struct CpuShare {
        server: Duration,
        generator: Duration,
        machine: Duration,
        stolen: Duration,
        wall: Duration,
    }

    impl CpuShare {
        fn start(server: &Server) -> Self {
            let (machine, stolen) = machine_cpu();
            Self {
                server: server.cpu(),
                generator: process_cpu(),
                machine,
                stolen,
                wall: Duration::ZERO,
            }
        }

        /// From `start` until now.
        fn since(self, server: &Server, started: Instant) -> Self {
            let (machine, stolen) = machine_cpu();
            Self {
                server: server.cpu().saturating_sub(self.server),
                generator: process_cpu().saturating_sub(self.generator),
                machine: machine.saturating_sub(self.machine),
                stolen: stolen.saturating_sub(self.stolen),
                wall: started.elapsed(),
            }
        }

        fn figure(&self) -> String {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            let others = self
                .machine
                .saturating_sub(self.server)
                .saturating_sub(self.generator);
            format!(
                "{:.1} s / {:.1} s / {:.1} s (of {:.0} s; stolen {:.1} s)",
                self.server.as_secs_f64(),
                self.generator.as_secs_f64(),
                others.as_secs_f64(),
                self.wall.as_secs_f64() * f64::from(u32::try_from(cores).unwrap_or(1)),
                self.stolen.as_secs_f64()
            )
        }
    }

    /// The legitimate user's logins: what came back, and how fast.
    #[derive(Debug, Default)]
    struct Probes(Vec<(Outcome, Duration)>);

    impl Probes {
        fn latencies(&self) -> Vec<Duration> {
            let mut latencies: Vec<Duration> = self.0.iter().map(|(_, took)| *took).collect();
            latencies.sort();
            latencies
        }

        fn counts(&self) -> Counts {
            let mut counts = Counts::new();
            for (outcome, _) in &self.0 {
                *counts.entry(outcome.key()).or_default() += 1;
            }
            counts
        }

        fn latency_figure(&self) -> String {
            let latencies = self.latencies();
            format!(
                "{} / {} / {}",
                ms(percentile(&latencies, 50)),
                ms(percentile(&latencies, 99)),
                ms(latencies.last().copied().unwrap_or_default())
            )
        }

        /// Every login answered within `bound` with a 200, or a 503 with `Retry-After`.
        fn all_answered_within(&self, bound: Duration) -> bool {
            !self.0.is_empty()
                && self.0.iter().all(|(outcome, took)| {
                    *took <= bound
                        && matches!(
                            outcome,
                            Outcome::Answered(
                                Answer { status: 200, .. }
                                    | Answer {
                                        status: 503,
                                        retry_after: true,
                                        ..
                                    }
                            )
                        )
                })
        }

        fn ok(&self) -> usize {
            self.0
                .iter()
                .filter(|(outcome, _)| outcome.status() == Some(200))
                .count()
        }
    }

    /// A legitimate user logging in every `every` from `addresses` in turn,
    /// while `until`; each login on a new connection, none waiting for another.
    async fn legitimate_user(
        to: SocketAddr,
        addresses: Vec<[u8; 4]>,
        every: Duration,
        first_after: Duration,
        until: Instant,
    ) -> Probes {
        let request: Arc<[u8]> = login_request(LOGIN).into_bytes().into();
        let mut logins = Vec::new();
        let mut next = Instant::now() + first_after;
        let mut index = 0;
        while next < until {
            tokio::time::sleep_until(next.into()).await;
            let (from, request) = (addresses[index % addresses.len()], Arc::clone(&request));
            logins.push(tokio::spawn(
                async move { login_once(from, to, &request).await },
            ));
            index += 1;
            next += every;
        }
        let mut probes = Probes::default();
        for login in logins {
            if let Ok(result) = login.await {
                probes.0.push(result);
            }
        }
        probes
    }

    /// One figure per row, one column per server.
    struct Comparison {
        title: String,
        columns: Vec<String>,
        rows: Vec<(String, Vec<String>)>,
        notes: Vec<String>,
    }

    impl Comparison {
        fn new(title: impl Into<String>, columns: &[&str]) -> Self {
            Self {
                title: title.into(),
                columns: columns.iter().map(|c| (*c).to_owned()).collect(),
                rows: Vec::new(),
                notes: Vec::new(),
            }
        }

        fn row(&mut self, figure: impl Into<String>, cells: Vec<String>) {
            self.rows.push((figure.into(), cells));
        }

        fn print(&self) {
            let mut table = Table::new();
            table.load_preset(presets::ASCII_MARKDOWN);
            let mut header = vec!["figure".to_owned()];
            header.extend(self.columns.iter().cloned());
            table.set_header(header);
            for (figure, cells) in &self.rows {
                let mut row = vec![figure.clone()];
                row.extend(cells.iter().cloned());
                table.add_row(row);
            }
            println!("\n### {}\n\n{table}\n", self.title);
            for note in &self.notes {
                println!("{note}");
            }
        }
    }

    fn met(yes: bool) -> &'static str {
        if yes { "met" } else { "MISSED" }
    }

    // ---------------------------------------------------------------------
    // Guessing
    // ---------------------------------------------------------------------

    /// What one guessing run saw.
    struct Guessing {
        answers: Counts,
        elapsed: Duration,
        probes: Probes,
        cpu: CpuShare,
    }

    async fn guessing(binary: &Path) -> anyhow::Result<()> {
        let mut runs = Vec::new();
        for (name, launch) in [
            ("defences on", defences_on()),
            ("defences off", defences_off()),
        ] {
            eprintln!(
                "guessing ({name}): 127.0.0.2, {GUESSING_CONNECTIONS} connections, {GUESSING_FOR:?}..."
            );
            runs.push(guess(binary, &launch).await?);
        }
        let mut table = Comparison::new(
            format!(
                "guessing: one address, {GUESSING_CONNECTIONS} connections of wrong passwords \
                 for {} s; a legitimate user logs in from another every second",
                GUESSING_FOR.as_secs()
            ),
            &["defences on", "defences off"],
        );
        let each = |f: &dyn Fn(&Guessing) -> String| runs.iter().map(f).collect::<Vec<_>>();
        let rate = |run: &Guessing, status: &str| {
            per_second(run.answers.get(status).copied().unwrap_or(0), run.elapsed)
        };
        table.row(
            "guesses checked (401) per second",
            each(&|run| format!("{:.1}", rate(run, "401"))),
        );
        table.row(
            "refused (429) per second",
            each(&|run| format!("{:.0}", rate(run, "429"))),
        );
        table.row("the guesser's answers", each(&|run| describe(&run.answers)));
        table.row(
            "legitimate logins (127.0.0.3)",
            each(&|run| describe(&run.probes.counts())),
        );
        table.row(
            "legitimate login latency p50 / p99 / max",
            each(&|run| run.probes.latency_figure()),
        );
        table.row(
            "CPU time: server / this generator / other processes",
            each(&|run| run.cpu.figure()),
        );
        let on = &runs[0];
        let checked = on.answers.get("401").copied().unwrap_or(0);
        // The burst, and one more attempt a second.
        let allowed = 10 + GUESSING_FOR.as_secs() + 1;
        table.notes.push(format!(
            "goal: with the defences, the guesser gets at most its burst and one guess a second \
             checked ({allowed} in {} s): {checked}, {}",
            GUESSING_FOR.as_secs(),
            met(checked <= allowed)
        ));
        let legit_ok = on.probes.ok() == on.probes.0.len() && !on.probes.0.is_empty();
        table.notes.push(format!(
            "goal: with the defences, every legitimate login from the other address succeeds: {}",
            met(legit_ok)
        ));
        table.print();
        Ok(())
    }

    async fn guess(binary: &Path, launch: &Launch) -> anyhow::Result<Guessing> {
        let server = Server::launch(binary, launch)?;
        let to = server.login;
        let cpu = CpuShare::start(&server);
        let started = Instant::now();
        let until = started + GUESSING_FOR;
        let request: Arc<[u8]> = login_request(WRONG).into_bytes().into();
        let mut guessers = Vec::new();
        for _ in 0..GUESSING_CONNECTIONS {
            let request = Arc::clone(&request);
            guessers.push(tokio::spawn(async move {
                let mut counts = Counts::new();
                let mut buffer = Vec::with_capacity(1024);
                let mut stream = None;
                while Instant::now() < until {
                    let connection = match stream.take() {
                        Some(connection) => connection,
                        None => {
                            match tokio::time::timeout_at(
                                until.into(),
                                connect_from([127, 0, 0, 2], to),
                            )
                            .await
                            {
                                Ok(Ok(connection)) => connection,
                                Ok(Err(_)) => {
                                    *counts.entry("closed".to_owned()).or_default() += 1;
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    continue;
                                }
                                Err(_) => break,
                            }
                        }
                    };
                    let mut connection = connection;
                    // An answer that comes after the end is not counted.
                    match tokio::time::timeout_at(
                        until.into(),
                        exchange(&mut connection, &request, &mut buffer),
                    )
                    .await
                    {
                        Ok(Ok(answer)) => {
                            *counts.entry(Outcome::Answered(answer).key()).or_default() += 1;
                            if !answer.close {
                                stream = Some(connection);
                            }
                        }
                        Ok(Err(_)) => *counts.entry("closed".to_owned()).or_default() += 1,
                        Err(_) => break,
                    }
                }
                counts
            }));
        }
        let probes = legitimate_user(
            to,
            vec![[127, 0, 0, 3]],
            Duration::from_secs(1),
            Duration::from_millis(500),
            until,
        )
        .await;
        let mut answers = Counts::new();
        for guesser in guessers {
            for (key, n) in guesser.await? {
                *answers.entry(key).or_default() += n;
            }
        }
        Ok(Guessing {
            answers,
            elapsed: GUESSING_FOR,
            probes,
            cpu: cpu.since(&server, started),
        })
    }

    // ---------------------------------------------------------------------
    // Flood
    // ---------------------------------------------------------------------

    /// Logins a second the server answers 200 with `2 × cores` connections
    /// sending back to back, defences off.
    async fn capacity(binary: &Path) -> anyhow::Result<f64> {
        let server = Server::launch(binary, &defences_off())?;
        let to = server.login;
        let connections =
            2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
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
    struct Flood {
        offered: u64,
        sent: u64,
        skipped: u64,
        answers: Counts,
        probes: Probes,
        idle_rss: u64,
        peak_rss: u64,
        end_rss: u64,
        later_rss: u64,
        last_answer: Duration,
        cpu: CpuShare,
    }

    async fn flood(binary: &Path, args: &Args) -> anyhow::Result<()> {
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
            runs.push(
                flood_once(binary, &with_mmap_threshold(launch, threshold), rate, args).await?,
            );
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

    fn flood_table(
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

    async fn flood_once(
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

    // ---------------------------------------------------------------------
    // The cheap path
    // ---------------------------------------------------------------------

    const MALFORMED: &str = r#"{"username":"#;

    /// One `wrk` run: requests a second, answers that were 2xx (none expected:
    /// each was hashed), and the server's CPU time per request.
    struct WrkRun {
        rate: f64,
        ok: u64,
        cpu_per_request: Duration,
    }

    fn cheap_path(binary: &Path, args: &Args) -> anyhow::Result<()> {
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

    fn cheap_path_table(
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
    async fn spend_the_burst(to: SocketAddr) -> anyhow::Result<()> {
        let request = login_request(LOGIN).into_bytes();
        for _ in 0..100 {
            let (outcome, _) = login_once([127, 0, 0, 1], to, &request).await;
            if outcome.status() == Some(429) {
                return Ok(());
            }
        }
        bail!("100 logins from one address and none refused: is the throttle on?")
    }

    fn wrk(server: &Server, script: &Path, seconds: u64) -> anyhow::Result<WrkRun> {
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
    fn throttle_calls() -> (f64, f64) {
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
}
