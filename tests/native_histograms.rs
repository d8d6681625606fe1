//! Native histograms and exemplars, the claims of the chapter of that name, against
//! real engines: the minimal server written with `prometheus-client`
//! (`crates-compared/examples/with_prometheus_client.rs`) run as a process, a
//! Prometheus started with `--enable-feature=native-histograms,exemplar-storage`
//! (the harness' [`NATIVE_HISTOGRAMS`] and [`EXEMPLAR_STORAGE`]), and, to compare, a
//! Prometheus without them, which scrapes the classic buckets of the same server.
//! The last test writes into VictoriaMetrics, the long-term store of Step 9, and
//! records what it keeps.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::book::shell::{run_ok, script, sub};
use login_metrics_testkit::book::{every_block_answers, promql_blocks};
use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, DATASOURCE_VARIABLE, QueryContext, Variables, grafana_dir, load_dashboard,
};
use login_metrics_testkit::example::{ExampleServer, example_of};
use login_metrics_testkit::exposition::{sample, sum};
use login_metrics_testkit::harness::prometheus::{
    EXEMPLAR_STORAGE, NATIVE_HISTOGRAMS, Prometheus, PrometheusBuilder, TEST_INTERVAL,
};
use login_metrics_testkit::harness::victoria_metrics::{self, VictoriaMetrics};
use login_metrics_testkit::logins::send_logins;
use login_metrics_testkit::promql::{defined_numbers, single_value};
use login_metrics_testkit::traffic::Traffic;
use login_metrics_testkit::wait::{Check, poll};
use serde_json::Value;
use serde_yaml_ng::Mapping;

const WAIT: Duration = Duration::from_secs(45);
/// Logins sent by the tests that count: good, wrong password, malformed.
const SENT: (usize, usize, usize) = (40, 25, 15);
/// The recording rules of the native form, which a reader adds to `rule_files`.
const NATIVE_RULES: &str = "rules/native-histograms.yml";
/// The native histogram's largest bucket growth: the server asks for buckets at
/// most 1.1 times as wide as the one below (schema 3: 2^(1/8) ≈ 1.09).
const NATIVE_GROWTH: f64 = 1.1;

/// The `prometheus-client` variant, its metrics listener reachable from a container.
fn start_server() -> ExampleServer {
    ExampleServer::start(
        example_of("crates-compared", "with_prometheus_client"),
        "0.0.0.0",
    )
}

/// A Prometheus that ingests native histograms and keeps exemplars, scraping
/// `server`, with the native form's recording rules loaded.
fn native_prometheus(server: &ExampleServer) -> PrometheusBuilder {
    Prometheus::builder()
        .scrape_server(server.metrics_port())
        .enable_feature(NATIVE_HISTOGRAMS)
        .enable_feature(EXEMPLAR_STORAGE)
        .rule_file(NATIVE_RULES)
}

/// Starts `builder` and waits for its target; `None` when no Prometheus runs here.
async fn started(builder: PrometheusBuilder) -> Option<Prometheus> {
    let prometheus = builder.start().await.unwrap()?;
    prometheus.wait_for_target_health("up", WAIT).await.unwrap();
    Some(prometheus)
}

