//! The minimal server of Step 1 written with the two other metrics crates
//! (`crates-compared/examples/`), run as a reader runs them:
//! `cargo run -p crates-compared --example NAME`. Each must meet the same claims as
//! `examples/minimal.rs` (the `prometheus` crate), checked by the same code
//! (`minimal_claims/`): every answer counted exactly by status code, every series
//! there at 0 from the start, the original tutorial's three queries and the
//! dashboard's first row answered by a real Prometheus with `prometheus.yml`
//! unchanged. Then what each crate does differently, as "Choosing a metrics
//! crate" shows it, and the dependency lines that chapter shows, built on their own.

mod minimal_claims;

use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::example::{ExampleServer, check_standalone, example_of};
use reqwest::header::{ACCEPT, CONTENT_TYPE};

/// The package that holds the variants.
const PACKAGE: &str = "crates-compared";
/// The minimal server with `prometheus-client`.
const PROMETHEUS_CLIENT: &str = "with_prometheus_client";
/// The minimal server with `metrics` and `metrics-exporter-prometheus`.
const METRICS: &str = "with_metrics";

/// The variant `name`, its metrics listener on `metrics_ip`.
fn start(name: &str, metrics_ip: &str) -> ExampleServer {
    ExampleServer::start(example_of(PACKAGE, name), metrics_ip)
}

#[tokio::test]
async fn with_prometheus_client_every_answer_is_counted_by_status_code() {
    minimal_claims::counts_every_answer_by_status_code(&start(PROMETHEUS_CLIENT, "127.0.0.1"))
        .await;
}

#[tokio::test]
async fn with_metrics_every_answer_is_counted_by_status_code() {
    minimal_claims::counts_every_answer_by_status_code(&start(METRICS, "127.0.0.1")).await;
}

#[tokio::test]
async fn with_prometheus_client_every_status_exists_at_zero_from_start() {
    minimal_claims::every_status_exists_at_zero_from_start(&start(PROMETHEUS_CLIENT, "127.0.0.1"))
        .await;
}

#[tokio::test]
async fn with_metrics_every_status_exists_at_zero_from_start() {
    minimal_claims::every_status_exists_at_zero_from_start(&start(METRICS, "127.0.0.1")).await;
}

#[tokio::test]
async fn with_prometheus_client_the_tutorials_queries_and_the_first_row_answer() {
    minimal_claims::the_tutorials_queries_and_the_first_row_answer(&start(
        PROMETHEUS_CLIENT,
        "0.0.0.0",
    ))
    .await;
}

#[tokio::test]
async fn with_metrics_the_tutorials_queries_and_the_first_row_answer() {
    minimal_claims::the_tutorials_queries_and_the_first_row_answer(&start(METRICS, "0.0.0.0"))
        .await;
}

/// `prometheus-client` names the counter family `login_requests` and its samples
/// `login_requests_total`, in OpenMetrics text, which ends with `# EOF`; the
/// samples, and so every query, keep the tutorial's name.
#[tokio::test]
async fn prometheus_client_serves_openmetrics_and_adds_total_to_the_counter() {
    let server = start(PROMETHEUS_CLIENT, "127.0.0.1");
    let response = reqwest::get(&server.metrics_url).await.unwrap();
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("# TYPE login_requests counter\n"), "{page}");
    assert!(
        page.contains("\nlogin_requests_total{status_code=\"200\"} 0\n"),
        "{page}"
    );
    assert!(page.ends_with("# EOF\n"), "{page}");
}

/// A scraper that asks for protobuf (Prometheus with native histograms on) gets it.
#[tokio::test]
async fn prometheus_client_serves_protobuf_to_a_scraper_that_asks_for_it() {
    let server = start(PROMETHEUS_CLIENT, "127.0.0.1");
    let response = reqwest::Client::new()
        .get(&server.metrics_url)
        .header(
            ACCEPT,
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
             encoding=delimited;q=0.5,text/plain;version=0.0.4;q=0.3",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
         encoding=delimited"
    );
    let body = response.bytes().await.unwrap();
    // Length-delimited MetricFamily messages, whose names are plain strings inside.
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("login_requests_total"), "{text:?}");
    assert!(text.contains("login_request_latency_seconds"), "{text:?}");
}

/// `metrics-exporter-prometheus` serves the classic text format, with the counter's
/// name as registered and integer bucket bounds as integers (`le="1"`), as the
/// `prometheus` crate does.
#[tokio::test]
async fn metrics_serves_the_classic_text_format_with_the_names_as_registered() {
    let server = start(METRICS, "127.0.0.1");
    let page = server.scrape().await;
    assert!(
        page.contains("# TYPE login_requests_total counter\n"),
        "{page}"
    );
    assert!(
        page.contains("\nlogin_request_latency_seconds_bucket{le=\"1\"} 0\n"),
        "{page}"
    );
    assert!(!page.contains("# EOF"), "{page}");
}

#[test]
fn the_dependency_lines_shown_for_prometheus_client_build_its_variant_on_their_own() {
    check_standalone(
        "prometheus-client-standalone",
        "crates-compared/examples/with_prometheus_client-Cargo.toml",
        "crates-compared/examples/with_prometheus_client.rs",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn the_dependency_lines_shown_for_metrics_build_its_variant_on_their_own() {
    check_standalone(
        "metrics-standalone",
        "crates-compared/examples/with_metrics-Cargo.toml",
        "crates-compared/examples/with_metrics.rs",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The page of `server` after one good login and one wrong password, the samples of
/// the request counter sorted by status code (both crates write them in hash-map
/// order, which changes from run to run; the chapter says it sorted them).
async fn page_after_two_logins(server: &ExampleServer) -> String {
    let client = reqwest::Client::new();
    for (password, status) in [("pass", 200), ("wrong", 401)] {
        let response = client
            .post(&server.login_url)
            .json(&serde_json::json!({"username": "user", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
    }
    let page = server.scrape().await;
    let mut lines: Vec<&str> = page.lines().collect();
    let counter: Vec<usize> = (0..lines.len())
        .filter(|&n| lines[n].starts_with("login_requests_total{"))
        .collect();
    let mut sorted: Vec<&str> = counter.iter().map(|&n| lines[n]).collect();
    sorted.sort_unstable();
    for (n, line) in counter.into_iter().zip(sorted) {
        lines[n] = line;
    }
    lines.join("\n")
}

/// What differs between two runs of the same two logins: the request ids, the time
/// summed, and (on a busy machine) which bucket a login's time falls in.
fn page_masks() -> Masks {
    Masks::none()
        .mask("[TRACE_ID]", r#"trace_id="(?<redacted>[0-9a-f]{32})""#)
        .mask("[SUM]", r"_sum (?<redacted>[0-9.e-]+)")
        .mask("[COUNT]", r#"_bucket\{le="[^"]+"\} (?<redacted>\d+)"#)
}

#[tokio::test]
async fn the_pages_choosing_a_crate_shows_are_what_each_variant_serves_after_two_logins() {
    for (variant, block) in [
        (PROMETHEUS_CLIENT, "crates/prometheus-client-page"),
        (METRICS, "crates/metrics-page"),
    ] {
        let server = start(variant, "127.0.0.1");
        check_output(block, &page_after_two_logins(&server).await, &page_masks());
    }
}
