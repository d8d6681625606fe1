//! What the per-request log line costs on the cheap path, measured side by side.
//!
//! ```sh
//! cargo run -p lab --release --bin log_overhead            # needs `wrk` on PATH
//! cargo run -p lab --release --bin log_overhead -- --rounds 5 --seconds 5
//! ```
//!
//! Three servers answer the same malformed `POST /login` (a 400, no hashing), one
//! after another, in rounds, under `wrk -t1 -c8`, each a fresh process with its
//! stdout read by a pipe as a log shipper would:
//!
//! - `bare`: axum answering a constant 400, with no layers and no logging: the ceiling;
//! - `server, RUST_LOG=info`: the login server as shipped, one log line per request;
//! - `server, RUST_LOG=warn`: the same server with the request lines turned off.
//!
//! It prints each run and the median of each, and the ratio the book's appendix
//! reports: the shipped server's throughput over the bare figure.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use lab::stats::median;

#[derive(Parser)]
struct Args {
    /// Rounds of the three servers.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Internal: serve one variant and print its port (used by the parent process).
    #[arg(long, hide = true)]
    child: Option<String>,
}

const WRK_SCRIPT: &str = r#"wrk.method = "POST"
wrk.body = '{"username":'
wrk.headers["Content-Type"] = "application/json"
"#;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(variant) = &args.child {
        return child(variant);
    }
    ensure!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is not on PATH (Debian: apt install wrk)"
    );
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(script.path(), WRK_SCRIPT)?;

    let variants = [
        ("bare axum, constant 400", "bare", None),
        ("login server, RUST_LOG=info", "server", Some("info")),
        ("login server, RUST_LOG=warn", "server", Some("warn")),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 1..=args.rounds {
        for (index, (name, variant, log)) in variants.iter().enumerate() {
            let rate = run(variant, *log, script.path(), args.seconds)?;
            println!("round {round}: {name:<30} {rate:>9.0} req/s");
            results[index].push(rate);
        }
    }
    let medians: Vec<f64> = results.iter().map(|r| median(r.iter().copied())).collect();
    println!();
    for ((name, ..), median) in variants.iter().zip(&medians) {
        println!("median: {name:<30} {median:>9.0} req/s");
    }
    println!(
        "default logging ÷ bare axum: {:.2}   (RUST_LOG=warn ÷ bare axum: {:.2})",
        medians[1] / medians[0],
        medians[2] / medians[0]
    );
    Ok(())
}

/// Starts one server variant, loads it with wrk, and returns the requests per second.
fn run(
    variant: &str,
    log: Option<&str>,
    script: &std::path::Path,
    seconds: u64,
) -> anyhow::Result<f64> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--child", variant])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(log) = log {
        command.env("RUST_LOG", log);
    }
    let mut server = Server(command.spawn()?);
    // The log goes through a pipe that something reads, as in production.
    let mut stdout = server.0.stdout.take().context("stdout")?;
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let mut port_line = String::new();
    BufReader::new(server.0.stderr.take().context("stderr")?).read_line(&mut port_line)?;
    let port: u16 = port_line
        .trim()
        .parse()
        .context("the child prints its port")?;

    let output = Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{seconds}s"), "-s"])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/login"))
        .output()?;
    drop(server);
    let _ = drain.join();
    let text = String::from_utf8_lossy(&output.stdout);
    if !text.contains("Non-2xx or 3xx responses") {
        bail!("wrk did not get the expected 400s:\n{text}");
    }
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

/// Kills the child server when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn child(variant: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    eprintln!("{}", listener.local_addr()?.port());
    match variant {
        "bare" => {
            let app = axum::Router::new().route(
                "/login",
                axum::routing::post(|| async { axum::http::StatusCode::BAD_REQUEST }),
            );
            axum::serve(listener, app).await?;
        }
        "server" => {
            let _logging = login_metrics::logging::init();
            let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let state =
                login_metrics::AppState::new(login_metrics::auth::UserStore::with_demo_user());
            login_metrics::serve(listener, metrics, state, std::future::pending()).await?;
        }
        other => bail!("unknown variant {other}"),
    }
    Ok(())
}
