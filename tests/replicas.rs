//! Step 9, part one: several replicas of the login server, found by Prometheus through
//! `file_sd_configs` (the repository's `deploy/prometheus.file_sd.yml`), counted
//! exactly each and in total, aggregated the right way round, still charted when one
//! stops, and joined by a new one without restarting Prometheus.
//!
//! Each test starts three in-process login servers on free ports (on `0.0.0.0`, so a
//! Prometheus container reaches them through the Docker bridge), writes their
//! addresses into a targets directory the test owns, and starts a real Prometheus
//! reading that directory: a bind mount in a container, the path itself natively.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, Expect, QueryContext, Variables, dashboard_file, expect_under_ordinary_traffic,
    load_dashboard,
};
use login_metrics_testkit::harness::prometheus::{Prometheus, TargetGroup, TargetsDir};
use login_metrics_testkit::logins::send_logins;
use login_metrics_testkit::promql::POLL_EVERY;
use login_metrics_testkit::promql::{QueryApi, single_value};
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::traffic::Traffic;
use login_metrics_testkit::wait::{Check, poll};
use serde_json::Value;

/// The configuration Step 9 ships for discovery, and its targets file.
const FILE_SD_CONFIG: &str = "deploy/prometheus.file_sd.yml";
const TARGETS_FILE: &str = "login_server.yml";
const WAIT: Duration = Duration::from_secs(45);
const ANY_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Logins sent to each replica: (200, 401, 400). Deliberately uneven, so that the
/// service's success ratio (16 of 50) differs from the average of the replicas'
/// ratios (1, 1/2 and 1/30).
const PLAN: [(usize, usize, usize); 3] = [(10, 0, 0), (5, 5, 0), (1, 20, 9)];

/// Three replicas, a targets directory listing them as Prometheus will see them,
/// and a Prometheus running `deploy/prometheus.file_sd.yml` on it, every target up.
/// `None`: no Prometheus here (the harness said so).
async fn three_replicas_and_prometheus() -> Option<(Vec<TestServer>, TargetsDir, String, Prometheus)>
{
    let placement = Prometheus::placement().await.unwrap()?;
    let host = placement.host_seen_from_engine().to_owned();
    let mut servers = Vec::new();
    for _ in 0..PLAN.len() {
        servers.push(TestServer::start(ANY_ADDRESS).await.unwrap());
    }
    let targets = TargetsDir::new().unwrap();
    targets
        .write(TARGETS_FILE, &[TargetGroup::ports(&host, &ports(&servers))])
        .unwrap();
    let prometheus = Prometheus::builder()
        .config(FILE_SD_CONFIG)
        .file_sd(&targets)
        .start()
        .await
        .unwrap()?;
    eprintln!(
        "Prometheus ({}) at {} discovers {} replicas in {}",
        prometheus.backend(),
        prometheus.base_url(),
        servers.len(),
        targets.path().display()
    );
    assert_eq!(prometheus.job(), "login_server");
    prometheus
        .wait_for_targets_up(PLAN.len(), PLAN.len(), WAIT)
        .await
        .unwrap();
    Some((servers, targets, host, prometheus))
}

fn ports(servers: &[TestServer]) -> Vec<u16> {
    servers.iter().map(|s| s.metrics_addr.port()).collect()
}

fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap())
}

