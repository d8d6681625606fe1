//! The dashboard through a real Grafana: provisioning loads, both data sources answer
//! (Prometheus, and VictoriaMetrics as the long-term store Prometheus writes to), the
//! dashboard is served by uid, and every panel's query, sent to `POST /api/ds/query`
//! the way the panel sends it with either data source chosen, returns values.
//!
//! Needs Docker and a Grafana image (`GRAFANA_IMAGE`, default
//! `login_metrics_testkit::harness::grafana::DEFAULT_IMAGE`, pulled when missing). Where
//! neither exists the test prints one line saying so and passes:
//!
//! ```sh
//! GRAFANA_IMAGE=grafana/grafana:12.4.11 cargo test --test grafana -- --nocapture
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use login_metrics_testkit::dashboard::{
    DASHBOARD_UID, DATASOURCE_UID, Dashboard, Expect, LONG_TERM_STORE_UID, Panel, QueryContext,
    Target, Variables, dashboard_file, expect_under_ordinary_traffic, load_dashboard,
};
use login_metrics_testkit::harness::docker;
use login_metrics_testkit::harness::grafana::Grafana;
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::harness::victoria_metrics::{self, VictoriaMetrics};
use login_metrics_testkit::promql::QueryApi;
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::traffic::Traffic;
use login_metrics_testkit::wait::{Check, poll};
use serde_json::{Value, json};

/// What the Grafana data source is told: the harness' Prometheus scrapes every second.
const SCRAPE_INTERVAL: &str = "1s";
/// The time range of the queries and the panel width in points, as a browser sends them.
const RANGE: &str = "now-5m";
const RANGE_SECS: u64 = 300;
const MAX_DATA_POINTS: u32 = 1000;
const DATA_TIMEOUT: Duration = Duration::from_secs(60);

// ANCHOR: panel_request
/// The body a dashboard panel posts to `/api/ds/query` for one of its targets: the
/// target as saved in the dashboard with the dashboard's variables replaced (the data
/// source uid, `$job`, `$instance`), plus what the browser adds (`intervalMs`,
/// `maxDataPoints`, the time range). Grafana's server replaces `$__rate_interval`.
fn panel_request(target: &Target, variables: &Variables, ctx: &QueryContext) -> Value {
    let mut query = serde_json::to_value(target).unwrap();
    let fields = query.as_object_mut().unwrap();
    fields.insert("expr".into(), json!(variables.expand(&target.expr)));
    if let Some(datasource) = fields.get_mut("datasource") {
        let uid = variables.expand(datasource["uid"].as_str().unwrap_or_default());
        datasource["uid"] = json!(uid);
    }
    fields.insert(
        "intervalMs".into(),
        json!(u64::try_from(ctx.interval.as_millis()).unwrap()),
    );
    fields.insert("maxDataPoints".into(), json!(MAX_DATA_POINTS));
    json!({ "from": RANGE, "to": "now", "queries": [query] })
}
// ANCHOR_END: panel_request

/// Every number in every frame of `results.<ref_id>`; `Err` carries Grafana's error.
fn frame_values(answer: &Value, ref_id: &str) -> Result<Vec<f64>, String> {
    let result = &answer["results"][ref_id];
    if let Some(error) = result["error"].as_str() {
        return Err(error.to_owned());
    }
    let frames = result["frames"].as_array().ok_or("no frames")?;
    Ok(frames
        .iter()
        .filter_map(|frame| frame["data"]["values"].as_array())
        // values[0] is the time column; the rest are the series' values.
        .flat_map(|columns| columns.iter().skip(1))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_f64)
        .filter(|v| !v.is_nan())
        .collect())
}

