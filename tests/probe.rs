//! The login probe of "Watching from outside", live: the repository's `blackbox.yml`,
//! rendered for a probe account as a reader renders it, run by a real blackbox
//! exporter against a real login server, and scraped by a real Prometheus running
//! `deploy/probe/prometheus.yml` and the repository's rules.
//!
//! What the harness changes, and nothing else: the addresses, the intervals (the
//! probe job every 2 s, the rest every second) and every alert's `for:` (a minute
//! becomes a second: `2m` → `2s`). The server is the shipped one, its per-client
//! throttle on, with the probe account in its users file and a small login
//! connection budget, so that a few stalled clients can fill it: the failure the
//! server's own metrics do not report, a login port that refuses while `/metrics`
//! answers.
//!
//! The exporter runs like the other engines: `LOGIN_METRICS_BLACKBOX=container|native`,
//! `BLACKBOX_EXPORTER_IMAGE`, and a `skipped:` line where there is none.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::limits::Limits;
use login_metrics::metrics::Closed;
use login_metrics_testkit::book::shell::{run_ok, script, sub};
use login_metrics_testkit::book::{every_block_answers, promql_blocks};
use login_metrics_testkit::clients::connect_from;
use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, PROBE_PANELS, QueryContext, Variables, dashboard_file, load_dashboard,
};
use login_metrics_testkit::exposition::ScrapeMetrics as _;
use login_metrics_testkit::harness::blackbox::{
    self, BlackboxExporter, PASSWORD_VARIABLE, ProbeAccount,
};
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::promql::{POLL_EVERY, result_numbers};
use login_metrics_testkit::repo_root;
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::wait::{Check, poll};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);
/// The configuration with the probe job: `prometheus.yml` and `login_probe`.
const PROBE_CONFIG: &str = "deploy/probe/prometheus.yml";
/// The login listener's connection budget here: a few stalled clients fill it.
const BUDGET: usize = 4;
/// How often the probe runs here. With the harness' 1 s, the exporter would give a
/// login half a second (the scrape timeout less its 0.5 s offset), tight on a
/// machine busy building; 2 s gives it one and a half.
const PROBE_INTERVAL: &str = "2s";

const PROBE_SUCCESS: &str = r#"probe_success{job="login_probe"}"#;
const SERVER_UP: &str = r#"up{job="login_server"}"#;
const PROBE_FIRING: &str = r#"ALERTS{alertname="LoginProbeFailing", alertstate="firing"}"#;

/// The server with the probe account, the exporter logging in as it, and
/// Prometheus scraping both. `None` when an engine cannot run here (the harness
/// printed why).
struct Stack {
    server: TestServer,
    exporter: BlackboxExporter,
    prometheus: Prometheus,
}

