//! The scrape path against a real Prometheus: the claims of Steps 2 and 3.
//!
//! Each test starts the login server on `0.0.0.0` (a Prometheus container
//! reaches it through the docker bridge) and a Prometheus from the harness: a
//! container when Docker answers, else the `prometheus` binary on PATH. With
//! neither, each test prints one line saying what to install and returns.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::throttle::{LoginRate, Throttle};
use login_metrics_testkit::book::{every_block_answers, promql_blocks};
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::logins::send_logins;
use login_metrics_testkit::server::TestServer;

use login_metrics_testkit::book::TUTORIAL_QUERIES;
use login_metrics_testkit::promql::single_value;
use login_metrics_testkit::traffic::Traffic;

const ANY_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const WAIT: Duration = Duration::from_secs(45);

/// A server and a Prometheus scraping it, or `None` (already explained) when
/// no Prometheus can run here.
async fn server_and_prometheus() -> Option<(TestServer, Prometheus)> {
    let server = TestServer::start(ANY_ADDRESS).await.unwrap();
    let prometheus = Prometheus::start(server.metrics_addr.port())
        .await
        .unwrap()?;
    eprintln!(
        "Prometheus ({:?}) at {} scrapes {}",
        prometheus.backend(),
        prometheus.base_url(),
        prometheus.target()
    );
    prometheus.wait_for_target_health("up", WAIT).await.unwrap();
    Some((server, prometheus))
}

/// Polls `promql` until its single value equals `expected`.
async fn wait_for_value(prometheus: &Prometheus, promql: &str, expected: f64) {
    prometheus
        .wait_for_value(promql, expected, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test]
async fn target_is_up_after_start() {
    let Some((_server, prometheus)) = server_and_prometheus().await else {
        return;
    };
    let up = format!("up{{job=\"{}\"}}", prometheus.job());
    wait_for_value(&prometheus, &up, 1.0).await;
}

#[tokio::test]
async fn the_tutorials_queries_return_data_after_traffic() {
    let Some((server, prometheus)) = server_and_prometheus().await else {
        return;
    };
    send_logins(&server.login_url(), 20, 10, 5).await.unwrap();
    // Within a minute of the traffic, each [1m] window holds some of it: zero would
    // mean the requests were never counted.
    for query in TUTORIAL_QUERIES {
        prometheus
            .wait_for_nonzero(query, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e:#}"));
    }
}

/// Every `promql` block but those fenced `promql,native`, which need a Prometheus that
/// ingests native histograms (`tests/native_histograms.rs` runs them), and those fenced
/// `promql,probe`, which need a blackbox exporter (`tests/probe.rs` runs them).
#[tokio::test]
async fn every_promql_block_in_the_book_returns_data() {
    let blocks: Vec<_> = promql_blocks()
        .unwrap()
        .into_iter()
        .filter(|block| !block.native && !block.needs_probe)
        .collect();
    assert!(
        blocks.len() >= TUTORIAL_QUERIES.len(),
        "the book shows at least the original tutorial's queries"
    );
    // The shipped throttle, with this machine as the trusted proxy the traffic
    // comes through: the blocks about the throttle see it remember clients.
    let throttle = Throttle::new(
        Some(LoginRate::default()),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST).into()],
    );
    let state = AppState::new(UserStore::with_demo_user()).with_throttle(throttle);
    let server = TestServer::start_with(ANY_ADDRESS, state).await.unwrap();
    let Some(prometheus) = Prometheus::start(server.metrics_addr.port()).await.unwrap() else {
        return;
    };
    prometheus.wait_for_target_health("up", WAIT).await.unwrap();
    // Traffic keeps flowing while the blocks run: a block over `$__rate_interval`
    // (4 s here) sees only the requests of the last few seconds.
    let traffic = Traffic::start_as_many_clients(server.login_url(), Duration::from_millis(20));
    every_block_answers(&prometheus, blocks, Some(&traffic))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    traffic.stop().await.unwrap();
}

#[tokio::test]
async fn scraped_counters_equal_the_requests_sent_exactly() {
    let Some((server, prometheus)) = server_and_prometheus().await else {
        return;
    };
    let (good, bad, malformed) = (17, 11, 7);
    send_logins(&server.login_url(), good, bad, malformed)
        .await
        .unwrap();
    for (code, sent) in [
        ("200", good),
        ("401", bad),
        ("400", malformed),
        ("415", 0),
        ("500", 0),
    ] {
        let promql = format!("login_requests_total{{status_code=\"{code}\"}}");
        wait_for_value(
            &prometheus,
            &promql,
            f64::from(u32::try_from(sent).unwrap()),
        )
        .await;
    }
    let total = f64::from(u32::try_from(good + bad + malformed).unwrap());
    wait_for_value(&prometheus, "login_request_latency_seconds_count", total).await;
}

#[tokio::test]
async fn a_server_restart_is_seen_as_down_then_up_and_rate_survives_the_reset() {
    let Some((server, prometheus)) = server_and_prometheus().await else {
        return;
    };
    let up = format!("up{{job=\"{}\"}}", prometheus.job());
    let ok = r#"login_requests_total{status_code="200"}"#;
    send_logins(&server.login_url(), 20, 0, 0).await.unwrap();
    wait_for_value(&prometheus, ok, 20.0).await;

    let ports = (server.app_addr.port(), server.metrics_addr.port());
    server.stop().await.unwrap();
    prometheus
        .wait_for_target_health("down", WAIT)
        .await
        .unwrap();
    wait_for_value(&prometheus, &up, 0.0).await;

    // Same ports, fresh process state: the counter starts again from zero.
    let state = AppState::new(UserStore::with_demo_user());
    let server = TestServer::start_at(
        SocketAddr::new(ANY_ADDRESS, ports.0),
        SocketAddr::new(ANY_ADDRESS, ports.1),
        state,
    )
    .await
    .unwrap();
    prometheus.wait_for_target_health("up", WAIT).await.unwrap();
    // Wrong passwords too, so every query of the tutorial has something to rate below.
    send_logins(&server.login_url(), 5, 3, 0).await.unwrap();
    wait_for_value(&prometheus, ok, 5.0).await;

    // One restart, one counter reset.
    wait_for_value(&prometheus, &format!("resets({ok}[5m])"), 1.0).await;
    // Without reset handling this would be 5 - 20 < 0; with it, 20 + 5 = 25, which
    // Prometheus extrapolates to the end of the window by at most one scrape interval
    // (and not at all to its start, since the series began at 0): 25 to 30.
    let result = prometheus
        .wait_for_data(&format!("increase({ok}[5m])"), WAIT)
        .await
        .unwrap();
    let increase =
        single_value(&result).unwrap_or_else(|| panic!("expected one series, got {result}"));
    assert!(
        (25.0..=30.0).contains(&increase),
        "increase() across the restart = {increase}, expected 25 to 30"
    );
    for query in TUTORIAL_QUERIES {
        prometheus
            .wait_for_nonzero(query, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e:#}"));
    }
}
