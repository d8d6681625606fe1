//! Claims the book makes about `POST /login`, one test each. Every test builds
//! its own state, so counters start at zero and tests run in parallel.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use axum::routing::post;
use login_metrics::auth::UserStore;
use login_metrics::metrics::STATUS_CODES;
use login_metrics::routes::instrument;
use login_metrics::{AppState, app};
use login_metrics_testkit::clients::hang_up_mid_body;
use login_metrics_testkit::exposition::{ScrapeMetrics as _, sample};
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::wait::eventually;
use serde_json::{Value, json};
use tower::ServiceExt;

fn state() -> AppState {
    AppState::new(UserStore::with_demo_user())
}

fn login_request(content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::builder().method(Method::POST).uri("/login");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    request.body(body.into()).unwrap()
}

fn json_login(body: &Value) -> Request<Body> {
    login_request(Some("application/json"), body.to_string())
}

/// Sends one request and returns status, headers and the parsed JSON body.
async fn send(
    state: &AppState,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, headers, body)
}

/// Asserts that exactly one request was counted, under `status`, and timed.
fn assert_counted_once_as(state: &AppState, status: StatusCode) {
    let counted = state.metrics.scrape();
    for code in STATUS_CODES {
        let expected = u64::from(code == status);
        assert_eq!(
            counted.requests(code),
            expected,
            "login_requests_total{{status_code=\"{}\"}} after one {status} response",
            code.as_str()
        );
    }
    assert_eq!(
        counted.latency_count(),
        1,
        "histogram count after one request"
    );
    assert_eq!(counted.requests_in_flight(), 0, "nothing left in flight");
}

fn assert_error_body(body: &Value, error: &str) {
    assert_eq!(body["error"], error, "error code in {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a human-readable message in {body}"
    );
}

