//! Runs the `login_server` example binary the way a user does, and talks to it
//! over HTTP: the README's first command, tested.

use login_metrics_testkit::example::example;
use login_metrics_testkit::logs::address_field;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use login_metrics_testkit::exposition::sample;
use login_metrics_testkit::wait::{Check, poll_blocking};
use serde_json::json;

/// Kills the server when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The running example, where it listens, and every line it logs.
struct Server {
    process: Running,
    login: String,
    metrics: String,
    lines: std::sync::mpsc::Receiver<String>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Sends SIGTERM, waits up to 10 s for the exit, and returns the exit status and
    /// every line the process wrote, read to the end of both streams: lines still in
    /// the pipes when the process exits are part of its log too.
    #[cfg(unix)]
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.process.0.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = poll_blocking(
            "exited after SIGTERM",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || match self.process.0.try_wait().unwrap() {
                Some(status) => Check::Met(status),
                None => Check::NotYet("still running".to_owned()),
            },
        )
        .unwrap_or_else(|timed_out| panic!("{timed_out}"));
        for reader in self.readers.drain(..) {
            reader.join().expect("the log reader ends at end of file");
        }
        (status, self.lines.try_iter().collect())
    }
}

/// Starts the example on free loopback ports with `RUST_LOG=log_level` and waits
/// for its "listening" line. Its output goes to pipes, not a terminal.
fn start_server(log_level: &str) -> Server {
    start_server_with(log_level, &[])
}

/// [`start_server`] with more environment variables.
fn start_server_with(log_level: &str, env: &[(&str, &str)]) -> Server {
    let mut child = example("login_server")
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", log_level)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let mut readers = Vec::new();
    for output in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the server logs where it listens");
        if line.contains("listening") {
            break line;
        }
    };
    Server {
        process: Running(child),
        login: address_field(&line, "login").to_string(),
        metrics: address_field(&line, "metrics").to_string(),
        lines,
        readers,
    }
}

