//! Outputs made by code that no command of the book runs: the answers no `curl`
//! can provoke (a body that times out, a throttled or shed login, a panic), the
//! queries Grafana sends after expanding its variables, and the line the Grafana
//! test prints where no Grafana image exists. Each is computed by the code that
//! produces it when the server, Grafana's rules or the test runs.

use axum::response::IntoResponse as _;
use login_metrics::error::ApiError;
use login_metrics::limits::Limits;
use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::book::promql_blocks;
use login_metrics_testkit::dashboard::QueryContext;
use std::time::Duration;

async fn body(error: ApiError) -> String {
    let bytes = axum::body::to_bytes(error.into_response().into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_answers_no_curl_provokes_are_the_ones_the_book_shows() {
    let body_timeout = body(ApiError::body_timeout(Limits::default().body_timeout)).await;
    check_output("counting/answer-408", &body_timeout, &Masks::none());
    check_output("troubleshooting/answer-408", &body_timeout, &Masks::none());
    let wait = Duration::from_secs(1);
    check_output(
        "counting/answer-429",
        &body(ApiError::too_many_attempts(wait)).await,
        &Masks::none(),
    );
    check_output(
        "counting/answer-503",
        &body(ApiError::busy(wait)).await,
        &Masks::none(),
    );
    check_output(
        "counting/answer-500",
        &body(ApiError::internal()).await,
        &Masks::none(),
    );
}

#[test]
fn grafana_sends_the_200_panels_query_with_the_windows_step_5_shows() {
    let query = r#"sum(rate(login_requests_total{status_code="200"}[$__rate_interval]))"#;
    assert!(
        promql_blocks()
            .unwrap()
            .iter()
            .any(|block| block.query == query),
        "Step 5 shows the panel's query as a promql block"
    );
    // The dashboard's default range on a panel about 1,000 points wide, scraped
    // every 15 s (the guide) and every second (the tests).
    let fifteen_minutes = Duration::from_secs(15 * 60);
    for (scrape, name) in [
        (Duration::from_secs(15), "step-5/rate-interval-15s"),
        (Duration::from_secs(1), "step-5/rate-interval-1s"),
    ] {
        let context = QueryContext::for_panel(fifteen_minutes, 1_000, scrape);
        check_output(name, &context.expand(query), &Masks::none());
    }
}

/// Set in the child this binary runs of itself, which asks the harness for Grafana.
const PROBE: &str = "LOGIN_METRICS_BOOK_GRAFANA_PROBE";

#[test]
fn grafana_skip_probe() {
    if std::env::var_os(PROBE).is_none() {
        return; // only in the child below
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _ = runtime.block_on(login_metrics_testkit::harness::grafana::Grafana::available());
}

#[test]
fn without_a_grafana_image_the_grafana_test_skips_with_the_line_the_book_shows() {
    let docker = std::process::Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !docker || std::env::var_os("GRAFANA_IMAGE").is_some() {
        login_metrics_testkit::env::report(&format!(
            "skipped: {}: the line is the one of a machine with Docker, no registry and no \
             GRAFANA_IMAGE",
            login_metrics_testkit::env::current_test()
        ));
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "derived::grafana_skip_probe", "--nocapture"])
        .env(PROBE, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    let line = stderr
        .lines()
        .find(|line| line.starts_with("skipped:"))
        .unwrap_or_else(|| panic!("no skipped: line:\n{stderr}"));
    if !line.contains("no registry answers") {
        login_metrics_testkit::env::report(&format!(
            "skipped: {}: a registry answers here, so Grafana's skip differs: {line}",
            login_metrics_testkit::env::current_test()
        ));
        return;
    }
    check_output(
        "contributing/grafana-skip",
        line,
        &Masks::none().mask("[TEST]", r"^skipped: (?<redacted>[\w:]+):"),
    );
}