fn sent_total() -> f64 {
    f64::from(u32::try_from(SENT.0 + SENT.1 + SENT.2).unwrap())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sends the [`SENT`] logins and waits until the native histogram has counted each:
/// one observation per request.
async fn send_and_count(server: &ExampleServer, native: &Prometheus) {
    send_logins(&server.login_url, SENT.0, SENT.1, SENT.2)
        .await
        .unwrap();
    native
        .wait_for_value(
            "histogram_count(login_request_latency_seconds)",
            sent_total(),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The single number `promql` returns now.
async fn one_number(prometheus: &Prometheus, promql: &str) -> f64 {
    let result = prometheus.wait_for_data(promql, WAIT).await.unwrap();
    single_value(&result).unwrap_or_else(|| panic!("`{promql}`: one number, got {result}"))
}

#[tokio::test]
async fn the_native_histogram_counts_every_request_and_its_p95_agrees_with_the_classic_buckets() {
    let server = start_server();
    let Some(native) = started(native_prometheus(&server)).await else {
        return; // the harness printed why
    };
    let Some(classic) = started(Prometheus::builder().scrape_server(server.metrics_port())).await
    else {
        return;
    };
    // Every request is one observation of the native histogram, and its sum is the
    // server's own, to the last digit.
    send_and_count(&server, &native).await;
    let own_sum = sample(&server.scrape().await, "login_request_latency_seconds_sum").unwrap();
    let sum = one_number(&native, "histogram_sum(login_request_latency_seconds)").await;
    assert!(
        (sum - own_sum).abs() <= own_sum * 1e-12,
        "histogram_sum {sum}, the server's sum {own_sum}"
    );
    classic
        .wait_for_value("login_request_latency_seconds_count", sent_total(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // The 95th percentile of every request so far, from the same observations: the
    // native estimate lies in the classic bucket that holds the classic estimate,
    // give or take one native bucket.
    let classic_p95 = one_number(
        &classic,
        "histogram_quantile(0.95, sum by (le) (login_request_latency_seconds_bucket))",
    )
    .await;
    let native_p95 = one_number(
        &native,
        "histogram_quantile(0.95, sum(login_request_latency_seconds))",
    )
    .await;
    let bounds = bucket_bounds(&classic).await;
    let upper = *bounds.iter().find(|b| **b >= classic_p95).unwrap();
    let lower = bounds
        .iter()
        .rev()
        .find(|b| **b < classic_p95)
        .map_or(0.0, |b| *b);
    let printed = format!(
        "p95 of {} requests: classic {classic_p95} (bucket {lower} to {upper}), native {native_p95}",
        sent_total()
    );
    eprintln!("{printed}");
    // The chapter shows this line from one run; the latencies vary from run to run.
    let number = r"[0-9][0-9.e-]*";
    check_output(
        "native/p95",
        &printed,
        &Masks::none()
            .mask(
                "[CLASSIC]",
                &format!(r"classic (?<redacted>{number} \(bucket {number} to {number}\))"),
            )
            .mask("[NATIVE]", &format!(r"native (?<redacted>{number})$")),
    );
    assert!(
        lower / NATIVE_GROWTH <= native_p95 && native_p95 <= upper * NATIVE_GROWTH,
        "native p95 {native_p95} outside the classic bucket {lower}..{upper} of the classic p95 {classic_p95}"
    );

    // The chapter's query, over the last minute of traffic.
    native
        .wait_for_nonzero(
            "histogram_quantile(0.95, sum(rate(login_request_latency_seconds[1m])))",
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The upper bounds of the classic buckets, from the series Prometheus stored.
async fn bucket_bounds(classic: &Prometheus) -> Vec<f64> {
    let result = classic
        .wait_for_data("login_request_latency_seconds_bucket", WAIT)
        .await
        .unwrap();
    let mut bounds: Vec<f64> = result
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|series| series["metric"]["le"].as_str()?.parse().ok())
        .filter(|bound: &f64| bound.is_finite())
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds
}

/// Prometheus 2.x keeps only the native form of a histogram that has both, so every
/// query of the classic series (`_bucket`, `_sum`, `_count`; the original tutorial's
/// third query among them) returns nothing from a Prometheus that ingests native
/// histograms, while the counter is unchanged.
#[tokio::test]
async fn a_prometheus_that_ingests_the_native_histogram_stores_no_classic_series_of_it() {
    let server = start_server();
    let Some(native) = started(native_prometheus(&server)).await else {
        return;
    };
    send_and_count(&server, &native).await;
    native
        .wait_for_value("sum(login_requests_total)", sent_total(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    for classic in [
        "login_request_latency_seconds_bucket",
        "login_request_latency_seconds_sum",
        "login_request_latency_seconds_count",
    ] {
        let result = native.query(classic).await.unwrap();
        assert_eq!(result, Value::Array(Vec::new()), "{classic}: {result}");
    }
}

#[tokio::test]
async fn exemplars_carry_the_trace_id_of_a_request_logged_with_the_same_status() {
    let server = start_server();
    let Some(native) = started(native_prometheus(&server)).await else {
        return;
    };
    let start = now();
    let traffic = Traffic::start(server.login_url.clone(), Duration::from_millis(50));
    // Each scrape stores the newest request of each status code as an exemplar.
    let exemplars = poll(
        "exemplars of 200, 401 and 400",
        WAIT,
        Duration::from_millis(500),
        || async {
            let data = native
                .api()
                .query_exemplars("login_requests_total", start, now())
                .await
                .unwrap();
            let found = exemplars_by_status(&data);
            let codes: BTreeSet<&str> = found.iter().map(|(code, _)| code.as_str()).collect();
            if ["200", "400", "401"]
                .iter()
                .all(|code| codes.contains(code))
            {
                Check::Met(found)
            } else {
                Check::NotYet(data.to_string())
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    traffic.stop().await.unwrap();

    // The chapter's command, run against this Prometheus, prints what it shows once
    // its window (whole seconds, from `date +%s`) holds the exemplars found above.
    let command = script(
        "native/query-exemplars",
        &[sub("http://localhost:9090", native.base_url())],
    );
    let answer = poll(
        "the chapter's command to print exemplars",
        WAIT,
        Duration::from_millis(500),
        || async {
            let answer = run_ok(&command, &[]);
            if answer.contains("\"exemplars\"") {
                Check::Met(answer)
            } else {
                Check::NotYet(answer)
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    check_output(
        "native/exemplars",
        &answer,
        &Masks::none()
            .mask("[INSTANCE]", r#""instance": "(?<redacted>[^"]+)""#)
            .mask("[STATUS]", r#""status_code": "(?<redacted>\d+)""#)
            .mask("[TRACE_ID]", r#""trace_id": "(?<redacted>[0-9a-f]{32})""#)
            .mask("[TIME]", r#""timestamp": (?<redacted>[0-9.]+)"#),
    );

    // ANCHOR: join
    let log = server.output();
    for (status_code, trace_id) in &exemplars {
        let line = log
            .iter()
            .find(|line| line.ends_with(&format!(" trace_id={trace_id}")))
            .unwrap_or_else(|| panic!("no log line has trace_id={trace_id}"));
        let logged_status = line.split_whitespace().nth(2);
        assert_eq!(logged_status, Some(status_code.as_str()), "{line}");
    }
    // ANCHOR_END: join
    let good = log
        .iter()
        .find(|line| line.starts_with("POST /login 200 "))
        .expect("a good login in the log");
    check_output(
        "native/log-line",
        good,
        &Masks::none()
            .mask("[SECONDS]", r"200 (?<redacted>[0-9.]+)s ")
            .mask("[TRACE_ID]", r"trace_id=(?<redacted>[0-9a-f]{32})"),
    );
    eprintln!(
        "{} exemplars, each found in the log, e.g. {:?}",
        exemplars.len(),
        exemplars.first()
    );
}

/// `(status_code, trace_id)` of every exemplar in a `query_exemplars` answer.
fn exemplars_by_status(data: &Value) -> Vec<(String, String)> {
    data.as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| {
            let code = series["seriesLabels"]["status_code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            series["exemplars"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |exemplar| {
                    let id = exemplar["labels"]["trace_id"].as_str()?.to_owned();
                    Some((code.clone(), id))
                })
        })
        .collect()
}

#[tokio::test]
async fn every_native_promql_block_in_the_book_returns_data() {
    let blocks: Vec<_> = promql_blocks()
        .unwrap()
        .into_iter()
        .filter(|block| block.native)
        .collect();
    assert!(
        !blocks.is_empty(),
        "the book shows native histogram queries"
    );
    let server = start_server();
    let Some(native) = started(native_prometheus(&server)).await else {
        return;
    };
    let traffic = Traffic::start(server.login_url.clone(), Duration::from_millis(20));
    every_block_answers(&native, blocks, Some(&traffic))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    traffic.stop().await.unwrap();
}

/// The recording rules of the native form record from the native histogram: a p95
/// within the server's range of latencies, and no login slower than 250 ms.
#[tokio::test]
async fn the_recording_rules_of_the_native_form_record_from_the_native_histogram() {
    let server = start_server();
    let Some(native) = started(native_prometheus(&server)).await else {
        return;
    };
    let traffic = Traffic::start(server.login_url.clone(), Duration::from_millis(20));
    let job = native.job().to_owned();
    let p95 = format!("job:login_request_latency_seconds:native_p95_5m{{job=\"{job}\"}}");
    let result = native.wait_for_nonzero(&p95, WAIT).await.unwrap();
    let p95 = single_value(&result).unwrap();
    assert!(p95 > 0.0 && p95 < 0.25, "p95 {p95}");
    let slow = format!("job:login_requests_slow:native_ratio_rate5m{{job=\"{job}\"}}");
    let result = native.wait_for_data(&slow, WAIT).await.unwrap();
    assert_eq!(single_value(&result), Some(0.0), "{result}");
    traffic.stop().await.unwrap();
}

fn native_dashboard() -> login_metrics_testkit::dashboard::Dashboard {
    load_dashboard(&grafana_dir().join("dashboards/login-native.json")).unwrap()
}

/// The second dashboard reads only the native histogram and the counter: none of
/// the classic series, which the Prometheus it is meant for does not keep.
#[test]
fn the_native_dashboard_reads_no_classic_series_and_is_complete() {
    let dashboard = native_dashboard();
    assert_eq!(dashboard.uid, "login-metrics-native");
    assert!((41..=42).contains(&dashboard.schema_version));
    for variable in ["datasource", "job", "instance"] {
        assert!(dashboard.variable(variable).is_some(), "${variable}");
    }
    for (panel, target) in dashboard.queries() {
        let what = format!("{:?} {}: {}", panel.title, target.ref_id, target.expr);
        for classic in ["_bucket", "_sum{", "_count{"] {
            assert!(!target.expr.contains(classic), "{what}");
        }
        assert!(
            target
                .expr
                .contains(r#"{job=~"$job", instance=~"$instance"}"#),
            "{what}"
        );
        assert_eq!(
            target.datasource.as_ref().map(|d| d.uid.as_str()),
            Some(DATASOURCE_VARIABLE),
            "{what}"
        );
    }
    for panel in &dashboard.panels {
        assert!(
            panel.field_config.defaults.unit.is_some(),
            "{}",
            panel.title
        );
        assert!(panel.description.is_some(), "{}", panel.title);
    }
}

#[tokio::test]
async fn every_panel_of_the_native_dashboard_answers() {
    let server = start_server();
    let Some(native) = started(native_prometheus(&server)).await else {
        return;
    };
    let traffic = Traffic::start(server.login_url.clone(), Duration::from_millis(20));
    let dashboard = native_dashboard();
    let range = dashboard.time.length().unwrap();
    let context = QueryContext::for_panel(range, 1000, TEST_INTERVAL);
    let variables = Variables::resolve_within(&dashboard, DATASOURCE_UID, native.api(), WAIT)
        .await
        .unwrap();
    for (panel, target) in dashboard.queries() {
        let promql = context.expand(&variables.expand(&target.expr));
        let result = native
            .wait_for_nonzero(&promql, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{:?} {}: {e:#}", panel.title, target.ref_id));
        eprintln!(
            "{} {}: {:?}",
            panel.title,
            target.ref_id,
            defined_numbers(&result)
        );
    }
    assert!(!traffic.failed());
    traffic.stop().await.unwrap();
}

/// Remote write of a native histogram into the long-term store of Step 9, with
/// `send_native_histograms` and `send_exemplars` on: the counter arrives exactly,
/// and VictoriaMetrics keeps no native histogram. Version 1.79, the one this
/// repository runs, keeps nothing of it at all; newer releases convert it into
/// `_count`, `_sum` and `vmrange` buckets on ingestion, whose count must then be
/// exact too. The run prints which it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_keeps_the_counter_and_no_native_histogram() {
    let server = start_server();
    let Some(placement) = Prometheus::placement().await.unwrap() else {
        return;
    };
    let Some(victoria) = VictoriaMetrics::start(victoria_metrics::Options {
        reachable_from_containers: placement.backend()
            == login_metrics_testkit::harness::prometheus::Backend::Container,
        ..victoria_metrics::Options::default()
    })
    .await
    .unwrap() else {
        return;
    };
    let builder = native_prometheus(&server)
        .remote_write(victoria.remote_write_url(placement.backend()))
        .edit_config(|root, _| send_everything(root));
    let Some(native) = started(builder).await else {
        return;
    };
    send_and_count(&server, &native).await;
    victoria
        .api()
        .wait_for_value("sum(login_requests_total)", sent_total(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Prometheus sent native histogram samples and exemplars, and VictoriaMetrics
    // accepted them (none failed).
    let sent = poll(
        "remote write to send native histograms",
        WAIT,
        Duration::from_millis(500),
        || async {
            let page = native.own_metrics().await.unwrap();
            let histograms = sum(&page, "prometheus_remote_storage_histograms_total");
            if histograms.is_some_and(|n| n > 0.0) {
                Check::Met(page)
            } else {
                Check::NotYet(format!("histograms sent: {histograms:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    let count = |name: &str| sum(&sent, name).unwrap_or(0.0);
    let mut printed = format!(
        "remote write: {} histogram samples ({} failed), {} exemplars ({} failed), {} float samples",
        count("prometheus_remote_storage_histograms_total"),
        count("prometheus_remote_storage_histograms_failed_total"),
        count("prometheus_remote_storage_exemplars_total"),
        count("prometheus_remote_storage_exemplars_failed_total"),
        count("prometheus_remote_storage_samples_total"),
    );
    eprintln!("{printed}");
    let failed = count("prometheus_remote_storage_histograms_failed_total");
    assert!(failed == 0.0, "{failed} histogram samples failed");
    let stored = victoria
        .query(r#"count by (__name__) ({__name__=~"login_request_latency_seconds.*"})"#)
        .await
        .unwrap();
    eprintln!("VictoriaMetrics' series of the histogram: {stored}");
    printed.push_str("\nVictoriaMetrics' series of the histogram: ");
    printed.push_str(&stored.to_string());
    // The chapter shows one run; how many samples were sent depends on the timing.
    check_output(
        "native/remote-write",
        &printed,
        &Masks::none()
            .mask("[N]", r"(?<redacted>\d+) histogram samples")
            .mask("[N]", r"(?<redacted>\d+) exemplars")
            .mask("[N]", r"(?<redacted>\d+) float samples"),
    );
    let names: BTreeSet<&str> = stored
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|series| series["metric"]["__name__"].as_str())
        .collect();
    assert!(
        !names.contains("login_request_latency_seconds"),
        "a native histogram stored as such: {stored}"
    );
    if names.is_empty() {
        eprintln!("VictoriaMetrics kept nothing of the native histogram");
    } else {
        // A conversion: its count is the requests sent, its buckets are vmrange.
        let count = victoria
            .query("sum(login_request_latency_seconds_count)")
            .await
            .unwrap();
        assert_eq!(single_value(&count), Some(sent_total()), "{count}");
        let buckets = victoria
            .query(r#"count(login_request_latency_seconds_bucket{vmrange!=""})"#)
            .await
            .unwrap();
        assert!(single_value(&buckets).is_some_and(|n| n > 0.0), "{buckets}");
        eprintln!("VictoriaMetrics converted the native histogram: {names:?}");
    }
}

/// `send_native_histograms` and `send_exemplars` on every remote write entry.
fn send_everything(root: &mut Mapping) -> anyhow::Result<()> {
    for entry in root
        .get_mut("remote_write")
        .and_then(serde_yaml_ng::Value::as_sequence_mut)
        .into_iter()
        .flatten()
    {
        let entry = entry
            .as_mapping_mut()
            .ok_or_else(|| anyhow::anyhow!("a remote_write entry is not a mapping"))?;
        entry.insert("send_native_histograms".into(), true.into());
        entry.insert("send_exemplars".into(), true.into());
    }
    Ok(())
}
