//! The whole alerting path, live: the login server, a real Prometheus evaluating
//! the repository's rules, a real Alertmanager with the repository's routes and
//! inhibitions, and a webhook receiver in the test.
//!
//! What the harness changes, and nothing else: the scrape and evaluation intervals
//! (15 s → 1 s), every alert's `for:` (a minute becomes a second: `10m` → `10s`), and
//! Alertmanager's `group_wait`/`group_interval` (→ 1 s). The rules' expressions and
//! their 5-minute windows are the ones a reader deploys, so the traffic has to cross
//! the real thresholds: more than 300 wrong passwords within five minutes is more
//! than one per second. The server is the shipped one, its per-client throttle on:
//! the wrong passwords come from many addresses, each too slow for the throttle,
//! which is the case this alert is for (one address guessing is throttled instead).

use login_metrics_testkit::example::example;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, QueryContext, Variables, dashboard_file, load_dashboard,
};
use login_metrics_testkit::exposition::{ScrapeMetrics as _, sum};
use login_metrics_testkit::harness::alertmanager::Alertmanager;
use login_metrics_testkit::harness::prometheus::{Prometheus, TargetGroup, TargetsDir};
use login_metrics_testkit::promql::POLL_EVERY;
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::wait::{Check, poll};
use login_metrics_testkit::webhook::{Notification, Webhook};
use reqwest::StatusCode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const RUNBOOKS: &str = "https://login-metrics.github.io/login-metrics/alerting/runbooks.html";

/// Everything the alerts travel through. `None` when an engine cannot run here
/// (the harness printed why).
struct Stack {
    webhook: Webhook,
    alertmanager: Alertmanager,
    prometheus: Prometheus,
    server: TestServer,
}

async fn stack() -> Option<Stack> {
    let webhook = Webhook::start().await.unwrap();
    let alertmanager = Alertmanager::start(webhook.port()).await.unwrap()?;
    let server = TestServer::start_with(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AppState::new(UserStore::with_demo_user()),
    )
    .await
    .unwrap();
    let prometheus =
        Prometheus::start_with_alertmanager(server.metrics_addr.port(), alertmanager.engine())
            .await
            .unwrap()?;
    prometheus.wait_for_target_health("up", WAIT).await.unwrap();
    Some(Stack {
        webhook,
        alertmanager,
        prometheus,
        server,
    })
}

/// Runs the traffic generator against `login_url`, as a reader would from Step 7,
/// with a bounded number of requests; returns once every answer is in.
async fn load(login_url: &str, args: &[&str]) {
    let mut command = example("load");
    command.args(["--url", login_url, "--quiet"]).args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "load {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A wave of wrong passwords with the generator's credential-stuffing scenario: 90 %
/// of 360 requests, so 324 wrong passwords, from 256 addresses, as fast as the
/// server answers them.
async fn stuffing_wave(login_url: &str) {
    load(
        login_url,
        &[
            "--scenario",
            "credential-stuffing",
            "--requests",
            "360",
            "--rate",
            "1000",
            "--connections",
            "4",
        ],
    )
    .await;
}

/// The traffic generator running in the background; killed when dropped.
struct Generator(std::process::Child);

impl Generator {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `(alertname, severity)` of each row the dashboard's "Firing alerts" panel shows,
/// its query expanded the way Grafana expands it.
async fn firing_alerts_panel(prometheus: &Prometheus) -> Vec<(String, String)> {
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let target = &dashboard
        .panel("Firing alerts")
        .expect("the dashboard has a Firing alerts panel")
        .targets[0];
    let variables = Variables::resolve(&dashboard, DATASOURCE_UID, prometheus.api())
        .await
        .unwrap();
    let ctx = QueryContext::for_panel(Duration::from_secs(300), 300, Duration::from_secs(1));
    let promql = ctx.expand(&variables.expand(&target.expr));
    let rows = prometheus.query(&promql).await.unwrap();
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let label = |name: &str| row["metric"][name].as_str().unwrap_or_default().to_owned();
            (label("alertname"), label("severity"))
        })
        .collect()
}

fn is(notification: &Notification, receiver: &str, alertname: &str, status: &str) -> bool {
    notification.path == format!("/{receiver}") && notification.has(alertname, status)
}

