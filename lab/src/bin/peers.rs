//! The production server against the same login handler bare, with its peers'
//! instrumentation, and against the minimal servers of "Choosing a metrics crate",
//! on the cheap path (a malformed body answered 400), side by side in one run (the
//! appendix "What monitoring costs").
//!
//! ```sh
//! cargo run -p lab --release --bin peers            # needs wrk and valgrind on PATH
//! cargo run -p lab --release --bin peers -- --rounds 3 --seconds 5 --requests 20000
//! cargo run -p lab --release --bin peers -- --rounds 0 --only server --keep /tmp/cg
//! callgrind_annotate --inclusive=yes /tmp/cg/server-10000.out | head -60
//! ```
//!
//! Every variant is a process of its own, started fresh for each measurement, its
//! output read by a pipe as a log shipper would:
//!
//! - `handler`: the server's own `POST /login` handler (`routes::login`: the same
//!   body timeout, JSON parsing and JSON 400) in a bare axum router: the baseline;
//! - `server`: the real `login_server` binary with its defaults: every defence and
//!   the default log line;
//! - `axum-example`: the handler under the middleware of axum's `prometheus-metrics`
//!   example (`middleware::from_fn` recording through the `metrics` crate);
//! - `axum-prometheus`: the handler under `axum-prometheus` 0.10's layer;
//! - `minimal-handler`: the minimal server's handler (plain `Json` extraction)
//!   in a bare router: the baseline of the three minimal servers;
//! - `minimal`, `with_prometheus_client`, `with_metrics`: the minimal server with
//!   each crate, the readers' examples as they are;
//! - `constant-400`: axum answering a constant 400 without reading the body.
//!
//! Throughput: each variant under `wrk -t1 -c8` for `--seconds`, the variants
//! interleaved, `--rounds` times; the best round of each counts. Instructions:
//! each variant under `valgrind --tool=callgrind`, sent `--requests / 4` and then
//! `--requests` malformed logins over keep-alive connections by this process;
//! the difference of the two runs' totals (every thread of the server, start-up
//! and shutdown cancelled out), divided by the difference in requests.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use comfy_table::Table;
use lab::keep_alive::post_logins;
use login_metrics_testkit::example;

#[derive(Parser)]
struct Args {
    /// Rounds of throughput runs; the best of each variant counts.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds of load per throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests in the longer of the two instruction counts (0: no counts).
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Keep callgrind's files here (for `callgrind_annotate`) rather than in a
    /// temporary directory.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Only these variants (by name; the baselines are always run).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Internal: serve one lab variant and print where (used by the parent process).
    #[arg(long, hide = true)]
    child: Option<String>,
}

/// The cheap path: a body cut short, answered 400 without hashing.
const MALFORMED: &str = r#"{"username": "user", "password": "#;

const WRK_SCRIPT: &str = r#"wrk.method = "POST"
wrk.body = '{"username": "user", "password": '
wrk.headers["Content-Type"] = "application/json"
"#;

/// One server to measure.
struct Variant {
    name: &'static str,
    what: &'static str,
    /// The variant whose instrumentation this one adds, if any.
    baseline: &'static str,
    program: Program,
}