/// The single value of `promql` now.
async fn value(api: &QueryApi, promql: &str) -> f64 {
    let result = api.poll_for_data(promql, WAIT).await.unwrap_or_else(|e| {
        panic!("`{promql}`: no data; last answer {}", e.last);
    });
    single_value(&result).unwrap_or_else(|| panic!("`{promql}`: not one series: {result}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_is_counted_exactly_and_the_sums_equal_the_requests_sent() {
    let Some((servers, _targets, host, prometheus)) = three_replicas_and_prometheus().await else {
        return;
    };
    let api = prometheus.api();
    for (server, (good, bad, malformed)) in servers.iter().zip(PLAN) {
        send_logins(&server.login_url(), good, bad, malformed)
            .await
            .unwrap();
    }

    // ANCHOR: per_replica
    // Every replica's counters, told apart by the instance label Prometheus adds.
    for (server, (good, bad, malformed)) in servers.iter().zip(PLAN) {
        let instance = format!("{host}:{}", server.metrics_addr.port());
        for (code, sent) in [("200", good), ("401", bad), ("400", malformed), ("500", 0)] {
            let promql =
                format!(r#"login_requests_total{{instance="{instance}", status_code="{code}"}}"#);
            api.wait_for_value(&promql, count(sent), WAIT)
                .await
                .unwrap();
        }
    }
    // ANCHOR_END: per_replica

    // The service: sum across the replicas, exactly the requests sent.
    let total = |pick: fn(&(usize, usize, usize)) -> usize| PLAN.iter().map(pick).sum::<usize>();
    for (code, sent) in [
        ("200", total(|p| p.0)),
        ("401", total(|p| p.1)),
        ("400", total(|p| p.2)),
    ] {
        let promql = format!(r#"sum(login_requests_total{{status_code="{code}"}})"#);
        api.wait_for_value(&promql, count(sent), WAIT)
            .await
            .unwrap();
    }
    let all: usize = PLAN.iter().map(|p| p.0 + p.1 + p.2).sum();
    api.wait_for_value("sum(login_request_latency_seconds_count)", count(all), WAIT)
        .await
        .unwrap();

    // ANCHOR: order
    // Sum, then divide: the service's share of 200s, every request weighing the same.
    let ratio_of_sums = value(
        api,
        r#"sum(login_requests_total{status_code="200"}) / sum(login_requests_total)"#,
    )
    .await;
    // Divide, then average: every replica weighing the same, however few it served.
    let average_of_ratios = value(
        api,
        r#"avg(sum by (instance) (login_requests_total{status_code="200"}) / sum by (instance) (login_requests_total))"#,
    )
    .await;
    // ANCHOR_END: order
    let good = total(|p| p.0);
    let expected_ratio = count(good) / count(all);
    let expected_average = PLAN
        .iter()
        .map(|&(g, b, m)| count(g) / count(g + b + m))
        .sum::<f64>()
        / count(PLAN.len());
    eprintln!(
        "{good} of {all} logins succeeded: sum then divide = {ratio_of_sums:.4}, \
         divide then average = {average_of_ratios:.4}"
    );
    assert!(
        (ratio_of_sums - expected_ratio).abs() < 1e-9,
        "{ratio_of_sums}"
    );
    assert!(
        (average_of_ratios - expected_average).abs() < 1e-9,
        "{average_of_ratios}"
    );
    assert!(
        (ratio_of_sums - average_of_ratios).abs() > 0.1,
        "the plan must make the two orders disagree"
    );
}

/// One panel query: its name (`"Title" A`), the PromQL as Grafana would send it, and
/// what it shows under ordinary traffic when that is not a number.
struct PanelQuery {
    what: String,
    promql: String,
    expect: Option<Expect>,
}

/// Every query of the dashboard's panels, with its variables at their defaults, as
/// Grafana would send it for a 15 minute panel 1000 points wide.
async fn panel_queries(api: &QueryApi) -> Vec<PanelQuery> {
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let variables = Variables::resolve(&dashboard, DATASOURCE_UID, api)
        .await
        .unwrap();
    let ctx = QueryContext::for_panel(Duration::from_secs(900), 1000, Duration::from_secs(1));
    dashboard
        .queries()
        .map(|(panel, target)| PanelQuery {
            what: format!("{:?} {}", panel.title, target.ref_id),
            promql: ctx.expand(&variables.expand(&target.expr)),
            expect: expect_under_ordinary_traffic(&panel.title, &target.ref_id),
        })
        .collect()
}

/// The expression of the panel query named `what` (`"Title" A`).
fn panel_query<'a>(queries: &'a [PanelQuery], what: &str) -> &'a str {
    &queries
        .iter()
        .find(|query| query.what == what)
        .unwrap_or_else(|| panic!("no panel query {what}"))
        .promql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_replica_stopped_up_says_two_of_three_and_the_aggregate_panels_still_answer() {
    let Some((mut servers, _targets, host, prometheus)) = three_replicas_and_prometheus().await
    else {
        return;
    };
    let api = prometheus.api();
    let stopped = servers.pop().unwrap();
    let stopped_instance = format!("{host}:{}", stopped.metrics_addr.port());
    stopped.stop().await.unwrap();
    let traffic: Vec<Traffic> = servers
        .iter()
        .map(|s| Traffic::start(s.login_url(), Duration::from_millis(30)))
        .collect();
    prometheus.wait_for_targets_up(2, 3, WAIT).await.unwrap();

    let queries = panel_queries(api).await;
    // ANCHOR: two_of_three
    let up = panel_query(&queries, r#""Targets up of expected" A"#);
    let expected = panel_query(&queries, r#""Targets up of expected" B"#);
    api.wait_for_value(up, 2.0, WAIT).await.unwrap();
    api.wait_for_value(expected, 3.0, WAIT).await.unwrap();
    // ANCHOR_END: two_of_three
    let down = format!(r#"up{{instance="{stopped_instance}"}}"#);
    api.wait_for_value(&down, 0.0, WAIT).await.unwrap();

    // Every panel still answers, aggregates over the two left. "Firing alerts" is
    // a valid answer, empty here: this Prometheus evaluates no alerting rules.
    for PanelQuery {
        what,
        promql,
        expect,
    } in &queries
    {
        if *expect == Some(Expect::Answer) {
            let result = api.query(promql).await.unwrap();
            assert!(result.is_array(), "{what} `{promql}`: {result}");
            continue;
        }
        let result = api
            .poll_for_data(promql, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{what} `{promql}`: no data; last {}", e.last));
        eprintln!("{what}: {} series", result.as_array().map_or(0, Vec::len));
    }
    // The per-instance panel shows the two replicas that serve, not the stopped one.
    // Each serving replica appears once its rate window holds two scrapes; the stopped
    // one lingers at rate 0 until its last scrapes leave the window (a range selector
    // does not honour staleness markers), then it is gone.
    let per_instance = panel_query(&queries, r#""Requests per instance" A"#);
    let mut serving: Vec<String> = servers
        .iter()
        .map(|s| format!("{host}:{}", s.metrics_addr.port()))
        .collect();
    serving.sort();
    poll(
        "exactly the two serving replicas in the per-instance panel",
        WAIT,
        POLL_EVERY,
        || async {
            let result = api.query(per_instance).await.unwrap();
            let mut instances: Vec<String> = result
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_owned))
                .collect();
            instances.sort();
            if instances == serving {
                Check::Met(())
            } else {
                Check::NotYet(format!("{instances:?}, stopped {stopped_instance}"))
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));

    for t in traffic {
        assert!(!t.failed(), "a traffic generator stopped early");
        t.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_added_to_the_targets_file_is_scraped_without_a_restart_or_a_reload() {
    let Some((mut servers, targets, host, prometheus)) = three_replicas_and_prometheus().await
    else {
        return;
    };
    let api = prometheus.api();
    let own = |page: &str, name: &str| {
        login_metrics_testkit::exposition::sample(page, name)
            .unwrap_or_else(|| panic!("no {name} on Prometheus' /metrics"))
    };
    let before = prometheus.own_metrics().await.unwrap();

    // ANCHOR: add_replica
    servers.push(TestServer::start(ANY_ADDRESS).await.unwrap());
    targets
        .write(TARGETS_FILE, &[TargetGroup::ports(&host, &ports(&servers))])
        .unwrap();
    prometheus.wait_for_targets_up(4, 4, WAIT).await.unwrap();
    // ANCHOR_END: add_replica

    let new = servers.last().unwrap();
    send_logins(&new.login_url(), 7, 3, 2).await.unwrap();
    let instance = format!("{host}:{}", new.metrics_addr.port());
    for (code, sent) in [("200", 7.0), ("401", 3.0), ("400", 2.0)] {
        let promql =
            format!(r#"login_requests_total{{instance="{instance}", status_code="{code}"}}"#);
        api.wait_for_value(&promql, sent, WAIT).await.unwrap();
    }
    api.wait_for_value(r#"count(up{job="login_server"})"#, 4.0, WAIT)
        .await
        .unwrap();

    // The same process, and its configuration never reloaded: discovery did it.
    let after = prometheus.own_metrics().await.unwrap();
    for name in [
        "process_start_time_seconds",
        "prometheus_config_last_reload_success_timestamp_seconds",
    ] {
        let (then, now) = (own(&before, name), own(&after, name));
        assert!(
            (then - now).abs() < f64::EPSILON,
            "{name}: {then} then, {now} now"
        );
    }
    let discovered: Value = prometheus.active_targets().await.unwrap().into();
    eprintln!("active targets after the change: {discovered}");
}

#[test]
fn the_shipped_targets_files_list_the_same_replicas_for_the_host_and_for_compose() {
    let read = |path: &str| -> Vec<(String, String)> {
        login_metrics_testkit::repository_yaml(path)
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|group| group["targets"].as_sequence().unwrap().clone())
            .map(|t| {
                let (host, port) = t.as_str().unwrap().rsplit_once(':').unwrap();
                (host.to_owned(), port.to_owned())
            })
            .collect()
    };
    let native = read("deploy/targets/login_server.yml");
    let compose = read("deploy/scale/targets/login_server.yml");
    let ports =
        |targets: &[(String, String)]| targets.iter().map(|t| t.1.clone()).collect::<Vec<_>>();
    assert_eq!(ports(&native), ["8001", "8002", "8003"]);
    assert_eq!(ports(&native), ports(&compose));
    assert!(native.iter().all(|t| t.0 == "localhost"), "{native:?}");
    assert!(
        compose.iter().all(|t| t.0 == "host.docker.internal"),
        "{compose:?}"
    );
}
