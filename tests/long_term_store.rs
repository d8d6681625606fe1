//! Step 9, part two: a highly available pair of Prometheus writes one gap-free copy of
//! the replicas' metrics into a long-term store, VictoriaMetrics, which then answers
//! the book's queries the way Prometheus does.
//!
//! One test, one timeline (about 90 seconds):
//!
//! 1. Three login servers, listed in a `file_sd` targets directory; VictoriaMetrics with
//!    `-dedup.minScrapeInterval` equal to the scrape interval and the repository's
//!    relabeling (it drops the `replica` label); Prometheus `a` and `b` running
//!    `deploy/scale/prometheus-a.yml` and `-b.yml`, both scraping the three and
//!    remote-writing to VictoriaMetrics.
//! 2. Steady mixed traffic (200, 401, 400) to every replica. After [`BOTH_RUN`],
//!    Prometheus `b` is stopped; traffic goes on for [`ONE_RUNS`], then stops.
//! 3. The checks, each named after its claim below.
//!
//! Rates are compared within [`RATE_TOLERANCE`]: Prometheus extrapolates a rate to the
//! edges of its window, VictoriaMetrics (`MetricsQL`) does not and starts from the last
//! sample before the window instead, and after deduplication its samples of the first
//! half come from either replica, taken up to one scrape apart. Counters and gauges are
//! compared exactly.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use login_metrics_testkit::book::TUTORIAL_QUERIES;
use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, Expect, LONG_TERM_STORE_UID, QueryContext, Variables, dashboard_file,
    expect_under_ordinary_traffic, load_dashboard,
};
use login_metrics_testkit::harness::prometheus::{
    Backend, Prometheus, RemoteWriteStats, TEST_INTERVAL, TargetGroup, TargetsDir,
};
use login_metrics_testkit::harness::victoria_metrics::{self, VictoriaMetrics};
use login_metrics_testkit::promql::{QueryApi, single_value};
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::traffic::{self, Traffic};
use serde_json::Value;

const REPLICAS: usize = 3;
const TARGETS_FILE: &str = "login_server.yml";
const WAIT: Duration = Duration::from_secs(45);
/// Traffic with both Prometheus writing.
const BOTH_RUN: Duration = Duration::from_secs(20);
/// Traffic after one Prometheus stopped: longer than the dashboard's rate window
/// below, so that window sees only samples written after the stop; and long enough
/// that the original tutorial's one-minute windows at the end lie wholly after the series began.
const ONE_RUNS: Duration = Duration::from_secs(45);
/// Pause between rounds of (200, 401, 400) logins, per replica.
const TRAFFIC_PAUSE: Duration = Duration::from_millis(100);
/// The largest relative difference accepted between a rate (or a ratio, an average, a
/// quantile) from VictoriaMetrics and the same from Prometheus, over windows in which
/// every series existed throughout. (A window holding a series' first sample differs
/// more: Prometheus extrapolates the increase to the whole window, VictoriaMetrics
/// divides the exact increase by the time the series existed; 8 % apart in one run.)
const RATE_TOLERANCE: f64 = 0.05;
/// The same for `histogram_quantile`, which amplifies small differences: inside a
/// sparsely filled bucket a shift of 1 % of the requests moves the estimate across
/// a large part of the bucket's width.
const QUANTILE_TOLERANCE: f64 = 0.20;
/// How far behind remote write may be: `batch_send_deadline` (5 s) plus a margin.
const REMOTE_WRITE_LAG_LIMIT: f64 = 10.0;
/// `queue_config.capacity` of Prometheus 2.42, as its `/api/v1/status/config` shows:
/// the samples one shard buffers (later releases raised the default, so this bound is
/// the stricter one). More pending than that means the queue fills faster than it
/// sends.
const QUEUE_CAPACITY: f64 = 2500.0;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An instant vector as `labels (without __name__) → value`.
fn by_labels(result: &Value) -> BTreeMap<String, f64> {
    result
        .as_array()
        .into_iter()
        .flatten()
        .map(|series| {
            let mut metric = series["metric"].clone();
            if let Some(labels) = metric.as_object_mut() {
                labels.remove("__name__");
            }
            let value = series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            (metric.to_string(), value)
        })
        .collect()
}

