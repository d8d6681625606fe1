//! The Grafana files, checked without Grafana: they parse into the typed structs of
//! `login_metrics_testkit::dashboard`, every panel is complete and takes its data source
//! from the dashboard's variable, every query filters by the `job` and `instance`
//! variables and aggregates across instances, and every panel's query (with Grafana's
//! variables replaced the way Grafana replaces them) returns data from a real
//! Prometheus scraping a real server that received traffic, and from the real
//! VictoriaMetrics that Prometheus writes to. (The provisioning files are
//! `tests/provisioning.rs`, the Compose stack `tests/compose.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use login_metrics_testkit::book::TUTORIAL_QUERIES;
use login_metrics_testkit::dashboard::{
    DASHBOARD_UID, DATASOURCE_UID, DATASOURCE_VARIABLE, Dashboard, Expect, LONG_TERM_STORE_UID,
    PROBE_PANELS, Panel, QueryContext, Variables, dashboard_file, expect_under_ordinary_traffic,
    load_dashboard, query_range_as_grafana,
};
use login_metrics_testkit::harness::prometheus;
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::harness::victoria_metrics::{self, VictoriaMetrics};
use login_metrics_testkit::promql::{POLL_EVERY, QueryApi, defined_numbers};
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::traffic::Traffic;
use login_metrics_testkit::wait::{Check, poll};

/// The scrape interval of the test harness' Prometheus (it rewrites prometheus.yml to 1 s).
const HARNESS_SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// Roughly the width in pixels of a panel on a laptop screen: Grafana's `maxDataPoints`.
const PANEL_POINTS: u32 = 1000;
const DATA_TIMEOUT: Duration = Duration::from_secs(45);
/// How much of the past the range queries ask for.
const RANGE_QUERIED: Duration = Duration::from_secs(30);

/// The panels showing the original tutorial's queries, in the order of
/// [`TUTORIAL_QUERIES`].
const TUTORIAL_PANELS: [&str; 3] = [
    "Successful logins (200) per second",
    "Client errors (4xx) per second",
    "Average latency",
];

/// The matchers every query of the dashboard carries, for its `job` and `instance`
/// variables.
const VARIABLE_MATCHERS: &str = r#"job=~"$job", instance=~"$instance""#;

fn dashboard() -> Dashboard {
    load_dashboard(&dashboard_file()).unwrap()
}

/// `expr` without the variable matchers: with "All" chosen they match everything, so
/// what remains is the query's meaning.
fn without_variable_matchers(expr: &str) -> String {
    expr.replace(&format!(", {VARIABLE_MATCHERS}"), "")
        .replace(&format!("{{{VARIABLE_MATCHERS}}}"), "")
}

#[test]
fn the_dashboard_has_a_fixed_uid_and_a_current_schema() {
    let dashboard = dashboard();
    assert_eq!(dashboard.uid, DASHBOARD_UID);
    assert!(!dashboard.title.is_empty());
    // 42 is the final classic schema (Grafana 12's frontend calls it "the FINAL version
    // for the v1 dashboard API"); a higher number makes Grafana's backend migrator fail.
    assert!(
        (41..=42).contains(&dashboard.schema_version),
        "schemaVersion {} must be 41 or 42",
        dashboard.schema_version
    );
    assert_eq!(dashboard.time.to, "now");
    let ids: BTreeSet<u32> = dashboard.panels.iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), dashboard.panels.len(), "panel ids are unique");
}