/// The [`Stack`], once five probes in a row have logged in.
async fn healthy_stack() -> Option<Stack> {
    let account = ProbeAccount::generate().unwrap();
    // The users file a reader writes: the probe account's line, from hash_password.
    let mut users = UserStore::empty();
    users.add_users_from(&account.users_file_line()).unwrap();
    // The shipped throttle and limits but two: a budget a few clients can fill, and
    // a header timeout that lets stalled clients hold it for the whole test.
    let limits = Limits {
        max_connections: BUDGET,
        header_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let state = AppState::new(users).with_limits(limits);
    // On every interface: an exporter in a container comes through the Docker bridge.
    let server = TestServer::start_with(IpAddr::V4(Ipv4Addr::UNSPECIFIED), state)
        .await
        .unwrap();
    let exporter = BlackboxExporter::start(&account).await.unwrap()?;
    let prometheus = Prometheus::builder()
        .config(PROBE_CONFIG)
        .scrape_server(server.metrics_addr.port())
        .probe(&exporter, server.app_addr.port())
        .edit_config(|root, _| {
            for job in root["scrape_configs"]
                .as_sequence_mut()
                .into_iter()
                .flatten()
            {
                if job["job_name"] == "login_probe" {
                    job["scrape_interval"] = PROBE_INTERVAL.into();
                    job["scrape_timeout"] = PROBE_INTERVAL.into();
                }
            }
            Ok(())
        })
        .start()
        .await
        .unwrap()?;
    prometheus.wait_for_target_health("up", WAIT).await.unwrap();
    let stack = Stack {
        server,
        exporter,
        prometheus,
    };
    stack.wait_until_healthy().await;
    Some(stack)
}

impl Stack {
    /// Waits until the last five probes (ten seconds of them) all logged in.
    async fn wait_until_healthy(&self) {
        let five_in_a_row = r#"min_over_time(probe_success{job="login_probe"}[10s]) == 1
            and count_over_time(probe_success{job="login_probe"}[10s]) >= 5"#;
        self.prometheus
            .wait_for_value(five_in_a_row, 1.0, WAIT)
            .await
            .unwrap();
    }

    /// The series of an instant query, as an array.
    async fn series(&self, promql: &str) -> Vec<Value> {
        match self.prometheus.query(promql).await.unwrap() {
            Value::Array(series) => series,
            other => panic!("`{promql}` answered {other}"),
        }
    }
}

/// Clients that open connections to the login listener and send nothing, from
/// addresses of their own (127.0.0.2 and on), keeping `BUDGET` of them open:
/// one the server closes at once (it arrived while a probe held a place) is
/// replaced, so the budget ends up held by them alone. They hang up when dropped.
struct StalledClients {
    task: tokio::task::JoinHandle<()>,
    connected: Arc<AtomicUsize>,
}

impl StalledClients {
    fn start(login: SocketAddr) -> Self {
        let connected = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connected);
        let task = tokio::spawn(async move {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut next: u8 = 2;
            loop {
                held.retain(still_open);
                while held.len() < BUDGET {
                    let from = Ipv4Addr::new(127, 0, 0, next);
                    next = if next == 250 { 2 } else { next + 1 };
                    held.push(connect_from(from, login).await.expect("connecting"));
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { task, connected }
    }

    /// How many connections they opened in all.
    fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }
}

impl Drop for StalledClients {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the server has not closed `stream`: nothing to read yet.
fn still_open(stream: &TcpStream) -> bool {
    matches!(
        stream.try_read(&mut [0; 1]),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_server_gives_probe_success_1_and_no_alert() {
    let Some(stack) = healthy_stack().await else {
        return;
    };
    let prometheus = &stack.prometheus;
    prometheus
        .wait_for_value(r#"probe_http_status_code{job="login_probe"}"#, 200.0, WAIT)
        .await
        .unwrap();
    prometheus
        .wait_for_value(SERVER_UP, 1.0, WAIT)
        .await
        .unwrap();
    // Five good probes in a row: neither of the probe's alerts is pending or firing.
    let alerts = stack
        .series(r#"ALERTS{alertname=~"LoginProbeFailing|LoginProbeSlow"}"#)
        .await;
    assert!(alerts.is_empty(), "{alerts:?}");

    // In the server's metrics, each probe is one good login: not a failed one, and
    // never throttled at this interval (the shipped throttle allows one a second).
    let counted = stack.server.state.metrics.scrape();
    let good = counted.requests(StatusCode::OK);
    assert!(good >= 5, "the probes' logins, counted as 200: {good}");
    for refused in [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS] {
        assert_eq!(counted.requests(refused), 0, "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_login_listener_fails_the_probe_and_fires_its_alert_while_up_stays_1() {
    let Some(stack) = healthy_stack().await else {
        return;
    };
    let prometheus = &stack.prometheus;

    // ANCHOR: failure
    let stalled = StalledClients::start(stack.server.app_addr);
    prometheus
        .wait_for_value(PROBE_SUCCESS, 0.0, WAIT)
        .await
        .unwrap();
    prometheus
        .wait_for_value(PROBE_FIRING, 1.0, WAIT)
        .await
        .unwrap();
    // Prometheus still scrapes the server, and none of the server's alerts fires.
    prometheus
        .wait_for_value(SERVER_UP, 1.0, WAIT)
        .await
        .unwrap();
    let server_alerts = stack
        .series(r#"ALERTS{job="login_server", alertstate="firing"}"#)
        .await;
    assert!(server_alerts.is_empty(), "{server_alerts:?}");
    // ANCHOR_END: failure
    // The runbook's command, run as written against this exporter, shows why.
    let debug = run_ok(
        &script(
            "runbooks/probe-debug",
            &[
                sub("http://localhost:9115", stack.exporter.engine().base_url()),
                sub(
                    "http://localhost:5000/login",
                    stack.exporter.login_url(stack.server.app_addr.port()),
                ),
            ],
        ),
        &[],
    )
    .to_lowercase();
    assert!(
        debug.contains("level=error")
            && (debug.contains("eof") || debug.contains("connection reset by peer")),
        "the runbook names the error of a full login listener as EOF or a reset:\n{debug}"
    );
    let counted = stack.server.state.metrics.scrape();
    assert_eq!(counted.connections_open(), BUDGET as u64);
    // The failed probes' connections were closed at once, and counted.
    let refused = counted.connections_closed(Closed::OverBudget);
    assert!(refused >= 1, "{refused} refused");
    eprintln!(
        "{refused} connections refused; the stalled clients opened {}",
        stalled.connected()
    );
    // No login reaches the handler: the request counters stop.
    prometheus
        .wait_for_value(
            r#"sum(increase(login_requests_total{job="login_server"}[6s]))"#,
            0.0,
            WAIT,
        )
        .await
        .unwrap();
    // The dashboard's alerts panel lists it, as Grafana asks for it.
    let listed = firing_alerts_panel(prometheus).await;
    assert!(
        listed.contains(&"LoginProbeFailing".to_owned()),
        "the Firing alerts panel shows {listed:?}"
    );

    // The stalled clients hang up: the probe logs in again, and the alert ends.
    drop(stalled);
    prometheus
        .wait_for_value(PROBE_SUCCESS, 1.0, WAIT)
        .await
        .unwrap();
    poll(
        "LoginProbeFailing no longer firing",
        WAIT,
        POLL_EVERY,
        || async {
            let firing = stack.series(PROBE_FIRING).await;
            if firing.is_empty() {
                Check::Met(())
            } else {
                Check::NotYet(format!("{firing:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
}

/// The alert names the dashboard's "Firing alerts" panel shows, its query expanded
/// the way Grafana expands it.
async fn firing_alerts_panel(prometheus: &Prometheus) -> Vec<String> {
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let target = &dashboard.panel("Firing alerts").unwrap().targets[0];
    let variables = Variables::resolve(&dashboard, DATASOURCE_UID, prometheus.api())
        .await
        .unwrap();
    let ctx = QueryContext::for_panel(Duration::from_secs(300), 300, Duration::from_secs(1));
    let rows = prometheus
        .query(&ctx.expand(&variables.expand(&target.expr)))
        .await
        .unwrap();
    rows.as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["metric"]["alertname"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_panels_and_the_books_probe_queries_answer_with_the_probe_running() {
    let Some(stack) = healthy_stack().await else {
        return;
    };
    let api = stack.prometheus.api();
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let variables = Variables::resolve(&dashboard, DATASOURCE_UID, api)
        .await
        .unwrap();
    let ctx = QueryContext::for_panel(Duration::from_secs(900), 1000, Duration::from_secs(1));
    for title in PROBE_PANELS {
        for target in &dashboard.panel(title).unwrap().targets {
            let promql = ctx.expand(&variables.expand(&target.expr));
            let answer = stack
                .prometheus
                .wait_for_nonzero(&promql, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{title:?} {}: {e:#}", target.ref_id));
            eprintln!("{title:?} {}: {:?}", target.ref_id, result_numbers(&answer));
        }
    }
    let blocks: Vec<_> = promql_blocks()
        .unwrap()
        .into_iter()
        .filter(|block| block.needs_probe)
        .collect();
    assert!(!blocks.is_empty(), "the book shows the probe's queries");
    // The probe's queries count probes, not logins: no traffic needed.
    every_block_answers(&stack.prometheus, blocks, None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // The exporter's own answer for one probe, as `curl .../probe?...` shows it.
    let answer = stack
        .exporter
        .probe(
            &stack.exporter.login_url(stack.server.app_addr.port()),
            false,
        )
        .await
        .unwrap();
    assert!(answer.contains("probe_success 1"), "{answer}");
    assert!(answer.contains("probe_http_status_code 200"), "{answer}");
}

#[test]
fn blackbox_yml_passes_the_exporters_config_check_as_a_template_and_rendered() {
    let account = ProbeAccount::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("blackbox.rendered.yml");
    std::fs::write(
        &rendered,
        blackbox::rendered_repository_config(&account).unwrap(),
    )
    .unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(repo_root().join(blackbox::CONFIG_FILE))
            .unwrap()
            .replace("valid_status_codes", "valid_status_code"),
    )
    .unwrap();
    for (config, valid) in [
        (repo_root().join(blackbox::CONFIG_FILE), true),
        (rendered, true),
        (broken, false),
    ] {
        let Some(output) = blackbox::config_check(&config) else {
            return;
        };
        let text = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.success(),
            valid,
            "{}: {text}",
            config.display()
        );
        if valid {
            assert!(text.contains("Config file is ok"), "{text}");
        }
    }
}

#[test]
fn envsubst_renders_blackbox_yml_as_the_test_kit_does() {
    let account = ProbeAccount::generate().unwrap();
    let template = std::fs::read(repo_root().join(blackbox::CONFIG_FILE)).unwrap();
    let spawned = std::process::Command::new("envsubst")
        .arg(format!("${PASSWORD_VARIABLE}"))
        .env(PASSWORD_VARIABLE, account.password())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            login_metrics_testkit::env::skip(&format!(
                "envsubst not found ({error}); install gettext (`apt install gettext-base`)"
            ));
            return;
        }
    };
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &template).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        blackbox::rendered_repository_config(&account).unwrap()
    );
}
