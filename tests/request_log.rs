//! Claims Step 1 makes about the per-request log line, one test each: the layer
//! that counts a request also logs it, once, with the same status; an abandoned
//! request is logged as the 499 it is counted as; the line never carries a body
//! or a query string.
//!
//! Each test captures the log of its own thread (the test kit's `Captured`, and
//! tokio's current-thread runtime, which polls the router on that thread), so the
//! tests run in parallel without seeing each other's lines.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use login_metrics::auth::UserStore;
use login_metrics::metrics::STATUS_CODES;
use login_metrics::{AppState, app};
use login_metrics_testkit::exposition::ScrapeMetrics as _;
use login_metrics_testkit::logs::Captured;
use tower::ServiceExt;

/// A `POST` to `uri` with the given content type and body.
fn post(uri: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn each_request_is_logged_once_with_the_status_it_is_counted_under() {
    let log = Captured::start();
    let state = AppState::new(UserStore::with_demo_user());
    let requests = [
        post(
            "/login",
            "application/json",
            r#"{"username":"user","password":"pass"}"#,
        ),
        post(
            "/login",
            "application/json",
            r#"{"username":"user","password":"nope"}"#,
        ),
        post("/login", "application/json", r#"{"username":"#),
        post("/login", "text/plain", "user:pass"),
        Request::builder()
            .method(Method::GET)
            .uri("/login")
            .body(Body::empty())
            .unwrap(),
    ];
    for request in requests {
        app(state.clone()).oneshot(request).await.unwrap();
    }

    let lines = log.request_lines();
    assert_eq!(lines.len(), 5, "one line per request: {lines:#?}");
    let counted = state.metrics.scrape();
    for code in STATUS_CODES {
        let logged = lines
            .iter()
            .filter(|line| line.contains(&format!(" status={} ", code.as_str())))
            .count();
        assert_eq!(
            logged as u64,
            counted.requests(code),
            "lines with status={} against the counter: {lines:#?}",
            code.as_str()
        );
    }
    for status in ["200", "401", "400", "415", "405"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("status={status}"))),
            "no line for the {status}: {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| l.contains("path=/login") && l.contains("latency_us=")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn an_abandoned_request_is_logged_as_the_499_it_is_counted_as() {
    let log = Captured::start();
    let state = AppState::new(UserStore::with_demo_user());
    // A body that never arrives; the client gives up after 50 ms, which drops
    // the request's future, as hyper does when a connection closes.
    let request = post("/login", "application/json", Body::new(NeverArrives));
    let answered = tokio::time::timeout(
        Duration::from_millis(50),
        app(state.clone()).oneshot(request),
    )
    .await;
    assert!(answered.is_err(), "the request should still be waiting");

    let lines = log.request_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("status=499"), "{lines:#?}");
    assert_eq!(
        state
            .metrics
            .scrape()
            .requests(login_metrics::metrics::CLIENT_CLOSED_REQUEST),
        1
    );
}

/// A request body that never sends a byte.
struct NeverArrives;

impl axum::body::HttpBody for NeverArrives {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn the_request_line_holds_neither_the_body_nor_the_query_string() {
    let log = Captured::start();
    let state = AppState::new(UserStore::with_demo_user());
    let request = post(
        "/login?token=query-secret",
        "application/json",
        r#"{"username":"user","password":"body-secret"}"#,
    );
    let response = app(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let lines = log.request_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("path=/login "), "{lines:#?}");
    assert!(
        !lines[0].contains("secret") && !lines[0].contains("token"),
        "{lines:#?}"
    );
}