async fn wait_for_panel_data(
    grafana: &Grafana,
    panel: &Panel,
    target: &Target,
    variables: &Variables,
    ctx: &QueryContext,
) {
    let request = panel_request(target, variables, ctx);
    let expect = expect_under_ordinary_traffic(&panel.title, &target.ref_id);
    let accept = |values: &[f64]| match expect {
        // Zeros are not data: with traffic flowing, each panel has a non-zero point...
        None => values.iter().any(|v| *v != 0.0),
        // ...but for the defences, which ordinary traffic never sets off...
        Some(Expect::Zero) => !values.is_empty() && values.iter().all(|v| *v == 0.0),
        // (the alerts are checked on the answer as a whole, below).
        Some(Expect::Answer) => true,
    };
    let what = format!(
        "values for panel {:?} query {} `{}` through Grafana",
        panel.title, target.ref_id, target.expr
    );
    let answered = poll(&what, DATA_TIMEOUT, Duration::from_millis(500), || async {
        match grafana.query(&request).await {
            // The alerts: any answer without an error, frames or none.
            Ok(answer)
                if expect == Some(Expect::Answer)
                    && answer["results"][target.ref_id.as_str()]["error"].is_null() =>
            {
                Check::Met(())
            }
            Ok(answer) => match frame_values(&answer, &target.ref_id) {
                Ok(values) if accept(&values) => {
                    eprintln!(
                        "{} {:?} {}: {} values",
                        request["queries"][0]["datasource"]["uid"],
                        panel.title,
                        target.ref_id,
                        values.len()
                    );
                    Check::Met(())
                }
                Ok(_) => Check::NotYet(format!(
                    "frames without the values expected ({expect:?}): {answer}"
                )),
                Err(error) => Check::NotYet(format!("error: {error}")),
            },
            Err(e) => Check::NotYet(format!("{e:#}")),
        }
    })
    .await;
    if let Err(timed_out) = answered {
        panic!(
            "{timed_out}\nrequest: {request}\nGrafana log:\n{}",
            grafana.log_tail().await
        );
    }
}