#[tokio::test]
async fn valid_credentials_return_200_and_count_one_200() {
    let state = state();
    let (status, _, body) = send(
        &state,
        json_login(&json!({"username": "user", "password": "pass"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"message": "Login successful"}));
    assert_counted_once_as(&state, StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_returns_401_and_counts_one_401() {
    let state = state();
    let (status, _, body) = send(
        &state,
        json_login(&json!({"username": "user", "password": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_body(&body, "invalid_credentials");
    assert_counted_once_as(&state, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_user_returns_the_same_401_as_a_wrong_password() {
    let state = state();
    let (status, _, unknown) = send(
        &state,
        json_login(&json!({"username": "wrong_user", "password": "wrong_pass"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = AppState::new(UserStore::with_demo_user());
    let (_, _, wrong_password) = send(
        &other,
        json_login(&json!({"username": "user", "password": "x"})),
    )
    .await;
    assert_eq!(
        unknown, wrong_password,
        "the body must not reveal whether the user exists"
    );
    assert_counted_once_as(&state, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_user_costs_one_full_password_verification() {
    let state = state();
    send(
        &state,
        json_login(&json!({"username": "nobody", "password": "pass"})),
    )
    .await;
    assert_eq!(state.users.verifications(), 1, "unknown user");
    send(
        &state,
        json_login(&json!({"username": "user", "password": "bad"})),
    )
    .await;
    assert_eq!(state.users.verifications(), 2, "wrong password");
    send(
        &state,
        json_login(&json!({"username": "user", "password": "pass"})),
    )
    .await;
    assert_eq!(state.users.verifications(), 3, "valid login");
}

#[tokio::test]
async fn rejected_bodies_cost_no_password_verification() {
    let state = state();
    send(&state, login_request(Some("application/json"), "{")).await;
    send(
        &state,
        login_request(None, r#"{"username":"user","password":"pass"}"#),
    )
    .await;
    assert_eq!(state.users.verifications(), 0);
}

#[tokio::test]
async fn malformed_json_returns_400_and_counts_one_400() {
    let state = state();
    let (status, _, body) = send(
        &state,
        login_request(Some("application/json"), r#"{"username": "user""#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "malformed_json");
    assert_counted_once_as(&state, StatusCode::BAD_REQUEST);
}

/// The book's chapter on counting every answer shows these answers as copied
/// from the running server; serde's words come once, without the sentence axum
/// puts in front of them.
#[tokio::test]
async fn error_messages_are_the_ones_the_book_shows() {
    let state = state();
    let chapter = include_str!("../book/src/hardening/counting.md");
    for (body, expected) in [
        (
            r#"{"username":"user","#,
            "The body is not valid JSON: EOF while parsing a value at line 1 column 19",
        ),
        (
            r#"{"username":"user"}"#,
            "Expected {\"username\": string, \"password\": string}: \
             missing field `password` at line 1 column 19",
        ),
    ] {
        let (_, _, answer) = send(&state, login_request(Some("application/json"), body)).await;
        assert_eq!(answer["message"], expected, "for the body {body}");
        let shown = serde_json::to_string(expected).unwrap();
        assert!(
            chapter.contains(&shown),
            "the chapter does not show {shown}"
        );
    }
}

#[tokio::test]
async fn incomplete_json_returns_400_naming_the_missing_field() {
    let state = state();
    let (status, _, body) = send(&state, json_login(&json!({"username": "user"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "invalid_body");
    assert!(
        body["message"].as_str().unwrap().contains("password"),
        "{body}"
    );
    assert_counted_once_as(&state, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn error_messages_never_echo_the_password() {
    let state = state();
    let secret = "s3cret-Value-42";
    let (_, _, body) = send(
        &state,
        json_login(&json!({"username": "user", "password": [secret]})),
    )
    .await;
    assert_error_body(&body, "invalid_body");
    assert!(!body.to_string().contains(secret), "{body}");
}

#[tokio::test]
async fn missing_content_type_returns_415_and_counts_one_415() {
    let state = state();
    let (status, _, body) = send(
        &state,
        login_request(None, r#"{"username":"user","password":"pass"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error_body(&body, "unsupported_media_type");
    assert_counted_once_as(&state, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn wrong_content_type_returns_415() {
    let state = state();
    let (status, _, body) = send(
        &state,
        login_request(Some("text/plain"), "username=user&password=pass"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error_body(&body, "unsupported_media_type");
    assert_counted_once_as(&state, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn body_over_16_kib_returns_413_and_counts_one_413() {
    let state = state();
    let padding = "x".repeat(login_metrics::routes::LOGIN_BODY_LIMIT);
    let (status, _, body) = send(
        &state,
        json_login(&json!({"username": padding, "password": "pass"})),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_body(&body, "payload_too_large");
    assert_counted_once_as(&state, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn wrong_method_returns_405_with_allow_header_and_counts_one_405() {
    let state = state();
    let request = Request::builder()
        .method(Method::GET)
        .uri("/login")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
    assert_error_body(&body, "method_not_allowed");
    assert_counted_once_as(&state, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn other_paths_return_json_404_and_are_not_counted_as_logins() {
    let state = state();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/admin")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_body(&body, "not_found");
    assert_eq!(state.metrics.scrape().latency_count(), 0);
}

async fn buggy_handler() -> StatusCode {
    panic!("bug in a handler")
}

#[tokio::test]
async fn a_panic_becomes_a_json_500_and_is_counted() {
    let state = state();
    let panicking = instrument(post(buggy_handler), Arc::clone(&state.metrics));
    let router: Router = Router::new()
        .route("/login", panicking)
        .with_state(state.clone());
    let response = router.oneshot(json_login(&json!({}))).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value =
        serde_json::from_slice(&to_bytes(response.into_body(), 1024).await.unwrap()).unwrap();
    assert_error_body(&body, "internal_error");
    assert_counted_once_as(&state, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn in_flight_gauge_returns_to_zero_when_the_request_is_dropped() {
    let state = state();
    let never = instrument(post(std::future::pending::<()>), Arc::clone(&state.metrics));
    let router: Router = Router::new()
        .route("/login", never)
        .with_state(state.clone());
    let mut request = Box::pin(router.oneshot(json_login(&json!({}))));
    // The handler never finishes, like a client that hangs up mid-request.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut request)
            .await
            .is_err()
    );
    assert_eq!(
        state.metrics.scrape().requests_in_flight(),
        1,
        "in flight while being handled"
    );
    drop(request);
    assert_eq!(
        state.metrics.scrape().requests_in_flight(),
        0,
        "released when the future is dropped"
    );
}

#[tokio::test]
async fn every_status_code_series_exists_at_zero_from_start() {
    let exposition = state().metrics.render();
    for code in STATUS_CODES {
        let line = format!(
            "login_requests_total{{status_code=\"{}\"}} 0",
            code.as_str()
        );
        assert!(
            exposition.lines().any(|l| l == line),
            "missing `{line}` in:\n{exposition}"
        );
    }
    assert_eq!(
        sample(&exposition, "login_request_latency_seconds_count"),
        Some(0.0)
    );
    assert_eq!(sample(&exposition, "login_requests_in_flight"), Some(0.0));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn process_metrics_are_exported() {
    let exposition = state().metrics.render();
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(exposition.contains(name), "missing {name}");
    }
}

#[tokio::test]
async fn exposition_passes_promtool_check_metrics() {
    let state = state();
    send(
        &state,
        json_login(&json!({"username": "user", "password": "pass"})),
    )
    .await;
    let exposition = state.metrics.render();
    let Some(output) =
        login_metrics_testkit::tools::promtool(&["check", "metrics"], exposition.as_bytes())
    else {
        return;
    };
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn metrics_listener_serves_the_text_format_over_http() {
    let server = TestServer::start_local().await.unwrap();
    let client = reqwest::Client::new();
    let login = client
        .post(server.login_url())
        .json(&json!({"username": "user", "password": "pass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::OK);
    let response = client.get(server.metrics_url()).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert!(
        response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert_eq!(
        sample(&text, r#"login_requests_total{status_code="200"}"#),
        Some(1.0),
        "{text}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn in_flight_gauge_returns_to_zero_when_a_real_client_hangs_up_mid_request() {
    let server = TestServer::start_local().await.unwrap();
    let metrics = Arc::clone(&server.state.metrics);
    // Promise 100 bytes of body, send 11, and hang up while the server waits.
    hang_up_mid_body(&server, Ipv4Addr::LOCALHOST).await;
    eventually("the gauge is back to zero", || {
        metrics.scrape().requests_in_flight() == 0
    })
    .await;
    server.stop().await.unwrap();
}
