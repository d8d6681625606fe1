//! Clients that go for the metrics listener: the attack that turns the
//! dashboard off is the one the dashboard most needs to show.

use std::sync::Arc;
use std::time::Duration;

use login_metrics::limits::{Limits, METRICS_CONNECTIONS};
use login_metrics::metrics::Refused;
use login_metrics::metrics_listener::MetricsListener;
use login_metrics::throttle::Throttle;
use login_metrics_testkit::clients::{connect_from, until_closed};
use login_metrics_testkit::exposition::ScrapeMetrics as _;
use login_metrics_testkit::logs::Captured;
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::wait::eventually;

use super::{scrape, server_with, short_limits};

#[tokio::test]
async fn the_metrics_listener_answers_scrapes_while_one_address_holds_more_connections_than_its_budget()
 {
    let scrapers = MetricsListener::default();
    let share = scrapers.max_connections_per_client;
    let server = server_with(short_limits(), scrapers, Throttle::off()).await;
    let metrics = Arc::clone(&server.state.metrics);
    // One address opens more idle connections than the whole budget.
    let held = METRICS_CONNECTIONS + 8;
    let mut idle = Vec::new();
    for _ in 0..held {
        idle.push(
            connect_from([127, 0, 0, 130], server.metrics_addr)
                .await
                .unwrap(),
        );
    }
    let over = u64::try_from(held - share).unwrap();
    eventually(
        "the connections over the address's share are refused",
        || {
            metrics
                .scrape()
                .metrics_connections_refused(Refused::ClientOverBudget)
                == over
        },
    )
    .await;
    // Prometheus, from another address, is answered.
    let text = scrape(server.metrics_addr).await;
    assert!(
        text.contains(&format!(
            "login_metrics_connections_refused_total{{reason=\"client_over_budget\"}} {over}"
        )),
        "{text}"
    );
    assert_eq!(
        metrics
            .scrape()
            .metrics_connections_refused(Refused::OverBudget),
        0
    );
    drop(idle);
}

#[tokio::test]
async fn the_metrics_allow_list_closes_other_addresses_at_once_and_counts_them() {
    let server = server_allowing_only_localhost().await;
    refused_strangers(&server, [127, 0, 0, 131], 3).await;
    // 127.0.0.1 is on the list.
    scrape(server.metrics_addr).await;
}

/// A server whose metrics listener admits 127.0.0.1 alone.
async fn server_allowing_only_localhost() -> TestServer {
    let only_localhost = MetricsListener {
        allow: vec!["127.0.0.1/32".parse().unwrap()],
        ..MetricsListener::default()
    };
    server_with(short_limits(), only_localhost, Throttle::off()).await
}

/// Connects `times` times from `from`: each connection is closed without an
/// answer, and the server counts every one as `not_allowed`.
async fn refused_strangers(server: &TestServer, from: [u8; 4], times: u64) {
    for _ in 0..times {
        let mut stranger = connect_from(from, server.metrics_addr).await.unwrap();
        let answer = until_closed(&mut stranger).await;
        assert_eq!(answer, "", "a refused connection gets no answer");
    }
    let metrics = Arc::clone(&server.state.metrics);
    eventually(&format!("the {times} refusals to be counted"), || {
        metrics
            .scrape()
            .metrics_connections_refused(Refused::NotAllowed)
            == times
    })
    .await;
}

#[tokio::test]
async fn an_idle_connection_to_the_metrics_listener_is_closed_after_its_idle_timeout() {
    // The login listener's header timeout is long: the metrics listener's own
    // idle timeout is what closes the connection.
    let server = server_with(
        Limits {
            header_timeout: Duration::from_secs(60),
            ..short_limits()
        },
        MetricsListener {
            idle_timeout: Duration::from_millis(300),
            ..MetricsListener::default()
        },
        Throttle::off(),
    )
    .await;
    let mut idle = connect_from([127, 0, 0, 132], server.metrics_addr)
        .await
        .unwrap();
    let answer = until_closed(&mut idle).await;
    assert_eq!(answer, "");
}

#[tokio::test]
async fn refusals_on_the_metrics_listener_are_logged_at_warn_once_per_interval() {
    let log = Captured::start();
    let server = server_allowing_only_localhost().await;
    refused_strangers(&server, [127, 0, 0, 133], 20).await;
    let warned: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|line| line.contains("metrics listener refused"))
        .collect();
    assert_eq!(warned.len(), 1, "one line for twenty refusals: {warned:#?}");
    assert!(
        warned[0].contains(" WARN ")
            && warned[0].contains("peer=127.0.0.133")
            && warned[0].contains("reason=not_allowed"),
        "{warned:#?}"
    );
}
