//! Runs the `login_server` example binary the way a user does, and talks to it
//! over HTTP: the README's first command, tested.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

/// Kills the server when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the example (a no-op after `cargo test` built it) and returns a
/// command that runs it.
fn example(name: &str) -> Command {
    escargot::CargoBuild::new()
        .example(name)
        .current_release()
        .run()
        .unwrap_or_else(|error| panic!("building example {name}: {error}"))
        .command()
}

/// Finds `key=ADDR` in the server's "listening" log line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    Some(line[start..].split_whitespace().next()?.to_owned())
}

#[tokio::test]
async fn login_server_example_serves_login_and_metrics_on_two_ports() {
    let mut child = example("login_server")
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let server = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server logs where it listens");
    let login = field(&line, "login").unwrap_or_else(|| panic!("no login= in {line:?}"));
    let metrics = field(&line, "metrics").unwrap_or_else(|| panic!("no metrics= in {line:?}"));

    let client = reqwest::Client::new();
    let ok = client
        .post(format!("http://{login}/login"))
        .json(&json!({"username": "user", "password": "pass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), reqwest::StatusCode::OK);
    let denied = client
        .post(format!("http://{login}/login"))
        .json(&json!({"username": "wrong_user", "password": "wrong_pass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), reqwest::StatusCode::UNAUTHORIZED);

    let text = client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("login_requests_total{status_code=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("login_requests_total{status_code=\"401\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("login_request_latency_seconds_count 2"),
        "{text}"
    );
    drop(server);
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
