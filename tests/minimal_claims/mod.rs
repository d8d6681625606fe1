//! What every minimal login server must do, whichever metrics crate it is written
//! with: the claims of Step 1, checked against `examples/minimal.rs` (the
//! `prometheus` crate) by `tests/minimal_server.rs` and against its variants with
//! `prometheus-client` and `metrics` by `tests/crates_compared.rs`. Each takes the
//! server running as a process, as a reader runs it.

use std::time::Duration;

use login_metrics_testkit::book::TUTORIAL_QUERIES;
use login_metrics_testkit::dashboard::{dashboard_file, load_dashboard};
use login_metrics_testkit::example::ExampleServer;
use login_metrics_testkit::exposition::sample;
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::panels::{FIRST_ROW, row_answers};
use login_metrics_testkit::traffic;

/// Every status code `/login` of a minimal server answers.
pub const STATUS_CODES: [&str; 6] = ["200", "400", "401", "405", "415", "422"];

/// `login_requests_total{status_code="CODE"}` on the page, if it is there.
pub fn count(text: &str, code: &str) -> Option<f64> {
    sample(
        text,
        &format!("login_requests_total{{status_code=\"{code}\"}}"),
    )
}

/// Two good logins, then one request for each other answer, each counted exactly
/// once under its status code; a request for another path not at all.
pub async fn counts_every_answer_by_status_code(server: &ExampleServer) {
    let http = reqwest::Client::new();
    let json_post = |body: &'static str| {
        http.post(&server.login_url)
            .header("content-type", "application/json")
            .body(body)
    };
    let sent = [
        (json_post(r#"{"username":"user","password":"pass"}"#), 200),
        (json_post(r#"{"username":"user","password":"pass"}"#), 200),
        (json_post(r#"{"username":"user","password":"wrong"}"#), 401),
        (json_post(r#"{"username":"user","#), 400),
        (json_post(r#"{"username":"user"}"#), 422),
        (
            http.post(&server.login_url)
                .body(r#"{"username":"user","password":"pass"}"#),
            415,
        ),
        (http.get(&server.login_url), 405),
        (http.get(server.login_url.replace("/login", "/nope")), 404),
    ];
    for (request, expected) in sent {
        let status = request.send().await.unwrap().status();
        assert_eq!(status.as_u16(), expected);
    }

    // ANCHOR: exact_counts
    let text = server.scrape().await;
    for (code, expected) in [
        ("200", 2.0),
        ("400", 1.0),
        ("401", 1.0),
        ("405", 1.0),
        ("415", 1.0),
        ("422", 1.0),
    ] {
        assert_eq!(
            count(&text, code),
            Some(expected),
            "status {code} in\n{text}"
        );
    }
    assert_eq!(count(&text, "404"), None, "other paths are not logins");
    assert_eq!(
        sample(&text, "login_request_latency_seconds_count"),
        Some(7.0),
        "one observation per answer of /login:\n{text}"
    );
    assert_eq!(sample(&text, "login_requests_in_flight"), Some(0.0));
    // ANCHOR_END: exact_counts
}

/// Before the first request, every status code's series is there at 0, and so is
/// the histogram.
pub async fn every_status_exists_at_zero_from_start(server: &ExampleServer) {
    let text = server.scrape().await;
    for code in STATUS_CODES {
        assert_eq!(
            count(&text, code),
            Some(0.0),
            "status {code} at 0 before the first request:\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "login_request_latency_seconds_count"),
        Some(0.0),
        "{text}"
    );
}

/// A real Prometheus, running the repository's `prometheus.yml`, scrapes the server
/// (started with its metrics listener on 0.0.0.0, for a Prometheus in a container)
/// under traffic and answers the original tutorial's three queries and every query
/// of the dashboard's first row.
pub async fn the_tutorials_queries_and_the_first_row_answer(server: &ExampleServer) {
    // ANCHOR: real_prometheus
    let Some(prometheus) = Prometheus::start(server.metrics_port()).await.unwrap() else {
        return; // the harness printed why
    };
    let traffic = traffic::Traffic::start(server.login_url.clone(), Duration::from_millis(20));
    prometheus
        .wait_for_target_health("up", Duration::from_secs(45))
        .await
        .unwrap();
    for query in TUTORIAL_QUERIES {
        let value = prometheus
            .wait_for_nonzero(query, Duration::from_secs(45))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e:#}"));
        eprintln!("{query}: {value}");
    }
    // ANCHOR_END: real_prometheus

    // ANCHOR: first_row
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let answers = row_answers(&dashboard, FIRST_ROW, prometheus.api())
        .await
        .unwrap();
    let value = |panel: &str, ref_id: &str| {
        answers
            .iter()
            .find(|a| a.panel == panel && a.ref_id == ref_id)
            .map_or_else(|| panic!("{panel} {ref_id} in {answers:#?}"), |a| a.value)
    };
    for (panel, ref_id) in [
        ("Target up", "A"),
        ("Targets up of expected", "A"),
        ("Targets up of expected", "B"),
    ] {
        let up = value(panel, ref_id);
        assert!((up - 1.0).abs() < f64::EPSILON, "{panel} {ref_id}: {up}");
    }
    // Rounds of one good login, one wrong password and one malformed body.
    let ratio = value("Login success ratio", "A");
    assert!(
        (ratio - 1.0 / 3.0).abs() < 0.1,
        "one success in three: {ratio}"
    );
    assert!(value("Requests in flight", "A") >= 0.0);
    // ANCHOR_END: first_row
    assert!(!traffic.failed(), "the traffic stopped early");
    let counts = traffic.stop().await.unwrap();
    assert!(counts.ok > 0 && counts.unauthorized > 0 && counts.bad_request > 0);
}
