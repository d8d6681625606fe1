//! The book's commands, run as a reader types them, and its outputs compared with
//! what those runs print.
//!
//! Each block is found by the name its marker gives it (`<!-- command: NAME -->`,
//! `<!-- output: NAME -->`; `testkit/src/book/blocks.rs`), so the text that runs is
//! the text the book shows. Where a command cannot run here as written, a
//! substitution says what runs instead, and why (`testkit/src/book/shell.rs`); the
//! ones every module makes:
//!
//! - `cargo run [--release] --example X` is the binary `cargo test` built, in the
//!   test profile: a nested cargo would rebuild in another profile;
//! - the ports 5000, 8000, 9090 and 9093 are free ones, since another program may
//!   hold them; and outputs mask those ports;
//! - an official image (`prom/prometheus:v3.13.4`) is the image the test harness
//!   uses (`PROMETHEUS_IMAGE`; CI builds a local one);
//! - runs that last minutes (`--duration 300`, a scenario's 20 minutes) last a
//!   second or two.
//!
//! What varies in an output (times, ports, counts that depend on timing or on the
//! machine) is masked in the comparison, never in the book
//! (`testkit/src/book/outputs.rs`). To write fresh outputs into the book:
//! `LOGIN_METRICS_BLESS=1 cargo test --test book_runs`.
//!
//! One module per group of chapters: [`configs`] (promtool and amtool, no server),
//! [`minimal`] (Step 1), [`production`] (the hardened server: Step 3, Hardening,
//! Passwords, the metrics reference and troubleshooting's server-side entries),
//! [`prometheus`] (Steps 2 and 9, troubleshooting's scrape errors), [`containers`]
//! (the `docker run` commands), [`alerting`] (Step 7's Alertmanager), [`derived`]
//! (outputs computed by the code that produces them: error bodies, Grafana's
//! intervals, the Grafana skip line), [`outside`] (the probe account of "Watching from
//! outside").

mod alerting;
mod configs;
mod containers;
mod derived;
mod minimal;
mod outside;
mod production;
mod prometheus;

use std::process::Output;
use std::time::Duration;

use login_metrics_testkit::book::shell::{Background, Substitution, example_binary, script, sub};

/// A free TCP port on loopback.
pub(crate) fn free_port() -> u16 {
    login_metrics_testkit::harness::engine::free_port().expect("a free port")
}

/// Standard output then standard error, as a terminal shows a short run.
pub(crate) fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The value of `key=VALUE` in a log line; panics, naming the line, without it.
pub(crate) fn field(line: &str, key: &str) -> String {
    login_metrics_testkit::logs::field(line, key)
        .unwrap_or_else(|| panic!("{key}= in {line}"))
        .to_owned()
}

/// The production server, started from a command block of the book.
pub(crate) struct LoginServer {
    pub(crate) process: Background,
    /// `HOST:PORT` of the login listener.
    pub(crate) login: String,
    /// `HOST:PORT` of the metrics listener.
    pub(crate) metrics: String,
    /// Its first log lines, up to and including `listening`.
    pub(crate) start_up: Vec<String>,
}

impl LoginServer {
    /// Runs the block `name`, a `cargo run --example login_server [-- FLAGS]`, with
    /// the binary for `cargo run` and free ports for the defaults, plus `more`
    /// substitutions; waits for its `listening` line and reads the next two (its
    /// limits and its throttle).
    pub(crate) fn start(name: &str, more: &[Substitution]) -> Self {
        let binary = example_binary("login_server");
        let block = login_metrics_testkit::book::blocks::command(name);
        let ports = "--addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0";
        let mut substitutions = vec![
            if block.text.contains("cargo run --example login_server --") {
                // The block's own flags follow; a metrics port it does not set is
                // a free one too.
                let metrics = if block.text.contains("--metrics-addr") {
                    ""
                } else {
                    " --metrics-addr 127.0.0.1:0"
                };
                sub(
                    "cargo run --example login_server --",
                    format!("{binary} --addr 127.0.0.1:0{metrics}"),
                )
            } else {
                sub(
                    "cargo run --example login_server",
                    format!("{binary} {ports}"),
                )
            },
        ];
        if block.text.contains("--metrics-addr 0.0.0.0:8000") {
            substitutions.push(sub(
                "--metrics-addr 0.0.0.0:8000",
                "--metrics-addr 0.0.0.0:0",
            ));
        }
        substitutions.extend_from_slice(more);
        let mut process = Background::start(
            &script(name, &substitutions),
            &[("RUST_LOG", "info"), ("NO_COLOR", "1")],
        );
        let mut start_up = Vec::new();
        let listening = loop {
            let line = process.line(Duration::from_secs(60));
            assert!(
                !line.is_empty(),
                "the server ended before listening: {start_up:?}"
            );
            start_up.push(line.trim_end().to_owned());
            if line.contains(" listening ") {
                break line;
            }
        };
        for _ in 0..2 {
            start_up.push(process.line(Duration::from_secs(10)).trim_end().to_owned());
        }
        Self {
            login: field(&listening, "login"),
            metrics: field(&listening, "metrics"),
            process,
            start_up,
        }
    }

    /// The substitutions that point a command of the book at this server.
    pub(crate) fn addresses(&self) -> Vec<Substitution> {
        vec![
            sub("127.0.0.1:5000", self.login.clone()),
            sub("127.0.0.1:8000", self.metrics.clone()),
        ]
    }

    /// The substitutions of [`Self::addresses`] that apply to `name`'s block.
    pub(crate) fn addresses_in(&self, name: &str) -> Vec<Substitution> {
        let text = login_metrics_testkit::book::blocks::command(name).text;
        self.addresses()
            .into_iter()
            .filter(|s| text.contains(&s.from))
            .collect()
    }

    /// The status code, as curl prints it, of a login as `user` with `password`.
    pub(crate) fn login_status(&self, user: &str, password: &str) -> String {
        login_metrics_testkit::book::shell::run_ok(
            &format!(
                "curl -s -o /dev/null -w '%{{http_code}}' http://{}/login \
                 -H 'Content-Type: application/json' \
                 -d '{{\"username\":\"{user}\",\"password\":\"{password}\"}}'",
                self.login
            ),
            &[],
        )
    }

    /// The next line of its log that contains `needle`.
    pub(crate) fn log_line(&mut self, needle: &str) -> String {
        loop {
            let line = self.process.line(Duration::from_secs(20));
            assert!(!line.is_empty(), "the server's log ended before `{needle}`");
            if line.contains(needle) {
                return line.trim_end().to_owned();
            }
        }
    }
}

/// `cargo run --release --example load --` as the binary, pointed at `login`.
pub(crate) fn load_at(login: &str) -> Substitution {
    sub(
        "cargo run --release --example load --",
        format!("{} --url http://{login}/login", example_binary("load")),
    )
}
