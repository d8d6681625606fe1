//! The quick start's commands, run. The page shows two paths to a dashboard: with
//! Docker (`docker compose up`) and without (the native binaries). These tests
//! hold the page to exactly those commands, check that Compose accepts the stack
//! they start and points it at the server they start, and run the native path:
//! the `login_server` and `load` examples as processes and the `prometheus`
//! binary with the repository's `prometheus.yml`, until the dashboard's first row
//! and the tutorial's three queries answer. Ports are free ones rather than 5000,
//! 8000 and 9090, the scrape interval one second rather than 15, and the traffic
//! shorter; nothing else changes. Grafana is the one part that cannot run here.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use login_metrics_testkit::book::TUTORIAL_QUERIES;
use login_metrics_testkit::compose::Stack;
use login_metrics_testkit::dashboard::{DASHBOARD_UID, dashboard_file, load_dashboard};
use login_metrics_testkit::example::example;
use login_metrics_testkit::harness::engine::free_port;
use login_metrics_testkit::harness::prometheus::config_for;
use login_metrics_testkit::logs::address_field;
use login_metrics_testkit::panels::{FIRST_ROW, row_answers};
use login_metrics_testkit::promql::QueryApi;
use login_metrics_testkit::repo_root;
use login_metrics_testkit::wait::{Check, poll};
use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
use serde_yaml_ng::Value as Yaml;

/// The commands of the Docker path, in the order the page shows them.
const WITH_DOCKER: [&str; 5] = [
    "cargo run --example login_server -- --metrics-addr 0.0.0.0:8000",
    "read -rs -p 'Grafana admin password: ' GRAFANA_ADMIN_PASSWORD && echo",
    "export GRAFANA_ADMIN_PASSWORD",
    "docker compose up",
    TRAFFIC,
];
/// The commands of the native path.
const WITHOUT_DOCKER: [&str; 3] = [
    "cargo run --example login_server",
    "prometheus --config.file=prometheus.yml --storage.tsdb.path=/tmp/login-metrics-prometheus",
    TRAFFIC,
];
const TRAFFIC: &str = "cargo run --release --example load -- --rate 20 --duration 300";
/// Where the page sends the reader.
const DASHBOARD_URL: &str = "http://localhost:3000/d/login-metrics";

fn page() -> String {
    std::fs::read_to_string(repo_root().join("book/src/quick-start.md")).unwrap()
}

/// Every command of every ```` ```sh ```` block of the page, in order.
fn shell_commands(markdown: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => in_sh = &*info == "sh",
            Event::End(TagEnd::CodeBlock) => in_sh = false,
            Event::Text(text) if in_sh => commands.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    commands
}

#[test]
fn the_quick_start_shows_exactly_the_commands_these_tests_run() {
    let expected: Vec<&str> = WITH_DOCKER.iter().chain(&WITHOUT_DOCKER).copied().collect();
    assert_eq!(shell_commands(&page()), expected);
    assert!(
        page().contains(DASHBOARD_URL),
        "the page names {DASHBOARD_URL}"
    );
    assert!(DASHBOARD_URL.ends_with(&format!("/d/{DASHBOARD_UID}")));
}

/// The marked command blocks of the page, by name, and the command each holds: the
/// native path runs the last three below (`quick-start/server`,
/// `quick-start/prometheus`; the traffic blocks run in `tests/book_runs/`).
#[test]
fn the_marked_blocks_are_the_commands_these_tests_run() {
    use login_metrics_testkit::book::shell::script;
    for (name, command) in [
        ("quick-start/server-for-docker", WITH_DOCKER[0]),
        ("quick-start/traffic-for-docker", WITH_DOCKER[4]),
        ("quick-start/server", WITHOUT_DOCKER[0]),
        ("quick-start/prometheus", WITHOUT_DOCKER[1]),
        ("quick-start/traffic", WITHOUT_DOCKER[2]),
    ] {
        assert_eq!(script(name, &[]).trim(), command, "{name}");
    }
}

