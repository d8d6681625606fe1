//! The real `login_server` binary as a child process, measured from outside:
//! shared by the tools that attack it (`attack`, `under_attack`). Linux only:
//! memory and CPU time come from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use login_metrics_testkit::clients::{connect_from, login_request};
use login_metrics_testkit::example;
use login_metrics_testkit::exposition::sample;
use login_metrics_testkit::wait::{Check, poll_blocking};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stats::ms;

/// The open files limit each server runs under.
pub const OPEN_FILES: u32 = 4096;
/// Longest any single measurement waits.
pub const WAIT: Duration = Duration::from_secs(20);
/// The demo user's good credentials.
pub const LOGIN: &str = r#"{"username":"user","password":"pass"}"#;
/// Log lines kept for [`Server::log_lines_containing`]; later ones are read and dropped.
const KEPT_LINES: usize = 100_000;

/// How to start a server: flags and environment on top of the defaults.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// Flags after `--addr` and `--metrics-addr`.
    pub args: Vec<String>,
    /// Variables to set (`Some`) or remove (`None`) in the server's environment.
    pub env: Vec<(String, Option<String>)>,
    /// The login listener's address [default: `127.0.0.1:0`].
    pub login_addr: Option<String>,
    /// Read the log only until the server says where it listens, then leave the
    /// pipe open and unread, like a log shipper that stopped.
    pub unread_log: bool,
}

/// A server process, killed when dropped.
pub struct Server {
    /// The process (under `sh -c 'ulimit -n ...; exec ...'`, which it replaces).
    pub child: Child,
    /// Where it serves `POST /login`.
    pub login: SocketAddr,
    /// Where it serves `GET /metrics`.
    pub metrics: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// The standard output of a server launched with [`Launch::unread_log`].
    _unread: Option<Mutex<Box<dyn std::io::Read + Send>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The binary with its defaults (and `RUST_LOG=warn,login_server=info`).
    pub fn start(binary: &Path) -> anyhow::Result<Self> {
        Self::launch(binary, &Launch::default())
    }