async fn post_login(server: &Server, username: &str, password: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://{}/login", server.login))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn scrape(server: &Server) -> String {
    reqwest::get(format!("http://{}/metrics", server.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_server_example_serves_login_and_metrics_on_two_ports() {
    let server = start_server("info");
    assert_eq!(
        post_login(&server, "user", "pass").await,
        reqwest::StatusCode::OK
    );
    assert_eq!(
        post_login(&server, "wrong_user", "wrong_pass").await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    let text = scrape(&server).await;
    for (series, expected) in [
        (r#"login_requests_total{status_code="200"}"#, 1.0),
        (r#"login_requests_total{status_code="401"}"#, 1.0),
        ("login_request_latency_seconds_count", 2.0),
        ("log_lines_dropped_total", 0.0),
    ] {
        assert_eq!(
            sample(&text, series),
            Some(expected),
            "{series} in:\n{text}"
        );
    }
}

/// The series one replica exports, as Step 9's cardinality budget states it (its
/// parts are checked against the code by `tests/book_numbers.rs`): a new metric or
/// label value changes the budget, and this test says so.
fn series_per_replica_in_step_9() -> usize {
    let step_9 = std::fs::read_to_string(
        login_metrics_testkit::book::book_src_dir().join("step-9-scale.md"),
    )
    .unwrap();
    let said = regex::Regex::new(r"of\s+this\s+server\s+exports\s+(\d+)\s+series")
        .unwrap()
        .captures(&step_9)
        .expect("Step 9 says how many series one replica exports");
    said[1].parse().unwrap()
}

#[cfg(target_os = "linux")] // the process metrics are Linux's
#[tokio::test]
async fn one_replica_exports_the_series_step_9_budgets() {
    let server = start_server("info");
    let text = scrape(&server).await;
    let series = text.lines().filter(|line| !line.starts_with('#')).count();
    assert_eq!(
        series,
        series_per_replica_in_step_9(),
        "update book/src/step-9-scale.md#cardinality-budgets and this count:\n{text}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn login_server_example_stops_cleanly_on_sigterm_and_logs_each_request() {
    let server = start_server("info");
    assert_eq!(
        post_login(&server, "user", "wrong").await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    let (status, log) = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(log.iter().any(|l| l.contains("shutting down")), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("status=401")),
        "a request log line: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains('\u{1b}')),
        "colour codes in a log that is not a terminal: {log:#?}"
    );
}

/// The password must not appear at any level, including `debug` and `trace`, where
/// libraries log the most about each request.
#[cfg(unix)]
#[tokio::test]
async fn passwords_never_reach_the_log_at_any_level() {
    let secret = "Tr0ub4dor-and-3";
    for level in ["info", "debug", "trace"] {
        let server = start_server(level);
        assert_eq!(
            post_login(&server, "user", secret).await,
            reqwest::StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post_login(&server, secret, secret).await,
            reqwest::StatusCode::UNAUTHORIZED
        );
        let (status, log) = server.terminate();
        assert!(status.success(), "{level}: exit status {status}");
        assert!(
            log.iter().any(|l| l.contains("status=401")),
            "{level}: the request lines are there to search: {log:#?}"
        );
        let leaks: Vec<&String> = log.iter().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "RUST_LOG={level}: the password leaked: {leaks:#?}"
        );
    }
}

/// A switch read from the environment takes what people write: `LOGIN_NO_LIMIT=1`
/// turns the throttle off as `true` does, and `0` or `off` leave it on.
#[test]
fn login_no_limit_1_turns_the_per_client_throttle_off() {
    for (value, on) in [("1", false), ("yes", false), ("0", true), ("off", true)] {
        let server = start_server_with("info", &[("LOGIN_NO_LIMIT", value)]);
        let line = std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_secs(10)).ok())
            .find(|line| line.contains("per-client login throttle"))
            .unwrap_or_else(|| panic!("LOGIN_NO_LIMIT={value}: no throttle line"));
        assert!(
            line.contains(&format!(" on={on} ")),
            "LOGIN_NO_LIMIT={value}: {line}"
        );
    }
}

#[test]
fn login_server_example_refuses_to_start_without_users() {
    let output = example("login_server")
        .args([
            "--no-demo-user",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no users"));
}

#[tokio::test]
async fn login_server_example_with_a_web_config_file_asks_scrapes_for_the_password_over_tls() {
    use login_metrics_testkit::tls::{SCRAPE_USER, SERVER_NAME, SecureScrape};
    let secure = SecureScrape::generate().unwrap();
    let web_yml = secure.web_yml();
    let server = start_server_with(
        "info",
        &[("LOGIN_WEB_CONFIG_FILE", web_yml.to_str().unwrap())],
    );
    let metrics: std::net::SocketAddr = server.metrics.parse().unwrap();
    let url = format!("https://{SERVER_NAME}:{}/metrics", metrics.port());
    let client = secure.client(metrics).unwrap();
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let page = client
        .get(&url)
        .basic_auth(SCRAPE_USER, Some(secure.password()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &page,
            "login_metrics_scrapes_unauthorized_total{reason=\"missing\"}"
        ),
        Some(1.0)
    );
    let (_, lines) = server.terminate();
    let log = lines.join("\n");
    assert!(
        log.contains("metrics listener asks for credentials")
            && log.contains("basic_auth_users: 1")
            && log.contains("tls: true"),
        "{log}"
    );
    let hash = std::fs::read_to_string(&web_yml).unwrap();
    let hash = hash.split('\'').nth(1).expect("the hash, quoted");
    for secret in [secure.password(), hash] {
        assert!(!log.contains(secret), "a credential in the log:\n{log}");
    }
}

#[test]
fn login_server_example_refuses_to_start_with_a_web_config_it_does_not_implement() {
    let folder = tempfile::tempdir().unwrap();
    let web_yml = folder.path().join("web.yml");
    std::fs::write(
        &web_yml,
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: RequireAndVerifyClientCert\n",
    )
    .unwrap();
    let output = example("login_server")
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .arg("--web-config-file")
        .arg(&web_yml)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("client_auth_type"), "{stderr}");
}
