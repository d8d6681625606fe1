//! The repository's examples (the programs the book tells a reader to run), built
//! and run as separate processes, the way a reader runs them.
//!
//! `cargo test` builds every example before it runs a test, so [`example`] (and
//! [`example_of`], for another package of the workspace) only finds the binary it
//! already built. The lab's measurements want the example in release mode instead:
//! [`release_binary`]. [`ExampleServer`] runs a login server example the way a
//! reader runs it, and [`check_standalone`] builds one as the reader's own project.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::wait::{Check, poll_blocking};

/// What cargo sets in a test's environment about the crate under test. A build
/// started from inside a test inherits them, and build scripts that watch them
/// (ring's watches `CARGO_MANIFEST_DIR`) would then see a change and rebuild,
/// and the next `cargo test` would rebuild them back: left out.
fn set_by_cargo_for_this_crate(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// `cargo build --example name` in the repository, without the variables above.
fn build(name: &str) -> escargot::CargoBuild {
    let mut build = escargot::CargoBuild::new()
        .manifest_path(crate::repo_root().join("Cargo.toml"))
        .example(name);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_this_crate) {
            build = build.env_remove(key);
        }
    }
    build
}

/// Builds example `name` in the profile of the running test (a no-op after
/// `cargo test` built it) and returns a command that runs it. Not
/// `current_target()`: that would rebuild every dependency into a second target
/// directory.
#[must_use]
pub fn example(name: &str) -> Command {
    build(name)
        .current_release()
        .run()
        .unwrap_or_else(|error| panic!("building example {name}: {error}"))
        .command()
}

/// Builds example `name` in release mode and returns the path of its binary: what
/// a measurement runs, since a debug build measures the compiler, not the code.
pub fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    Ok(build(name)
        .release()
        .run()
        .with_context(|| format!("building example {name} (release)"))?
        .path()
        .to_owned())
}

/// Sends SIGTERM to `child`, as `docker stop`, systemd and Kubernetes do.
#[cfg(unix)]
pub fn terminate(child: &std::process::Child) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(
        sent.is_ok_and(|status| status.success()),
        "kill -TERM {pid} failed"
    );
}

/// The exit status of `child` once it has ended, waiting at most `patience`;
/// `None` if it is still running then.
pub fn exit_within(
    child: &mut std::process::Child,
    patience: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    poll_blocking(
        "the process to exit",
        patience,
        std::time::Duration::from_millis(20),
        || match child.try_wait() {
            Ok(Some(status)) => Check::Met(status),
            Ok(None) => Check::NotYet("still running".to_owned()),
            Err(error) => Check::NotYet(format!("try_wait: {error}")),
        },
    )
    .ok()
}

/// Builds example `name` of workspace package `package` (the crates compared in
/// `crates-compared/`, for example) in the profile of the running test, and
/// returns a command that runs it.
#[must_use]
pub fn example_of(package: &str, name: &str) -> Command {
    build(name)
        .package(package)
        .current_release()
        .run()
        .unwrap_or_else(|error| panic!("building example {name} of {package}: {error}"))
        .command()
}