/// Grafana is healthy, reaches both data sources, and serves the repository's
/// dashboard, query by query; returns the dashboard as Grafana serves it.
async fn check_provisioning(grafana: &Grafana) -> Dashboard {
    // ANCHOR: grafana_checks
    let health = grafana.health().await.unwrap();
    assert_eq!(health["database"], "ok", "{health}");

    for uid in [DATASOURCE_UID, LONG_TERM_STORE_UID] {
        let datasource = grafana
            .datasource_health(uid)
            .await
            .unwrap_or_else(|e| panic!("data source {uid} health: {e:#}"));
        assert_eq!(
            datasource["status"], "OK",
            "data source {uid} health: {datasource}"
        );
    }

    // The dashboard Grafana serves is the one in the repository.
    let answer = grafana.dashboard(DASHBOARD_UID).await.unwrap();
    let provisioned: Dashboard = serde_json::from_value(answer["dashboard"].clone())
        .unwrap_or_else(|e| panic!("provisioned dashboard does not parse: {e}: {answer}"));
    let in_repository = load_dashboard(&dashboard_file()).unwrap();
    assert_eq!(provisioned.uid, in_repository.uid);
    // Panel by panel, query by query: the titles alone would not notice a query
    // that Grafana changed, dropped or failed to load.
    let queries = |d: &Dashboard| {
        d.queries()
            .map(|(panel, target)| {
                (
                    panel.title.clone(),
                    target.ref_id.clone(),
                    target.expr.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(queries(&provisioned), queries(&in_repository));
    assert!(!queries(&in_repository).is_empty());
    assert_eq!(provisioned.templating, in_repository.templating);
    assert_eq!(answer["meta"]["provisioned"], true, "{}", answer["meta"]);
    // ANCHOR_END: grafana_checks
    provisioned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_through_grafana() {
    // Decide first, before starting anything, whether Grafana can run at all.
    if !Grafana::available().await.unwrap() {
        return; // the harness printed why
    }

    let server = TestServer::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .await
        .unwrap();
    let network = docker::unique_name("login-metrics-net");
    let Some(victoria) = VictoriaMetrics::start(victoria_metrics::Options {
        network: Some((
            network.clone(),
            docker::unique_name("login-metrics-victoria-metrics"),
        )),
        ..victoria_metrics::Options::default()
    })
    .await
    .unwrap() else {
        return; // the harness printed why
    };
    let victoria_url = victoria
        .network_url()
        .expect("a URL on the network")
        .to_owned();
    let prometheus_name = docker::unique_name("login-metrics-prometheus");
    let Some(prometheus) = Prometheus::builder()
        .scrape_server(server.metrics_addr.port())
        .on_network(&network, &prometheus_name)
        .remote_write(format!("{victoria_url}/api/v1/write"))
        .start()
        .await
        .unwrap()
    else {
        return; // the harness printed why
    };
    let prometheus_url = prometheus
        .network_url()
        .expect("a URL on the network")
        .to_owned();
    let traffic = Traffic::start(server.login_url(), Duration::from_millis(20));

    let grafana = Grafana::start_with_long_term_store(
        &network,
        &prometheus_url,
        &victoria_url,
        SCRAPE_INTERVAL,
    )
    .await
    .unwrap()
    .expect("Grafana was found available above");

    let provisioned = check_provisioning(&grafana).await;

    prometheus
        .wait_for_target_health("up", Duration::from_secs(30))
        .await
        .unwrap();
    let ctx = QueryContext::for_panel(
        Duration::from_secs(RANGE_SECS),
        MAX_DATA_POINTS,
        Duration::from_secs(1),
    );
    // The dashboard with either data source chosen in its menu.
    for (uid, api) in [
        (DATASOURCE_UID, prometheus.api()),
        (LONG_TERM_STORE_UID, victoria.api()),
    ] {
        let variables = resolve_variables(&provisioned, uid, api).await;
        for (panel, target) in provisioned.queries() {
            wait_for_panel_data(&grafana, panel, target, &variables, &ctx).await;
            assert!(!traffic.failed(), "the traffic generator stopped early");
        }
    }

    traffic.stop().await.unwrap();
    // Grafana first: the network goes away with the container that created it.
    drop(grafana);
    drop(prometheus);
    drop(victoria);
}

/// The dashboard's variables resolved against `api`, once it has the series their
/// `label_values()` queries ask about.
async fn resolve_variables(dashboard: &Dashboard, uid: &str, api: &QueryApi) -> Variables {
    Variables::resolve_within(dashboard, uid, api, DATA_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{}: the dashboard's variables: {e:#}", api.name()))
}

#[test]
fn a_panel_request_is_the_target_plus_what_the_browser_adds() {
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let (_, target) = dashboard.queries().next().unwrap();
    let ctx = QueryContext::for_panel(
        Duration::from_secs(RANGE_SECS),
        MAX_DATA_POINTS,
        Duration::from_secs(1),
    );
    let mut variables = Variables::default();
    variables.set("datasource", LONG_TERM_STORE_UID);
    variables.set("job", "login_server");
    variables.set("instance", ".+");
    let request = panel_request(target, &variables, &ctx);
    let query = &request["queries"][0];
    assert_eq!(query["refId"], "A");
    assert_eq!(query["datasource"]["uid"], LONG_TERM_STORE_UID);
    assert_eq!(query["expr"], variables.expand(&target.expr).as_str());
    assert!(!query["expr"].as_str().unwrap().contains("$job"), "{query}");
    assert_eq!(query["range"], true);
    assert_eq!(query["intervalMs"], 1000);
    assert_eq!(query["maxDataPoints"], MAX_DATA_POINTS);
    assert_eq!(request["from"], RANGE);
}

#[test]
fn frame_values_reads_grafana_data_frames() {
    let answer = json!({"results": {"A": {"status": 200, "frames": [
        {"schema": {"fields": [{"name": "Time"}, {"name": "Value"}]},
         "data": {"values": [[1_700_000_000_000_u64, 1_700_000_001_000_u64], [0.5, null]]}}
    ]}}});
    assert_eq!(frame_values(&answer, "A"), Ok(vec![0.5]));
    let empty = json!({"results": {"A": {"frames": [{"data": {"values": [[], []]}}]}}});
    assert_eq!(frame_values(&empty, "A"), Ok(vec![]));
    let error = json!({"results": {"A": {"error": "bad_data: parse error", "status": 400}}});
    assert_eq!(
        frame_values(&error, "A"),
        Err("bad_data: parse error".to_owned())
    );
}