enum Program {
    /// This binary with `--child NAME`.
    Lab,
    /// The `login_server` example with its defaults.
    Server,
    /// An example of a workspace package that takes `LOGIN_ADDR` and `LOGIN_METRICS_ADDR`.
    Example(&'static str),
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "handler",
        what: "the server's login handler, uninstrumented",
        baseline: "handler",
        program: Program::Lab,
    },
    Variant {
        name: "server",
        what: "production server (login_server), default log line",
        baseline: "handler",
        program: Program::Server,
    },
    Variant {
        name: "axum-example",
        what: "handler + axum's example middleware (from_fn, metrics)",
        baseline: "handler",
        program: Program::Lab,
    },
    Variant {
        name: "axum-prometheus",
        what: "handler + axum-prometheus 0.10 layer",
        baseline: "handler",
        program: Program::Lab,
    },
    Variant {
        name: "minimal-handler",
        what: "the minimal server's handler, uninstrumented",
        baseline: "minimal-handler",
        program: Program::Lab,
    },
    Variant {
        name: "minimal",
        what: "minimal server, prometheus",
        baseline: "minimal-handler",
        program: Program::Example("login-metrics"),
    },
    Variant {
        name: "with_prometheus_client",
        what: "minimal server, prometheus-client (log line)",
        baseline: "minimal-handler",
        program: Program::Example("crates-compared"),
    },
    Variant {
        name: "with_metrics",
        what: "minimal server, metrics + metrics-exporter-prometheus",
        baseline: "minimal-handler",
        program: Program::Example("crates-compared"),
    },
    Variant {
        name: "constant-400",
        what: "axum answering a constant 400, reading no body",
        baseline: "constant-400",
        program: Program::Lab,
    },
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(variant) = &args.child {
        return child(variant);
    }
    let variants: Vec<&Variant> = VARIANTS
        .iter()
        .filter(|v| {
            args.only.is_empty()
                || args.only.iter().any(|name| name == v.name)
                || ["handler", "minimal-handler"].contains(&v.name)
        })
        .collect();
    let commands = variants
        .iter()
        .map(|variant| Ok((variant.name, command_of(variant)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let command =
        |name: &str| -> &Launcher { &commands.iter().find(|(n, _)| *n == name).expect("known").1 };
    println!("{}", lab_machine());

    let mut rates = vec![0.0_f64; variants.len()];
    if args.rounds > 0 {
        ensure!(
            Command::new("wrk").arg("--version").output().is_ok(),
            "wrk is not on PATH (Debian: apt install wrk)"
        );
        let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
        std::fs::write(script.path(), WRK_SCRIPT)?;
        for round in 1..=args.rounds {
            for (index, variant) in variants.iter().enumerate() {
                let rate = throughput(command(variant.name), script.path(), args.seconds)
                    .with_context(|| format!("throughput of {}", variant.name))?;
                println!("round {round}: {:<24} {rate:>9.0} req/s", variant.name);
                rates[index] = rates[index].max(rate);
            }
        }
    }

    let mut instructions = vec![f64::NAN; variants.len()];
    if args.requests > 0 {
        let temporary = tempfile::tempdir()?;
        let dir = args.keep.as_deref().unwrap_or(temporary.path());
        std::fs::create_dir_all(dir)?;
        let (long, short) = (args.requests, args.requests / 4);
        for (index, variant) in variants.iter().enumerate() {
            let mut totals = [0_u64; 2];
            for (total, requests) in totals.iter_mut().zip([short, long]) {
                let out = dir.join(format!("{}-{requests}.out", variant.name));
                *total = count(command(variant.name), &out, requests)
                    .with_context(|| format!("instructions of {}", variant.name))?;
            }
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            let per_request = (totals[1] as f64 - totals[0] as f64) / (long - short) as f64;
            println!(
                "instructions: {:<24} {per_request:>9.0} per request",
                variant.name
            );
            instructions[index] = per_request;
        }
    }

    report(&variants, &rates, &instructions);
    Ok(())
}

/// Prints the table, with each variant's ratios to the handler and to its own
/// baseline, and the production server's goals.
fn report(variants: &[&Variant], rates: &[f64], instructions: &[f64]) {
    let find = |name: &str| {
        variants
            .iter()
            .position(|v| v.name == name)
            .expect("baselines are always run")
    };
    let handler = find("handler");
    let mut table = Table::new();
    table.set_header([
        "variant",
        "req/s (best)",
        "÷ handler",
        "÷ its baseline",
        "instructions/request",
        "handler's ÷ these",
        "its baseline's ÷ these",
    ]);
    for (index, variant) in variants.iter().enumerate() {
        let baseline = find(variant.baseline);
        table.add_row([
            variant.what.to_owned(),
            format!("{:.0}", rates[index]),
            format!("{:.2}", rates[index] / rates[handler]),
            format!("{:.2}", rates[index] / rates[baseline]),
            format!("{:.0}", instructions[index]),
            format!("{:.2}", instructions[handler] / instructions[index]),
            format!("{:.2}", instructions[baseline] / instructions[index]),
        ]);
    }
    println!("\n{table}");
    let rate = |name: &str| {
        variants
            .iter()
            .position(|v| v.name == name)
            .map(|i| rates[i])
    };
    if let (Some(server), Some(example), Some(prometheus)) = (
        rate("server"),
        rate("axum-example"),
        rate("axum-prometheus"),
    ) {
        println!(
            "requests/s: server ÷ handler {:.2} (goal ≥ 0.85); server ÷ axum's example {:.2}, ÷ axum-prometheus {:.2} (goal > 1)",
            server / rates[handler],
            server / example,
            server / prometheus
        );
    }
    let per_request = |name: &str| {
        variants
            .iter()
            .position(|v| v.name == name)
            .map(|i| instructions[i])
    };
    if let (Some(server), Some(example), Some(prometheus)) = (
        per_request("server"),
        per_request("axum-example"),
        per_request("axum-prometheus"),
    ) {
        println!(
            "instructions: handler ÷ server {:.2} (goal ≥ 0.85); axum's example ÷ server {:.2}, axum-prometheus ÷ server {:.2} (goal > 1)",
            instructions[handler] / server,
            example / server,
            prometheus / server
        );
    }
}

fn lab_machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// How to start one variant: a program, its arguments and environment.
struct Launcher {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, Option<&'static str>)>,
}

fn command_of(variant: &Variant) -> anyhow::Result<Launcher> {
    let on_any_port = vec![
        ("LOGIN_ADDR", Some("127.0.0.1:0")),
        ("LOGIN_METRICS_ADDR", Some("127.0.0.1:0")),
    ];
    Ok(match variant.program {
        Program::Lab => Launcher {
            program: std::env::current_exe()?,
            args: vec!["--child".into(), variant.name.into()],
            env: Vec::new(),
        },
        Program::Server => Launcher {
            program: example::release_binary("login_server")?,
            args: ["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"]
                .map(String::from)
                .to_vec(),
            // The defaults: one log line per request.
            env: vec![("RUST_LOG", None)],
        },
        Program::Example(package) => Launcher {
            program: PathBuf::from(example::example_of(package, variant.name).get_program()),
            args: Vec::new(),
            env: on_any_port,
        },
    })
}

/// A running variant, killed when dropped.
struct Running {
    child: Child,
    login: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `launcher`, under `wrapper` if given (valgrind), and waits for the
/// first line naming a loopback address: where it serves `/login`. Both output
/// streams are read to the end, as a log shipper would.
fn start(launcher: &Launcher, wrapper: &[String]) -> anyhow::Result<Running> {
    let mut command = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(&launcher.program);
            command
        }
        None => Command::new(&launcher.program),
    };
    command
        .args(&launcher.args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in &launcher.env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", launcher.program.display()))?;
    let (found, address) = std::sync::mpsc::channel();
    let outputs: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().context("stdout")?),
        Box::new(child.stderr.take().context("stderr")?),
    ];
    let pattern = regex::Regex::new(r"127\.0\.0\.1:\d+")?;
    for output in outputs {
        let (found, pattern) = (found.clone(), pattern.clone());
        std::thread::spawn(move || {
            let mut output = BufReader::new(output);
            let mut line = String::new();
            while output.read_line(&mut line).is_ok_and(|n| n > 0) {
                if (line.contains("listening") || line.contains("login on"))
                    && let Some(address) = pattern.find(&line)
                {
                    let _ = found.send(address.as_str().to_owned());
                }
                line.clear();
            }
            let _ = std::io::copy(&mut output, &mut std::io::sink());
        });
    }
    let mut running = Running {
        child,
        login: "127.0.0.1:0".parse()?,
    };
    let address = address
        .recv_timeout(Duration::from_secs(120))
        .with_context(|| format!("{} never said where it listens", launcher.program.display()))?;
    running.login = address.parse()?;
    Ok(running)
}

/// Requests per second under `wrk -t1 -c8`, every answer a 400.
fn throughput(launcher: &Launcher, script: &Path, seconds: u64) -> anyhow::Result<f64> {
    let server = start(launcher, &[])?;
    let output = Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{seconds}s"), "-s"])
        .arg(script)
        .arg(format!("http://{}/login", server.login))
        .output()?;
    drop(server);
    let text = String::from_utf8_lossy(&output.stdout);
    let answers: f64 = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.parse().ok())
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    let not_400: f64 = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0.0);
    ensure!(
        (answers - not_400).abs() < 1.0,
        "wrk did not get only error answers:\n{text}"
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

/// The instructions the whole server process executes, under callgrind, to
/// start, answer `requests` malformed logins over one connection, and stop on
/// SIGTERM.
fn count(launcher: &Launcher, out: &Path, requests: usize) -> anyhow::Result<u64> {
    let wrapper = [
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    let mut server = start(launcher, &wrapper)?;
    post_logins(
        server.login,
        std::iter::repeat_n((MALFORMED, "HTTP/1.1 400"), requests),
    )?;
    example::terminate(&server.child);
    let exited = example::exit_within(&mut server.child, Duration::from_secs(120));
    ensure!(exited.is_some(), "the server did not stop on SIGTERM");
    let text = std::fs::read_to_string(out)
        .with_context(|| format!("callgrind wrote no {}", out.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("summary:"))
        .and_then(|total| total.trim().parse().ok())
        .context("no summary line in callgrind's output")
}

/// axum's `prometheus-metrics` example's middleware, as the example writes it:
/// labels by method, matched path and status, recorded through `metrics`.
async fn track_metrics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> impl axum::response::IntoResponse {
    let start = std::time::Instant::now();
    let path = if let Some(matched) = request.extensions().get::<axum::extract::MatchedPath>() {
        matched.as_str().to_owned()
    } else {
        request.uri().path().to_owned()
    };
    let method = request.method().clone();
    let response = next.run(request).await;
    let latency = start.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_string()),
        ("path", path),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_requests_duration_seconds", &labels).record(latency);
    response
}

/// Serves one lab variant on loopback, `/metrics` (where it has one) on a
/// second listener, until SIGTERM.
#[tokio::main]
async fn child(variant: &str) -> anyhow::Result<()> {
    use axum::Router;
    use axum::routing::{get, post};
    use login_metrics::routes::login;

    let state = login_metrics::AppState::new(login_metrics::auth::UserStore::with_demo_user());
    let handler = Router::new().route("/login", post(login));
    let (app, metrics) = match variant {
        "handler" => (handler.with_state(state), None),
        "axum-example" => {
            let seconds = &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "http_requests_duration_seconds".into(),
                    ),
                    seconds,
                )?
                .install_recorder()?;
            // What `PrometheusBuilder::install` would run: drain the histograms.
            let upkeep = recorder.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    upkeep.run_upkeep();
                }
            });
            let app = handler
                .route_layer(axum::middleware::from_fn(track_metrics))
                .with_state(state);
            let page =
                Router::new().route("/metrics", get(move || async move { recorder.render() }));
            (app, Some(page))
        }
        "axum-prometheus" => {
            let (layer, handle) = axum_prometheus::PrometheusMetricLayer::pair();
            let page = Router::new().route("/metrics", get(move || async move { handle.render() }));
            (handler.with_state(state).layer(layer), Some(page))
        }
        "minimal-handler" => (Router::new().route("/login", post(minimal_login)), None),
        "constant-400" => (
            Router::new().route(
                "/login",
                post(|| async { axum::http::StatusCode::BAD_REQUEST }),
            ),
            None,
        ),
        other => bail!("unknown variant {other}"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("login on http://{}/login", listener.local_addr()?);
    if let Some(page) = metrics {
        let scrape = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        tokio::spawn(async move { axum::serve(scrape, page).await });
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(login_metrics::server::shutdown_signal())
        .await?;
    Ok(())
}

/// The minimal server's credentials and handler (`examples/minimal.rs`), as written there.
#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn minimal_login(
    axum::Json(credentials): axum::Json<Credentials>,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    use axum::http::StatusCode;
    use serde_json::json;
    if credentials.username == "user" && credentials.password == "pass" {
        (
            StatusCode::OK,
            axum::Json(json!({"message": "Login successful"})),
        )
    } else {
        let message = json!({"message": "Invalid username or password"});
        (StatusCode::UNAUTHORIZED, axum::Json(message))
    }
}