/// A login server example (the minimal server, or one of its variants with other
/// crates) running as a process of its own, as a reader runs it; killed when dropped.
///
/// Every such example takes its two listen addresses from `LOGIN_ADDR` and
/// `LOGIN_METRICS_ADDR` and prints where it listens as its first line:
/// `login on http://IP:PORT/login, metrics on http://IP:PORT/metrics`. What it
/// prints after that (its request log, if it has one) is kept: [`output`](Self::output).
#[derive(Debug)]
pub struct ExampleServer {
    child: Child,
    /// `http://127.0.0.1:PORT/login`.
    pub login_url: String,
    /// `http://127.0.0.1:PORT/metrics`.
    pub metrics_url: String,
    /// `127.0.0.1:PORT`, where raw clients connect.
    pub login_addr: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ExampleServer {
    /// Runs `command` (from [`example`] or [`example_of`]) with its login listener on
    /// a free loopback port and its metrics listener on a free port of `metrics_ip`
    /// (0.0.0.0 for a Prometheus in a container), and waits for the line that says
    /// where it listens.
    pub fn start(mut command: Command, metrics_ip: &str) -> Self {
        let mut child = command
            .env("LOGIN_ADDR", "127.0.0.1:0")
            .env("LOGIN_METRICS_ADDR", format!("{metrics_ip}:0"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some((login, metrics)) = listen_addresses(&first) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first line: {first:?}");
        };
        let output = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                collected.lock().expect("not poisoned").push(line);
            }
        });
        let metrics = metrics.replace("0.0.0.0", "127.0.0.1");
        Self {
            child,
            login_url: format!("http://{login}/login"),
            metrics_url: format!("http://{metrics}/metrics"),
            login_addr: login,
            output,
        }
    }

    /// The port of the metrics listener, for Prometheus to scrape.
    #[must_use]
    pub fn metrics_port(&self) -> u16 {
        self.metrics_url
            .trim_end_matches("/metrics")
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("a port in the metrics URL")
    }

    /// The metrics page, as a scraper that asks for nothing in particular gets it.
    pub async fn scrape(&self) -> String {
        reqwest::get(&self.metrics_url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the metrics page answers")
            .text()
            .await
            .expect("the metrics page is text")
    }

    /// Every line the example printed after its first, so far.
    #[must_use]
    pub fn output(&self) -> Vec<String> {
        self.output.lock().expect("not poisoned").clone()
    }

    /// Sends SIGTERM, as `docker stop` and Kubernetes do.
    #[cfg(unix)]
    pub fn terminate(&self) {
        terminate(&self.child);
    }

    /// The exit status once the process has ended, waiting at most `patience`.
    pub fn exit_within(&mut self, patience: Duration) -> Option<ExitStatus> {
        exit_within(&mut self.child, patience)
    }
}

/// `(login address, metrics address)` from the first line an example prints.
fn listen_addresses(line: &str) -> Option<(String, String)> {
    let rest = line.trim_end().strip_prefix("login on http://")?;
    let (login, metrics) = rest.split_once("/login, metrics on http://")?;
    let metrics = metrics.strip_suffix("/metrics")?;
    Some((login.to_owned(), metrics.to_owned()))
}

/// Builds `source` as the `src/main.rs` of a project of its own whose manifest holds
/// only the dependency lines of `listing` (both relative to the repository): what a
/// reader who copies the two gets. Offline, with this repository's lock file, so the
/// versions are the ones tested here, and with a target directory of its own under
/// `target/` that outlives the run, so the next run is incremental. `Err` carries
/// cargo's messages.
pub fn check_standalone(name: &str, listing: &str, source: &str) -> anyhow::Result<()> {
    let root = crate::repo_root();
    let dependencies = std::fs::read_to_string(root.join(listing))
        .with_context(|| format!("reading {listing}"))?;
    let project = tempfile::tempdir()?;
    std::fs::write(
        project.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\
             edition = \"2024\"\npublish = false\n\n[workspace]\n\n{dependencies}"
        ),
    )?;
    std::fs::create_dir(project.path().join("src"))?;
    std::fs::copy(root.join(source), project.path().join("src/main.rs"))
        .with_context(|| format!("copying {source}"))?;
    std::fs::copy(root.join("Cargo.lock"), project.path().join("Cargo.lock"))?;
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args(["check", "--offline", "--quiet", "--message-format=short"])
        .current_dir(project.path())
        .env("CARGO_TARGET_DIR", root.join("target").join(name));
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_this_crate) {
            cargo.env_remove(key);
        }
    }
    let output = cargo.output().context("running cargo")?;
    anyhow::ensure!(
        output.status.success(),
        "{source} does not build with the lines of {listing}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_says_where_the_example_listens() {
        assert_eq!(
            listen_addresses(
                "login on http://127.0.0.1:5000/login, metrics on http://0.0.0.0:8000/metrics\n"
            ),
            Some(("127.0.0.1:5000".to_owned(), "0.0.0.0:8000".to_owned()))
        );
        assert_eq!(listen_addresses("listening on 5000"), None);
    }
}