/// `promql` at `time` in both engines: the same series, values within `tolerance`
/// (relative; 0 means exactly). Returns the largest relative difference seen.
/// Prometheus must have an answer unless `may_be_empty` (a panel such as "Firing
/// alerts", empty while nothing fires); either way both must list the same series.
#[allow(clippy::too_many_arguments)]
async fn same_answer(
    prometheus: &QueryApi,
    victoria: &QueryApi,
    promql_prometheus: &str,
    promql_victoria: &str,
    time: f64,
    tolerance: f64,
    may_be_empty: bool,
) -> f64 {
    let expected = by_labels(&prometheus.query_at(promql_prometheus, time).await.unwrap());
    let got = by_labels(&victoria.query_at(promql_victoria, time).await.unwrap());
    assert!(
        may_be_empty || !expected.is_empty(),
        "Prometheus has no answer to `{promql_prometheus}` at {time}"
    );
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "the same series from both for `{promql_victoria}` at {time}"
    );
    let mut largest = 0.0_f64;
    for (labels, want) in &expected {
        let have = got[labels];
        if want.is_nan() || have.is_nan() {
            assert!(
                want.is_nan() && have.is_nan(),
                "`{promql_victoria}` {labels}: Prometheus {want}, VictoriaMetrics {have}"
            );
            continue;
        }
        let scale = want.abs().max(have.abs());
        let relative = if scale == 0.0 {
            0.0
        } else {
            (want - have).abs() / scale
        };
        largest = largest.max(relative);
        assert!(
            relative <= tolerance,
            "`{promql_victoria}` {labels} at {time}: Prometheus {want}, VictoriaMetrics {have} \
             ({:.1} % apart, tolerance {:.1} %)",
            relative * 100.0,
            tolerance * 100.0
        );
    }
    largest
}

/// The timestamps of the raw samples of the single series `selector` in the `window`
/// seconds before `time`.
async fn sample_times(api: &QueryApi, selector: &str, window: u64, time: f64) -> Vec<f64> {
    let result = api
        .query_at(&format!("{selector}[{window}s]"), time)
        .await
        .unwrap();
    let series = result.as_array().unwrap();
    assert_eq!(series.len(), 1, "one series for {selector}: {result}");
    series[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|sample| sample[0].as_f64())
        .collect()
}

/// The longest time between two consecutive samples.
fn largest_gap(times: &[f64]) -> f64 {
    times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f64::max)
}

async fn remote_write(prometheus: &Prometheus) -> RemoteWriteStats {
    RemoteWriteStats::parse(&prometheus.own_metrics().await.unwrap()).unwrap()
}

/// What the timeline leaves for the checks.
struct Run {
    victoria: VictoriaMetrics,
    /// The Prometheus that kept running.
    a: Prometheus,
    host: String,
    servers: Vec<TestServer>,
    /// Kept for as long as the checks run: without it, discovery loses the targets.
    _targets: TargetsDir,
    sent: Vec<traffic::Counts>,
    started: f64,
    b_stopped: f64,
    traffic_end: f64,
    /// Remote write of a and b just before b stopped.
    before_stop: [RemoteWriteStats; 2],
}

/// Steps 1 and 2 of the timeline; `None` when an engine cannot run here (said so).
async fn run_the_timeline() -> Option<Run> {
    let placement = Prometheus::placement().await.unwrap()?;
    let victoria = VictoriaMetrics::start(victoria_metrics::Options {
        dedup_interval: TEST_INTERVAL,
        reachable_from_containers: placement.backend() == Backend::Container,
        ..victoria_metrics::Options::default()
    })
    .await
    .unwrap()?;
    let host = placement.host_seen_from_engine().to_owned();
    let mut servers = Vec::new();
    for _ in 0..REPLICAS {
        servers.push(
            TestServer::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
                .await
                .unwrap(),
        );
    }
    let ports: Vec<u16> = servers.iter().map(|s| s.metrics_addr.port()).collect();
    let targets = TargetsDir::new().unwrap();
    targets
        .write(TARGETS_FILE, &[TargetGroup::ports(&host, &ports)])
        .unwrap();
    let write_url = victoria.remote_write_url(placement.backend());
    let mut pair = Vec::new();
    // ANCHOR: pair
    for replica in ["a", "b"] {
        let prometheus = Prometheus::builder()
            .config(format!("deploy/scale/prometheus-{replica}.yml"))
            .file_sd(&targets)
            .remote_write(&write_url)
            .start()
            .await
            .unwrap()
            .expect("Prometheus runs here: its placement was found above");
        pair.push(prometheus);
    }
    // ANCHOR_END: pair
    let (a, b) = (pair.remove(0), pair.remove(0));
    for prometheus in [&a, &b] {
        prometheus
            .wait_for_targets_up(REPLICAS, REPLICAS, WAIT)
            .await
            .unwrap();
    }
    eprintln!(
        "Prometheus a and b ({}) write to VictoriaMetrics ({}) at {write_url}",
        a.backend(),
        victoria.backend_of()
    );

    let started = unix_now();
    let traffic: Vec<Traffic> = servers
        .iter()
        .map(|s| Traffic::start(s.login_url(), TRAFFIC_PAUSE))
        .collect();
    tokio::time::sleep(BOTH_RUN).await;
    let before_stop = [remote_write(&a).await, remote_write(&b).await];
    let b_stopped = unix_now();
    b.stop().await.unwrap();
    tokio::time::sleep(ONE_RUNS).await;
    let mut sent = Vec::new();
    for t in traffic {
        assert!(!t.failed(), "a traffic generator stopped early");
        sent.push(t.stop().await.unwrap());
    }
    let traffic_end = unix_now();
    eprintln!(
        "traffic from {started:.0} to {traffic_end:.0}; Prometheus b stopped at {b_stopped:.0}"
    );
    Some(Run {
        victoria,
        a,
        host,
        servers,
        _targets: targets,
        sent,
        started,
        b_stopped,
        traffic_end,
        before_stop,
    })
}