#[test]
fn compose_accepts_the_quick_start_stack_and_points_it_at_the_server_it_starts() {
    // What `export GRAFANA_ADMIN_PASSWORD` hands to `docker compose up`.
    let stack = Stack::new().password("a password read by read -rs");
    let Some(config) = stack.merged() else {
        return;
    };
    let prometheus = &config["services"]["prometheus"];
    let volumes = format!("{:?}", prometheus["volumes"]);
    for mount in ["deploy/prometheus.docker.yml", "/etc/prometheus/rules"] {
        assert!(volumes.contains(mount), "{mount} in {volumes}");
    }
    assert!(
        format!("{:?}", prometheus["extra_hosts"]).contains("host.docker.internal:host-gateway")
    );

    // The server command binds the metrics port the container scrapes, on every
    // interface, so that the Docker bridge reaches it.
    let mounted = repo_root().join("deploy/prometheus.docker.yml");
    let scraped: Yaml =
        serde_yaml_ng::from_str(&std::fs::read_to_string(mounted).unwrap()).unwrap();
    let target = scraped["scrape_configs"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    let port = target.rsplit(':').next().unwrap();
    assert!(
        WITH_DOCKER[0].ends_with(&format!("--metrics-addr 0.0.0.0:{port}")),
        "{} should listen where {target} is scraped",
        WITH_DOCKER[0]
    );
    // The dashboard's address is Grafana's published port.
    let ports = format!("{:?}", config["services"]["grafana"]["ports"]);
    assert!(ports.contains("3000"), "{ports}");
}

/// A process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line of `child`'s output that contains `needle`.
fn line_containing(child: &mut Child, needle: &str) -> String {
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no line with {needle:?}");
        let line = lines
            .next()
            .expect("the process writes its start-up lines")
            .unwrap();
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test]
async fn the_native_path_fills_the_dashboards_first_row() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        login_metrics_testkit::env::skip(
            "no `prometheus` binary on PATH for the quick start's native path \
             (`apt install prometheus`, or the upstream archive)",
        );
        return;
    }
    // `cargo run --example login_server`, on free ports.
    let mut server = example("login_server")
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info,login_metrics::request=off")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let listening = line_containing(&mut server, "listening");
    let server = Running(server);
    let login = address_field(&listening, "login");
    let metrics = address_field(&listening, "metrics");

    // `prometheus --config.file=prometheus.yml --storage.tsdb.path=...`, with the
    // repository's file pointed at that port, next to the rules it loads.
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = config_for(&metrics.to_string()).unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for rules in ["recording.yml", "alerts.yml"] {
        std::fs::copy(
            repo_root().join("rules").join(rules),
            dir.path().join("rules").join(rules),
        )
        .unwrap();
    }
    let web = format!("127.0.0.1:{}", free_port().unwrap());
    let prometheus = Running(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = QueryApi::new(
        "Prometheus",
        format!("http://{web}"),
        reqwest::Client::new(),
    );
    poll(
        &format!("Prometheus at {web} to be ready"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            match api.get_text("/-/ready").await {
                Ok(_) => Check::Met(()),
                Err(error) => Check::NotYet(error.to_string()),
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));

    // `cargo run --release --example load -- --rate 20 --duration 300`, shorter.
    let url = format!("http://{login}/login");
    let load = tokio::task::spawn_blocking(move || {
        example("load")
            .args(["--url", &url, "--rate", "20", "--duration", "25"])
            .output()
            .expect("the load example runs")
    });

    let up = format!("up{{job=\"{job}\"}}");
    api.wait_for_value(&up, 1.0, Duration::from_secs(45))
        .await
        .unwrap_or_else(|e| panic!("{up}: {e:#}"));
    for query in TUTORIAL_QUERIES {
        api.poll_for_nonzero(query, Duration::from_secs(45))
            .await
            .unwrap_or_else(|e| panic!("{query}: no non-zero answer; last {}", e.last));
    }
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let answers = row_answers(&dashboard, FIRST_ROW, &api).await.unwrap();
    let success = answers
        .iter()
        .find(|a| a.panel == "Login success ratio")
        .map_or_else(|| panic!("no success ratio in {answers:#?}"), |a| a.value);
    // The generator's default mix: 70 % good, 25 % wrong passwords, 5 % malformed.
    assert!(
        (0.5..0.9).contains(&success),
        "about 70 % of the traffic succeeds: {success}"
    );
    let output = load.await.unwrap();
    assert!(
        output.status.success(),
        "load: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop((prometheus, server));
}