fn alert<'a>(notification: &'a Notification, alertname: &'a str) -> &'a Value {
    notification
        .alerts_named(alertname)
        .next()
        .expect("the notification holds the alert")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_stuffing_reaches_the_page_webhook_firing_then_resolved() {
    let Some(stack) = stack().await else {
        return;
    };
    let login = stack.server.login_url();
    stuffing_wave(&login).await;
    // Each address stayed under the per-client throttle: no guess was refused
    // for its address. (On a busy machine a few may be shed, 503, like any login
    // that waits too long for a hashing thread.)
    let counted = stack.server.state.metrics.scrape();
    assert_eq!(counted.requests(StatusCode::TOO_MANY_REQUESTS), 0);
    let checked = counted.requests(StatusCode::UNAUTHORIZED);
    let shed = counted.requests(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(checked + shed, 324, "every wrong password answered once");

    let firing = stack
        .webhook
        .wait_for("LoginPasswordGuessing firing on /page", WAIT, |n| {
            is(n, "page", "LoginPasswordGuessing", "firing")
        })
        .await
        .unwrap();
    let guessing = alert(&firing, "LoginPasswordGuessing");
    assert_eq!(guessing["labels"]["severity"], "page", "{guessing}");
    assert_eq!(
        guessing["labels"]["job"],
        stack.prometheus.job(),
        "{guessing}"
    );
    let annotations = &guessing["annotations"];
    assert!(
        annotations["summary"]
            .as_str()
            .is_some_and(|s| s.contains("password guessing")),
        "{annotations}"
    );
    // The description carries the value: the share of logins that were wrong,
    // 90 % of those sent, fewer if some were shed.
    let description = annotations["description"].as_str().unwrap_or_default();
    let share: f64 = description
        .split('%')
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {description:?}"));
    assert!((50.0..=90.0).contains(&share), "{description}");
    assert_eq!(
        annotations["runbook_url"],
        format!("{RUNBOOKS}#loginpasswordguessing")
    );
    // The dashboard's "Firing alerts" panel, as Grafana sends it, lists it.
    let listed = firing_alerts_panel(&stack.prometheus).await;
    assert!(
        listed
            .iter()
            .any(|(name, severity)| name == "LoginPasswordGuessing" && severity == "page"),
        "the Firing alerts panel shows {listed:?}"
    );

    // Good logins bring the share of 401s under half; the alert resolves, and the
    // receiver is told so (send_resolved).
    load(
        &login,
        &[
            "--good",
            "1",
            "--bad",
            "0",
            "--malformed",
            "0",
            "--requests",
            "400",
        ],
    )
    .await;
    stack
        .webhook
        .wait_for("LoginPasswordGuessing resolved on /page", WAIT, |n| {
            is(n, "page", "LoginPasswordGuessing", "resolved")
        })
        .await
        .unwrap();
    let tickets: Vec<Notification> = stack
        .webhook
        .received()
        .into_iter()
        .filter(|n| n.has("LoginMalformedRequests", "firing"))
        .collect();
    assert!(
        tickets.is_empty(),
        "no malformed bodies were sent: {tickets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_pages_once_and_its_other_alerts_are_inhibited() {
    let Some(stack) = stack().await else {
        return;
    };
    let Stack {
        webhook,
        alertmanager,
        prometheus,
        server,
    } = stack;
    // Wrong passwords from many addresses until the guessing alert is pending in
    // Prometheus, and two seconds more; then the server stops. From pending, the guessing alert needs
    // its 10 s `for`; LoginServerDown needs a failed scrape and its 2 s `for`, so it
    // fires first, and the guessing alert fires under it.
    let mut wave = example("load");
    wave.args([
        "--url",
        &server.login_url(),
        "--quiet",
        "--scenario",
        "credential-stuffing",
        "--rate",
        "1000",
        "--connections",
        "4",
        "--duration",
        "60",
    ]);
    wave.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut wave = Generator(wave.spawn().unwrap());
    prometheus
        .wait_for_data(r#"ALERTS{alertname="LoginPasswordGuessing"}"#, WAIT)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    wave.stop();
    server.stop().await.unwrap();

    let down = webhook
        .wait_for("LoginServerDown firing on /page", WAIT, |n| {
            is(n, "page", "LoginServerDown", "firing")
        })
        .await
        .unwrap();
    assert_eq!(
        alert(&down, "LoginServerDown")["labels"]["severity"],
        "page"
    );

    // Prometheus fires the guessing alert: the rates still see the wave's samples.
    prometheus
        .wait_for_value(
            r#"ALERTS{alertname="LoginPasswordGuessing", alertstate="firing"}"#,
            1.0,
            WAIT,
        )
        .await
        .unwrap();
    // ANCHOR: inhibited
    // Alertmanager holds it, inhibited by the down alert...
    let held = poll(
        "LoginPasswordGuessing held by Alertmanager",
        WAIT,
        POLL_EVERY,
        || async {
            let alerts = alertmanager.alerts().await.unwrap();
            match alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == "LoginPasswordGuessing")
            {
                Some(held) => Check::Met(held.clone()),
                None => Check::NotYet(format!("{alerts:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    assert_eq!(held["status"]["state"], "suppressed", "{held}");
    assert!(
        held["status"]["inhibitedBy"]
            .as_array()
            .is_some_and(|by| !by.is_empty()),
        "{held}"
    );
    // ...and no receiver hears of it. Proven, not waited for: Alertmanager has run
    // the notification pipeline over the alert twice since it held it (so the first
    // run is over), and the same pipeline did page the down alert.
    let considered = alertmanager.flushes_of("LoginPasswordGuessing").await;
    alertmanager
        .wait_for_flushes("LoginPasswordGuessing", considered + 2, WAIT)
        .await
        .unwrap();
    let leaked: Vec<Notification> = webhook
        .received()
        .into_iter()
        .filter(|n| n.alerts_named("LoginPasswordGuessing").next().is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "an inhibited alert was notified: {leaked:?}"
    );
    // ANCHOR_END: inhibited
    let downs = webhook
        .received()
        .into_iter()
        .filter(|n| n.has("LoginServerDown", "firing"))
        .count();
    assert_eq!(downs, 1, "one page for the outage, not one per alert");
}

/// The highly available pair of Step 9 (`deploy/scale/prometheus-{a,b}.yml`), both
/// evaluating the rules and sending to one Alertmanager: a stopped server is one
/// page, not two, and the page carries no `replica` label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_pages_once_for_a_stopped_server() {
    let Some(placement) = Prometheus::placement().await.unwrap() else {
        return; // the harness printed why
    };
    let webhook = Webhook::start().await.unwrap();
    let Some(alertmanager) = Alertmanager::start(webhook.port()).await.unwrap() else {
        return;
    };
    let server = TestServer::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .await
        .unwrap();
    let targets = TargetsDir::new().unwrap();
    let host = placement.host_seen_from_engine();
    targets
        .write(
            "login_server.yml",
            &[TargetGroup::ports(host, &[server.metrics_addr.port()])],
        )
        .unwrap();
    let mut pair = Vec::new();
    for replica in ["a", "b"] {
        let prometheus = Prometheus::builder()
            .config(format!("deploy/scale/prometheus-{replica}.yml"))
            .file_sd(&targets)
            .alertmanager(alertmanager.engine())
            .start()
            .await
            .unwrap()
            .expect("Prometheus runs here: its placement was found above");
        prometheus.wait_for_targets_up(1, 1, WAIT).await.unwrap();
        pair.push(prometheus);
    }
    server.stop().await.unwrap();

    // Both fire...
    for prometheus in &pair {
        prometheus
            .wait_for_value(
                r#"ALERTS{alertname="LoginServerDown", alertstate="firing"}"#,
                1.0,
                WAIT,
            )
            .await
            .unwrap();
    }
    let page = webhook
        .wait_for("LoginServerDown firing on /page", WAIT, |n| {
            is(n, "page", "LoginServerDown", "firing")
        })
        .await
        .unwrap();
    // ...both have sent it to Alertmanager...
    for prometheus in &pair {
        poll(
            "an alert sent to Alertmanager",
            WAIT,
            POLL_EVERY,
            || async {
                let own = prometheus.own_metrics().await.unwrap_or_default();
                match sum(&own, "prometheus_notifications_sent_total") {
                    Some(sent) if sent >= 1.0 => Check::Met(()),
                    sent => Check::NotYet(format!("prometheus_notifications_sent_total {sent:?}")),
                }
            },
        )
        .await
        .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    }
    // ...and Alertmanager holds one alert, from both, through two runs of its
    // notification pipeline since (the first of them over when the second starts).
    let considered = alertmanager.flushes_of("LoginServerDown").await;
    alertmanager
        .wait_for_flushes("LoginServerDown", considered + 2, WAIT)
        .await
        .unwrap();
    let held: Vec<Value> = alertmanager
        .alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "LoginServerDown")
        .collect();
    assert_eq!(held.len(), 1, "one alert, not one per Prometheus: {held:?}");
    let notified: Vec<Value> = webhook
        .received()
        .iter()
        .flat_map(|n| {
            n.alerts_named("LoginServerDown")
                .cloned()
                .collect::<Vec<_>>()
        })
        .chain([alert(&page, "LoginServerDown").clone()])
        .collect();
    for alert in &notified {
        assert!(
            alert["labels"].get("replica").is_none(),
            "the replica label reached Alertmanager: {alert}"
        );
    }
    let pages = webhook
        .received()
        .into_iter()
        .filter(|n| n.has("LoginServerDown", "firing"))
        .map(|n| n.alerts_named("LoginServerDown").count())
        .collect::<Vec<_>>();
    assert_eq!(pages, vec![1], "one page holding one alert: {pages:?}");
}