    /// The binary under `ulimit -n` [`OPEN_FILES`], on ports of its own on
    /// loopback, its output read by threads of this process (as a log shipper
    /// would). `RUST_LOG` is `warn,login_server=info` unless `launch` says otherwise.
    pub fn launch(binary: &Path, launch: &Launch) -> anyhow::Result<Self> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {OPEN_FILES} && exec \"$0\" \"$@\""))
            .arg(binary)
            .arg("--addr")
            .arg(launch.login_addr.as_deref().unwrap_or("127.0.0.1:0"))
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(&launch.args)
            .env("RUST_LOG", "warn,login_server=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &launch.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let (lines, listening) = std::sync::mpsc::channel();
        let (unread_tx, unread_rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout_unread = launch.unread_log.then_some(unread_tx);
        for (index, output) in [
            Box::new(child.stdout.take().context("stdout is piped")?)
                as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().context("stderr is piped")?),
        ]
        .into_iter()
        .enumerate()
        {
            let (kept, lines) = (Arc::clone(&log), lines.clone());
            // Only standard output, where the log goes, is left unread.
            let unread = stdout_unread.clone().filter(|_| index == 0);
            std::thread::spawn(move || {
                let mut output = BufReader::new(output);
                let mut line = String::new();
                loop {
                    match output.read_line(&mut line) {
                        Ok(0) => return,
                        Ok(_) => {}
                        // Not UTF-8: keep the pipe drained all the same.
                        Err(_) => {
                            let _ = std::io::copy(&mut output, &mut std::io::sink());
                            return;
                        }
                    }
                    let text = line.trim_end();
                    if text.contains("listening") {
                        let _ = lines.send(text.to_owned());
                        if let Some(unread) = unread {
                            let _ = unread.send(output);
                            return;
                        }
                    }
                    let mut kept = kept.lock().expect("log lock");
                    if kept.len() < KEPT_LINES {
                        kept.push(text.to_owned());
                    } else {
                        // Enough kept: read the rest as fast as it comes.
                        drop(kept);
                        let _ = std::io::copy(&mut output, &mut std::io::sink());
                        return;
                    }
                    line.clear();
                }
            });
        }
        // Only the readers hold a sender now: a server that exits at once (a
        // flag it does not know) ends the wait at once.
        drop(lines);
        let Ok(line) = listening.recv_timeout(WAIT) else {
            let _ = child.kill();
            let _ = child.wait();
            let said = log.lock().expect("log lock").join(" ");
            anyhow::bail!(
                "{} never said where it listens: {}",
                binary.display(),
                said.chars().take(200).collect::<String>()
            );
        };
        let field = |key: &str| -> anyhow::Result<SocketAddr> {
            let start = line.find(&format!("{key}=")).context("no address")? + key.len() + 1;
            Ok(line[start..]
                .split_whitespace()
                .next()
                .context("no address")?
                .parse()?)
        };
        let unread = if launch.unread_log {
            Some(unread_rx.recv_timeout(WAIT).context("the log's reader")?)
        } else {
            None
        };
        Ok(Self {
            login: field("login")?,
            metrics: field("metrics")?,
            child,
            log,
            _unread: unread
                .map(|reader| Mutex::new(Box::new(reader) as Box<dyn std::io::Read + Send>)),
        })
    }

    fn process(&self) -> anyhow::Result<procfs::process::Process> {
        Ok(procfs::process::Process::new(i32::try_from(
            self.child.id(),
        )?)?)
    }

    /// File descriptors open in the process now.
    #[must_use]
    pub fn open_fds(&self) -> usize {
        self.process().and_then(|p| Ok(p.fd_count()?)).unwrap_or(0)
    }

    /// CPU time used so far.
    #[must_use]
    pub fn cpu(&self) -> Duration {
        #[expect(clippy::cast_precision_loss, reason = "ticks per second are few")]
        let ticks = procfs::ticks_per_second() as f64;
        self.process()
            .and_then(|p| Ok(p.stat()?))
            .map_or(Duration::ZERO, |stat| {
                #[expect(clippy::cast_precision_loss, reason = "tick counts are small")]
                let seconds = (stat.utime + stat.stime) as f64 / ticks;
                Duration::from_secs_f64(seconds)
            })
    }

    /// Resident memory now and at its peak (`VmRSS`, `VmHWM`), in MiB.
    #[must_use]
    pub fn memory(&self) -> (u64, u64) {
        self.process()
            .and_then(|p| Ok(p.status()?))
            .map_or((0, 0), |status| {
                (
                    status.vmrss.unwrap_or(0) / 1024,
                    status.vmhwm.unwrap_or(0) / 1024,
                )
            })
    }

    /// How many of the lines it logged (the first 100,000) contain `needle`.
    #[must_use]
    pub fn log_lines_containing(&self, needle: &str) -> usize {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Sends SIGTERM and waits up to `patience` for the exit.
    pub fn terminate(&mut self, patience: Duration) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let sent = Instant::now();
        let exited = poll_blocking("exited", patience, Duration::from_millis(20), || match self
            .child
            .try_wait()
        {
            Ok(Some(status)) => Check::Met(status),
            _ => Check::NotYet(String::new()),
        });
        match exited {
            Ok(status) => format!(
                "exited {:.1} s after it, {status}",
                sent.elapsed().as_secs_f64()
            ),
            Err(_) => format!("still running {} s after it: killed", patience.as_secs()),
        }
    }

    /// One scrape: its latency and text, or why it failed.
    pub async fn scrape(&self) -> Result<(Duration, String), String> {
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let text = client
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out (5 s)".to_owned()
                } else {
                    e.to_string()
                }
            })?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        Ok((started.elapsed(), text))
    }

    /// A scrape, described for the table.
    pub async fn scrape_figure(&self) -> String {
        match self.scrape().await {
            Ok((latency, _)) => format!("answered in {}", ms(latency)),
            Err(error) => format!("FAILED: {error}"),
        }
    }

    /// One good login from 127.0.0.9, on a new connection.
    pub async fn legitimate_login(&self) -> String {
        let started = Instant::now();
        let outcome = async {
            let mut stream = connect_from([127, 0, 0, 9], self.login).await?;
            stream.write_all(login_request(LOGIN).as_bytes()).await?;
            let mut answer = vec![0; 1024];
            let n = stream.read(&mut answer).await?;
            anyhow::Ok(String::from_utf8_lossy(&answer[..n]).into_owned())
        };
        match tokio::time::timeout(WAIT, outcome).await {
            Ok(Ok(answer)) if answer.starts_with("HTTP/1.1 200") => {
                format!("200 in {}", ms(started.elapsed()))
            }
            Ok(Ok(answer)) if answer.is_empty() => {
                format!("refused: closed after {}", ms(started.elapsed()))
            }
            Ok(Ok(answer)) => format!(
                "{} after {}",
                answer.lines().next().unwrap_or_default(),
                ms(started.elapsed())
            ),
            Ok(Err(error)) => format!("failed after {}: {error}", ms(started.elapsed())),
            Err(_) => format!("no answer in {} s", WAIT.as_secs()),
        }
    }

    /// A metric's value from the exposition, or "n/a".
    pub async fn metric(&self, series: &str) -> String {
        match self.scrape().await {
            Ok((_, text)) => sample(&text, series).map_or("n/a".to_owned(), |v| format!("{v}")),
            Err(_) => "no scrape".to_owned(),
        }
    }
}

/// The `login_server` binary to measure: `given`, or the example built in release
/// mode from this repository.
pub fn login_server_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    eprintln!("building the login_server example (release)...");
    example::release_binary("login_server")
}