#[test]
fn every_panel_has_a_title_a_unit_thresholds_and_the_provisioned_data_source() {
    let dashboard = dashboard();
    assert!(!dashboard.panels.is_empty());
    for panel in &dashboard.panels {
        let what = format!("panel {} {:?}", panel.id, panel.title);
        assert!(!panel.title.trim().is_empty(), "{what}: title");
        assert!(
            panel.description.as_deref().is_some_and(|d| !d.is_empty()),
            "{what}: description"
        );
        let unit = panel
            .field_config
            .defaults
            .unit
            .as_deref()
            .unwrap_or_default();
        assert!(!unit.is_empty(), "{what}: unit");
        let datasource = panel.datasource.as_ref().expect("panel data source");
        assert_eq!(
            (datasource.kind.as_str(), datasource.uid.as_str()),
            ("prometheus", DATASOURCE_VARIABLE),
            "{what}: the data source the dashboard's variable chooses"
        );
        let thresholds = panel
            .field_config
            .defaults
            .thresholds
            .as_ref()
            .expect("thresholds");
        assert_eq!(
            thresholds.steps[0].value, None,
            "{what}: the first step is the base"
        );
        assert!(
            thresholds
                .steps
                .windows(2)
                .all(|w| w[0].value.unwrap_or(f64::MIN) < w[1].value.unwrap_or(f64::MIN)),
            "{what}: thresholds ascend"
        );
        assert!(!panel.targets.is_empty(), "{what}: queries");
        let ref_ids: BTreeSet<&str> = panel.targets.iter().map(|t| t.ref_id.as_str()).collect();
        assert_eq!(ref_ids.len(), panel.targets.len(), "{what}: refIds unique");
        for target in &panel.targets {
            assert_eq!(
                target.datasource.as_ref(),
                Some(datasource),
                "{what} {}",
                target.ref_id
            );
            assert!(!target.expr.trim().is_empty());
            // A table of what is true now asks for an instant; a chart for a range.
            if panel.kind == "table" {
                assert!(target.instant && !target.range, "{what}: instant query");
            } else {
                assert!(target.range, "{what}: range query");
            }
            assert!(
                target
                    .legend_format
                    .as_deref()
                    .is_some_and(|l| !l.is_empty()),
                "{what}: legend"
            );
        }
        let grid = panel.grid_pos;
        assert!(
            grid.x + grid.w <= 24 && grid.w > 0 && grid.h > 0,
            "{what}: {grid:?}"
        );
    }
}

#[test]
fn the_data_source_is_a_variable_offering_every_prometheus_type_source() {
    let dashboard = dashboard();
    let variable = dashboard
        .variable("datasource")
        .expect("a $datasource variable");
    assert_eq!(variable.kind, "datasource");
    assert_eq!(
        variable.query, "prometheus",
        "lists Prometheus-type sources only"
    );
    assert_eq!(
        variable.current["value"], DATASOURCE_UID,
        "opens on Prometheus"
    );
    assert_eq!(
        dashboard.templating.list[0].name, "datasource",
        "resolved first: the other variables query it"
    );
    for name in ["job", "instance"] {
        let query_variable = dashboard.variable(name).unwrap();
        assert_eq!(
            query_variable.datasource.as_ref().map(|d| d.uid.as_str()),
            Some(DATASOURCE_VARIABLE),
            "${name} asks the chosen data source"
        );
    }
}

#[test]
fn job_and_instance_are_variables_that_open_on_all() {
    let dashboard = dashboard();
    let job = dashboard.variable("job").expect("a $job variable");
    let instance = dashboard
        .variable("instance")
        .expect("an $instance variable");
    for variable in [job, instance] {
        assert_eq!(variable.kind, "query", "{}", variable.name);
        assert!(variable.include_all && variable.multi, "{}", variable.name);
        assert!(
            variable.defaults_to_all(),
            "{}: {}",
            variable.name,
            variable.current
        );
    }
    // $job offers the jobs exporting the login server's metrics, and its "All" is
    // exactly those (no allValue): `up` of other jobs stays out of the up panels.
    assert_eq!(
        job.label_values(),
        Some(("login_requests_total".to_owned(), "job".to_owned()))
    );
    assert_eq!(job.all_value, None);
    // $instance offers the instances of the chosen jobs; "All" is `.+`, short
    // however many instances there are.
    assert_eq!(
        instance.label_values(),
        Some((
            r#"login_requests_total{job=~"$job"}"#.to_owned(),
            "instance".to_owned()
        ))
    );
    assert_eq!(instance.all_value.as_deref(), Some(".+"));
}

