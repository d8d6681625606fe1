//! One login and its answer, seen from outside the server: the raw exchange on a
//! connection of its own, the legitimate user who logs in while an attack runs,
//! and where the machine's CPU time went meanwhile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use lab::server_process::{LOGIN, Server, WAIT};
use lab::stats::{ms, percentile};
use login_metrics_testkit::clients::{connect_from, login_request};

/// What came back for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) retry_after: bool,
    /// The server said it closes the connection.
    pub(super) close: bool,
}

/// How one login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Answered(Answer),
    /// Could not connect, or the connection was closed or reset before an answer.
    Closed,
    /// No answer within [`WAIT`].
    NoAnswer,
}

impl Outcome {
    /// A name to count outcomes under.
    pub(super) fn key(self) -> String {
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

    pub(super) fn status(self) -> Option<u16> {
        match self {
            Self::Answered(answer) => Some(answer.status),
            _ => None,
        }
    }
}

/// Sends `request` on `stream` and reads one whole answer.
pub(super) async fn exchange(
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
pub(super) async fn login_once(
    from: [u8; 4],
    to: SocketAddr,
    request: &[u8],
) -> (Outcome, Duration) {
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

pub(super) type Counts = BTreeMap<String, u64>;

pub(super) fn describe(counts: &Counts) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(key, n)| format!("{key}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn process_cpu() -> Duration {
    cpu_time::ProcessTime::try_now().map_or(Duration::ZERO, |t| t.as_duration())
}

/// CPU time the whole machine spent busy so far (`/proc/stat`: user, nice,
/// system, irq, softirq), and stolen by the hypervisor.
pub(super) fn machine_cpu() -> (Duration, Duration) {
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
pub(super) struct CpuShare {
    pub(super) server: Duration,
    pub(super) generator: Duration,
    pub(super) machine: Duration,
    pub(super) stolen: Duration,
    pub(super) wall: Duration,
}

impl CpuShare {
    pub(super) fn start(server: &Server) -> Self {
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
    pub(super) fn since(self, server: &Server, started: Instant) -> Self {
        let (machine, stolen) = machine_cpu();
        Self {
            server: server.cpu().saturating_sub(self.server),
            generator: process_cpu().saturating_sub(self.generator),
            machine: machine.saturating_sub(self.machine),
            stolen: stolen.saturating_sub(self.stolen),
            wall: started.elapsed(),
        }
    }

    pub(super) fn figure(&self) -> String {
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
pub(super) struct Probes(pub(super) Vec<(Outcome, Duration)>);

impl Probes {
    pub(super) fn latencies(&self) -> Vec<Duration> {
        let mut latencies: Vec<Duration> = self.0.iter().map(|(_, took)| *took).collect();
        latencies.sort();
        latencies
    }

    pub(super) fn counts(&self) -> Counts {
        let mut counts = Counts::new();
        for (outcome, _) in &self.0 {
            *counts.entry(outcome.key()).or_default() += 1;
        }
        counts
    }

    pub(super) fn latency_figure(&self) -> String {
        let latencies = self.latencies();
        format!(
            "{} / {} / {}",
            ms(percentile(&latencies, 50)),
            ms(percentile(&latencies, 99)),
            ms(latencies.last().copied().unwrap_or_default())
        )
    }

    /// Every login answered within `bound` with a 200, or a 503 with `Retry-After`.
    pub(super) fn all_answered_within(&self, bound: Duration) -> bool {
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

    pub(super) fn ok(&self) -> usize {
        self.0
            .iter()
            .filter(|(outcome, _)| outcome.status() == Some(200))
            .count()
    }
}

/// A legitimate user logging in every `every` from `addresses` in turn,
/// while `until`; each login on a new connection, none waiting for another.
pub(super) async fn legitimate_user(
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