impl Run {
    fn instances(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("{}:{}", self.host, s.metrics_addr.port()))
            .collect()
    }

    /// Both Prometheus were writing before b stopped; at the end a keeps up (its
    /// slowest queue is at most one send deadline behind, fewer samples wait than one
    /// queue holds); nothing failed.
    async fn check_remote_write(&self) {
        let [a_before, b_before] = self.before_stop;
        eprintln!("remote write before b stopped: a {a_before:?}, b {b_before:?}");
        for (name, stats) in [("a", a_before), ("b", b_before)] {
            assert!(
                stats.sent > 0.0,
                "Prometheus {name} sent nothing: {stats:?}"
            );
            assert!(
                stats.failed.abs() < f64::EPSILON,
                "Prometheus {name}: {stats:?}"
            );
        }
        let a_after = remote_write(&self.a).await;
        eprintln!("remote write of a at the end: {a_after:?}");
        // ANCHOR: keeps_up
        // Prometheus sends a batch when it is full or after `batch_send_deadline`
        // (5 s by default): a queue that keeps up is never much more behind.
        let lag = a_after.lag_seconds.expect("a sent samples");
        assert!(
            lag <= REMOTE_WRITE_LAG_LIMIT,
            "remote write is {lag} s behind: {a_after:?}"
        );
        assert!(a_after.pending < QUEUE_CAPACITY, "{a_after:?}");
        // ANCHOR_END: keeps_up
        assert!(a_after.failed.abs() < f64::EPSILON, "{a_after:?}");
        assert!(a_after.retried.abs() < f64::EPSILON, "{a_after:?}");
        assert!(
            a_after.sent > a_before.sent,
            "{a_before:?} then {a_after:?}"
        );
    }

    /// Per replica and code: Prometheus a, VictoriaMetrics and the requests sent agree.
    async fn check_counters(&self) {
        let (prometheus, victoria) = (self.a.api(), self.victoria.api());
        for (instance, counts) in self.instances().iter().zip(&self.sent) {
            for (code, n) in [
                ("200", counts.ok),
                ("401", counts.unauthorized),
                ("400", counts.bad_request),
            ] {
                #[allow(clippy::cast_precision_loss)] // a few thousand requests
                let n = n as f64;
                let promql = format!(
                    r#"login_requests_total{{instance="{instance}", status_code="{code}"}}"#
                );
                prometheus.wait_for_value(&promql, n, WAIT).await.unwrap();
                victoria.wait_for_value(&promql, n, WAIT).await.unwrap();
            }
        }
        // Now as one query over every series: exactly equal.
        let settled = unix_now().floor() - 1.0;
        let promql = "sum by (instance, status_code) (login_requests_total)";
        same_answer(prometheus, victoria, promql, promql, settled, 0.0, false).await;
    }

    /// One series per target (no replica label), and while both wrote about one
    /// sample per scrape interval, not two.
    async fn check_one_copy(&self) {
        let (prometheus, victoria) = (self.a.api(), self.victoria.api());
        let at = self.traffic_end;
        let up_series = single_value(&victoria.query_at("count(up)", at).await.unwrap());
        assert_eq!(up_series, Some(3.0), "one up series per replica");
        assert!(
            victoria
                .query_at(r#"login_requests_total{replica=~".+"}"#, at)
                .await
                .unwrap()
                .as_array()
                .is_some_and(Vec::is_empty),
            "no series keeps the replica label"
        );
        // ANCHOR: one_copy
        let both_window = BOTH_RUN.as_secs() - 2;
        let selector = format!(r#"up{{instance="{}"}}"#, self.instances()[0]);
        let in_prometheus = sample_times(prometheus, &selector, both_window, self.b_stopped).await;
        let in_victoria = sample_times(victoria, &selector, both_window, self.b_stopped).await;
        // ANCHOR_END: one_copy
        eprintln!(
            "samples of {selector} in the {both_window} s before b stopped: {} in Prometheus a, \
             {} in VictoriaMetrics",
            in_prometheus.len(),
            in_victoria.len()
        );
        assert!(
            in_victoria.len() <= in_prometheus.len() + 2,
            "deduplication keeps one sample per interval: {} vs {}",
            in_victoria.len(),
            in_prometheus.len()
        );
    }

    /// From the start of the traffic to its end, across the moment b stopped,
    /// VictoriaMetrics has a sample of every replica's series at least every 2.5 s.
    async fn check_no_gap(&self) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // about a minute
        let whole = (self.traffic_end - self.started).floor() as u64;
        for instance in self.instances() {
            let selector = format!(r#"up{{instance="{instance}"}}"#);
            let times = sample_times(self.victoria.api(), &selector, whole, self.traffic_end).await;
            let gap = largest_gap(&times);
            eprintln!(
                "{selector}: {} samples in VictoriaMetrics over {whole} s, largest gap {gap:.3} s",
                times.len()
            );
            assert!(
                times.first().is_some_and(|t| *t < self.b_stopped - 5.0)
                    && times.last().is_some_and(|t| *t > self.b_stopped + 5.0),
                "samples before and after the stop: {times:?}"
            );
            assert!(
                gap <= 2.0 * TEST_INTERVAL.as_secs_f64() + 0.5,
                "{selector}: a gap of {gap} s in {times:?}"
            );
        }
    }

    /// The original tutorial's queries, and every panel query of the dashboard with each engine's
    /// variables, at the end of the traffic. Returns the largest difference.
    async fn check_same_answers(&self) -> f64 {
        let (prometheus, victoria) = (self.a.api(), self.victoria.api());
        let mut largest = 0.0_f64;
        let end = self.traffic_end.floor() - 1.0;
        for promql in TUTORIAL_QUERIES {
            let difference = same_answer(
                prometheus,
                victoria,
                promql,
                promql,
                end,
                RATE_TOLERANCE,
                false,
            )
            .await;
            eprintln!("{promql}: {:.2} % apart", difference * 100.0);
            largest = largest.max(difference);
        }
        // A 12 hour panel: $__rate_interval = 31 s, a window after b stopped.
        let dashboard = load_dashboard(&dashboard_file()).unwrap();
        let ctx = QueryContext::for_panel(Duration::from_secs(12 * 3600), 1000, TEST_INTERVAL);
        assert!(ctx.rate_interval() < ONE_RUNS, "{ctx:?}");
        let in_prometheus = Variables::resolve(&dashboard, DATASOURCE_UID, prometheus)
            .await
            .unwrap();
        let in_victoria = Variables::resolve(&dashboard, LONG_TERM_STORE_UID, victoria)
            .await
            .unwrap();
        assert_eq!(in_prometheus.get("job"), in_victoria.get("job"));
        // ANCHOR: same_answers
        for (panel, target) in dashboard.queries() {
            let tolerance = if target.expr.contains("histogram_quantile") {
                QUANTILE_TOLERANCE
            } else {
                RATE_TOLERANCE
            };
            let difference = same_answer(
                prometheus,
                victoria,
                &ctx.expand(&in_prometheus.expand(&target.expr)),
                &ctx.expand(&in_victoria.expand(&target.expr)),
                end,
                tolerance,
                expect_under_ordinary_traffic(&panel.title, &target.ref_id) == Some(Expect::Answer),
            )
            .await;
            // ANCHOR_END: same_answers
            eprintln!(
                "{:?} {}: {:.2} % apart",
                panel.title,
                target.ref_id,
                difference * 100.0
            );
            largest = largest.max(difference);
        }
        largest
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_writes_one_gap_free_copy_that_answers_like_prometheus() {
    let Some(run) = run_the_timeline().await else {
        return; // the harness printed why
    };
    run.check_remote_write().await;
    run.check_counters().await;
    run.check_one_copy().await;
    run.check_no_gap().await;
    let largest = run.check_same_answers().await;
    eprintln!(
        "largest difference between VictoriaMetrics and Prometheus: {:.2} % (tolerance {:.0} %, \
         {:.0} % for quantiles)",
        largest * 100.0,
        RATE_TOLERANCE * 100.0,
        QUANTILE_TOLERANCE * 100.0
    );
}

#[test]
fn the_largest_gap_is_the_longest_time_between_two_samples() {
    assert!((largest_gap(&[1.0, 2.0, 3.0, 6.5, 7.0]) - 3.5).abs() < 1e-12);
    assert!(largest_gap(&[5.0]).abs() < f64::EPSILON);
    assert!(largest_gap(&[]).abs() < f64::EPSILON);
}