#[test]
fn every_selector_of_every_query_filters_by_job_and_instance() {
    // A metric name, then its label matchers if any.
    let selector = regex::Regex::new(r"\b(up|login_[a-z_]+)(\{[^}]*\})?").unwrap();
    for (panel, target) in dashboard().queries() {
        if target.expr.contains("ALERTS{") {
            // Alerts about a whole job carry no instance label: `instance=~".+"`
            // would hide them, so the alerts panel filters by job only, and lists
            // the probe's too, whose job is its own.
            assert!(
                target.expr.contains(r#"job=~"$job|login_probe""#),
                "{:?}",
                panel.title
            );
            continue;
        }
        if PROBE_PANELS.contains(&panel.title.as_str()) {
            // The probe's series are the exporter's, about a URL: the server's job
            // and instances do not apply.
            continue;
        }
        let mut found = 0;
        for captures in selector.captures_iter(&target.expr) {
            found += 1;
            let matchers = captures.get(2).map_or("", |m| m.as_str());
            assert!(
                matchers.contains(VARIABLE_MATCHERS),
                "{:?} {}: `{}` does not filter by $job and $instance in `{}`",
                panel.title,
                target.ref_id,
                &captures[0],
                target.expr
            );
        }
        assert!(
            found > 0,
            "{:?}: no selector in `{}`",
            panel.title,
            target.expr
        );
    }
}

#[test]
fn every_panel_aggregates_across_instances_sum_before_dividing_and_by_le_before_quantiles() {
    let dashboard = dashboard();
    // The queries left per series on purpose, one tile or line per instance (their
    // legend says which): the up tiles, and the tutorial's average next to the
    // aggregated line.
    let per_instance_on_purpose = [
        ("Target up", "A"),
        ("Average latency", "A"),
        ("Login probe", "A"),
    ];
    for (panel, target) in dashboard.queries() {
        let expr = without_variable_matchers(&target.expr);
        let what = format!("{:?} {}: `{expr}`", panel.title, target.ref_id);
        if panel.title == "Login probe duration by phase" {
            // One line per phase, of the slowest URL probed: summing the durations
            // of several URLs would make a wait nobody had.
            assert!(expr.starts_with("max by (phase) ("), "{what}");
            assert_eq!(target.legend_format.as_deref(), Some("{{phase}}"), "{what}");
            continue;
        }
        if per_instance_on_purpose.contains(&(panel.title.as_str(), target.ref_id.as_str())) {
            assert_eq!(
                target.legend_format.as_deref(),
                Some("{{instance}}"),
                "{what}"
            );
            continue;
        }
        if expr.contains("histogram_quantile(") {
            assert!(
                expr.contains("sum by (le) (rate("),
                "{what}: buckets are summed by le across instances first"
            );
        } else if expr.contains(" / ") {
            for side in expr.split(" / ") {
                assert!(
                    side.trim().starts_with("sum("),
                    "{what}: sum each side, then divide"
                );
            }
        } else {
            assert!(
                ["sum(", "sum by (", "count("]
                    .iter()
                    .any(|a| expr.starts_with(a)),
                "{what}: one series per aggregate, not one per instance"
            );
        }
    }
    let average = dashboard.panel("Average latency").unwrap();
    assert_eq!(average.targets.len(), 2);
    assert_eq!(
        average.targets[1].legend_format.as_deref(),
        Some("all instances")
    );
}

#[test]
fn the_probe_panels_show_the_login_probe_job_and_nothing_else() {
    let dashboard = dashboard();
    let probing: BTreeSet<&str> = dashboard
        .queries()
        .filter(|(_, target)| target.expr.contains("probe_"))
        .map(|(panel, _)| panel.title.as_str())
        .collect();
    assert_eq!(probing, BTreeSet::from(PROBE_PANELS));
    for title in PROBE_PANELS {
        let panel = dashboard.panel(title).unwrap();
        for target in &panel.targets {
            assert!(
                target.expr.contains(r#"{job="login_probe"}"#),
                "{title}: {}",
                target.expr
            );
            // No series of the server's own.
            assert!(
                !target.expr.replace("login_probe", "").contains("login_"),
                "{title}: {}",
                target.expr
            );
        }
    }
    let success = dashboard.panel("Login probe").unwrap();
    assert_eq!(
        success.targets[0].expr,
        r#"probe_success{job="login_probe"}"#
    );
    assert!(
        !success.field_config.defaults.mappings.is_empty(),
        "0/1 shown as FAILING/OK"
    );
    let phases = dashboard.panel("Login probe duration by phase").unwrap();
    assert_eq!(phases.field_config.defaults.unit.as_deref(), Some("s"));
    assert_eq!(
        phases.field_config.defaults.custom["stacking"]["mode"], "normal",
        "the phases add up to the whole wait"
    );
}

#[test]
fn panels_do_not_overlap() {
    let dashboard = dashboard();
    let cells = |p: &Panel| {
        let g = p.grid_pos;
        (g.x..g.x + g.w).flat_map(move |x| (g.y..g.y + g.h).map(move |y| (x, y)))
    };
    let mut owner = BTreeMap::new();
    for panel in &dashboard.panels {
        for cell in cells(panel) {
            if let Some(other) = owner.insert(cell, panel.id) {
                panic!("panels {other} and {} overlap at {cell:?}", panel.id);
            }
        }
    }
}

#[test]
fn range_windows_are_rate_interval_not_hard_coded() {
    let windows = regex::Regex::new(r"\[([^\]]*)\]").unwrap();
    for (panel, target) in dashboard().queries() {
        for window in windows.captures_iter(&target.expr) {
            assert_eq!(
                &window[1], "$__rate_interval",
                "{:?}: {}",
                panel.title, target.expr
            );
        }
    }
}

#[test]
fn the_tutorials_queries_are_kept_with_rate_interval_instead_of_one_minute() {
    let dashboard = dashboard();
    for (title, query) in TUTORIAL_PANELS.into_iter().zip(TUTORIAL_QUERIES) {
        let panel = dashboard
            .panel(title)
            .unwrap_or_else(|| panic!("panel {title:?}"));
        assert_eq!(
            without_variable_matchers(&panel.targets[0].expr).replace("$__rate_interval", "1m"),
            query,
            "{title}: the first query is the original tutorial's"
        );
    }
    for (title, unit) in [
        ("Successful logins (200) per second", "reqps"),
        ("Client errors (4xx) per second", "reqps"),
        ("Average latency", "s"),
    ] {
        assert_eq!(
            dashboard
                .panel(title)
                .unwrap()
                .field_config
                .defaults
                .unit
                .as_deref(),
            Some(unit)
        );
    }
}

#[test]
fn the_sre_panels_are_there() {
    let dashboard = dashboard();

    let percentiles = dashboard
        .panel("Latency percentiles (p50, p95, p99)")
        .unwrap();
    let bucket_rate = format!(
        "sum by (le) (rate(login_request_latency_seconds_bucket{{{VARIABLE_MATCHERS}}}[$__rate_interval]))"
    );
    let quantiles: Vec<(String, String)> = percentiles
        .targets
        .iter()
        .map(|t| (t.expr.clone(), t.legend_format.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        quantiles,
        [("0.50", "p50"), ("0.95", "p95"), ("0.99", "p99")].map(|(q, l)| (
            format!("histogram_quantile({q}, {bucket_rate})"),
            l.to_owned()
        ))
    );
    assert_eq!(percentiles.field_config.defaults.unit.as_deref(), Some("s"));

    let ratio = dashboard.panel("Login success ratio").unwrap();
    assert_eq!(
        ratio.field_config.defaults.unit.as_deref(),
        Some("percentunit")
    );
    assert_eq!(
        (
            ratio.field_config.defaults.min,
            ratio.field_config.defaults.max
        ),
        (Some(0.0), Some(1.0))
    );

    let by_code = dashboard.panel("Requests by status code").unwrap();
    assert_eq!(
        by_code.field_config.defaults.custom["stacking"]["mode"],
        "normal"
    );
    assert_eq!(
        by_code.targets[0].legend_format.as_deref(),
        Some("{{status_code}}")
    );
    assert!(
        without_variable_matchers(&by_code.targets[0].expr)
            .starts_with("sum by (status_code) (rate(login_requests_total[")
    );

    let up = dashboard.panel("Target up").unwrap();
    assert_eq!(up.targets[0].expr, format!("up{{{VARIABLE_MATCHERS}}}"));
    assert_eq!(up.targets[0].legend_format.as_deref(), Some("{{instance}}"));
    assert!(
        !up.field_config.defaults.mappings.is_empty(),
        "0/1 shown as DOWN/UP"
    );

    let of_expected = dashboard.panel("Targets up of expected").unwrap();
    let queries: Vec<(&str, &str)> = of_expected
        .targets
        .iter()
        .map(|t| {
            (
                t.expr.as_str(),
                t.legend_format.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        queries,
        [
            (format!("sum(up{{{VARIABLE_MATCHERS}}})").as_str(), "up"),
            (
                format!("count(up{{{VARIABLE_MATCHERS}}})").as_str(),
                "expected"
            ),
        ]
    );

    let per_instance = dashboard.panel("Requests per instance").unwrap();
    assert_eq!(
        without_variable_matchers(&per_instance.targets[0].expr),
        "sum by (instance) (rate(login_requests_total[$__rate_interval]))"
    );
    assert_eq!(
        per_instance.targets[0].legend_format.as_deref(),
        Some("{{instance}}")
    );

    let in_flight = dashboard.panel("Requests in flight").unwrap();
    assert!(
        in_flight.targets[0]
            .expr
            .contains("login_requests_in_flight")
    );
}

/// The dashboard's variables as Grafana resolves them against `api`, once the engine
/// has the series their `label_values()` queries ask about.
async fn resolve_variables(dashboard: &Dashboard, uid: &str, api: &QueryApi) -> Variables {
    Variables::resolve_within(dashboard, uid, api, DATA_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{}: the dashboard's variables: {e:#}", api.name()))
}

/// Every query of every panel, as Grafana would send it to the data source `uid`
/// served by `api`, returns a number, as an instant and as a range query.
async fn every_query_returns_data(
    dashboard: &Dashboard,
    ctx: &QueryContext,
    uid: &str,
    api: &QueryApi,
    traffic: &Traffic,
) -> Variables {
    let variables = resolve_variables(dashboard, uid, api).await;
    // ANCHOR: every_query
    for (panel, target) in dashboard.queries() {
        let promql = ctx.expand(&variables.expand(&target.expr));
        assert!(!promql.contains('$'), "unexpanded variable in {promql}");
        let what = format!(
            "{}: {:?} {} `{promql}`",
            api.name(),
            panel.title,
            target.ref_id
        );
        let expect = expect_under_ordinary_traffic(&panel.title, &target.ref_id);
        if expect == Some(Expect::Answer) {
            api.query(&promql)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:#}"));
            continue;
        }
        let instant = api
            .poll_for_data(&promql, DATA_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{what}: no data; last answer {}", e.last));
        if expect == Some(Expect::Zero) {
            let ranged = query_range_as_grafana(api, &promql, ctx, RANGE_QUERIED)
                .await
                .unwrap();
            let values = defined_numbers(&ranged);
            assert!(
                !values.is_empty() && values.iter().all(|v| *v == 0.0),
                "{what}: expected zeros, got {ranged}"
            );
            continue;
        }
        // The range query's end is aligned down to the step, so it may miss the
        // newest sample for a moment: poll it too. Zeros are not data: with
        // traffic flowing, every panel has a non-zero point.
        let nonzero = format!("{what}: a non-zero number in the range query");
        poll(&nonzero, DATA_TIMEOUT, POLL_EVERY, || async {
            let ranged = query_range_as_grafana(api, &promql, ctx, RANGE_QUERIED)
                .await
                .unwrap();
            if defined_numbers(&ranged).iter().any(|v| *v != 0.0) {
                Check::Met(())
            } else {
                Check::NotYet(ranged.to_string())
            }
        })
        .await
        .unwrap_or_else(|timed_out| panic!("{timed_out}"));
        eprintln!(
            "{what}: {}",
            defined_numbers(&instant).first().unwrap_or(&f64::NAN)
        );
        assert!(!traffic.failed(), "the traffic generator stopped early");
    }
    // ANCHOR_END: every_query
    variables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_data_from_prometheus_and_from_the_long_term_store() {
    let server = TestServer::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .await
        .unwrap();
    let Some(placement) = Prometheus::placement().await.unwrap() else {
        return; // the harness printed why
    };
    // The long-term store, when one can run here (else one skip line, and the
    // Prometheus half still runs).
    let victoria = VictoriaMetrics::start(victoria_metrics::Options {
        reachable_from_containers: placement.backend() == prometheus::Backend::Container,
        ..victoria_metrics::Options::default()
    })
    .await
    .unwrap();
    let mut builder = Prometheus::builder().scrape_server(server.metrics_addr.port());
    if let Some(victoria) = &victoria {
        builder = builder.remote_write(victoria.remote_write_url(placement.backend()));
    }
    let Some(prometheus) = builder.start().await.unwrap() else {
        return;
    };
    let traffic = Traffic::start(server.login_url(), Duration::from_millis(20));
    prometheus
        .wait_for_target_health("up", Duration::from_secs(30))
        .await
        .unwrap();

    let dashboard = dashboard();
    let range = dashboard
        .time
        .length()
        .expect("a relative range ending now, like now-15m");
    let ctx = QueryContext::for_panel(range, PANEL_POINTS, HARNESS_SCRAPE_INTERVAL);
    assert_eq!(ctx.rate_interval(), Duration::from_secs(4), "{ctx:?}");

    let variables =
        every_query_returns_data(&dashboard, &ctx, DATASOURCE_UID, prometheus.api(), &traffic)
            .await;
    // "All" jobs is the job prometheus.yml defines (the one with the :8000 target);
    // "All" instances is `.+`.
    assert_eq!(variables.get("job"), Some(prometheus.job()));
    assert_eq!(variables.get("instance"), Some(".+"));

    // Values that must hold, not just exist.
    let up = defined_numbers(&prometheus.query(r#"up{job="login_server"}"#).await.unwrap());
    assert_eq!(up, [1.0]);
    let ratio_panel = dashboard.panel("Login success ratio").unwrap();
    let ratio = defined_numbers(
        &prometheus
            .wait_for_data(
                &ctx.expand(&variables.expand(&ratio_panel.targets[0].expr)),
                DATA_TIMEOUT,
            )
            .await
            .unwrap(),
    );
    // The traffic sends rounds of one good login, one wrong password and one
    // malformed body: one success in three. A 4 s window may cut a round, which
    // moves the ratio by less than 0.05 at the traffic's rate; 0.1 is the tolerance.
    assert!(
        (ratio[0] - 1.0 / 3.0).abs() < 0.1,
        "one good login in three, within 0.1: {ratio:?}"
    );

    if let Some(victoria) = &victoria {
        every_query_returns_data(
            &dashboard,
            &ctx,
            LONG_TERM_STORE_UID,
            victoria.api(),
            &traffic,
        )
        .await;
        // One Prometheus writes: one series per target, not a copy per writer.
        let up = defined_numbers(&victoria.query(r#"up{job="login_server"}"#).await.unwrap());
        assert_eq!(up, [1.0], "VictoriaMetrics' up");
    }

    let counts = traffic.stop().await.unwrap();
    assert!(
        counts.ok > 0 && counts.unauthorized > 0 && counts.bad_request > 0,
        "{counts:?}"
    );
}
