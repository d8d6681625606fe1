//! Property: whatever bytes arrive at `/login`, the server answers a JSON 4xx
//! (or 200 for the one valid body), never panics, and counts every request.

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use login_metrics::auth::UserStore;
use login_metrics::metrics::STATUS_CODES;
use login_metrics::{AppState, app};
use login_metrics_testkit::exposition::ScrapeMetrics as _;
use proptest::prelude::*;
use serde_json::Value;
use tower::ServiceExt;

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("username".to_owned()),
                    Just("password".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn body_strategy() -> impl Strategy<Value = (Option<&'static str>, Vec<u8>)> {
    let content_type = prop_oneof![
        Just(Some("application/json")),
        Just(None),
        Just(Some("text/plain")),
        Just(Some("application/json; charset=utf-8")),
    ];
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        arbitrary_json().prop_map(|v| v.to_string().into_bytes()),
    ];
    (content_type, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bodies_get_json_answers_and_every_request_is_counted(
        requests in prop::collection::vec(body_strategy(), 1..6)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let state = AppState::new(UserStore::with_demo_user());
            for (content_type, bytes) in &requests {
                let mut request = Request::builder().method(Method::POST).uri("/login");
                if let Some(content_type) = content_type {
                    request = request.header(header::CONTENT_TYPE, *content_type);
                }
                let response = app(state.clone())
                    .oneshot(request.body(Body::from(bytes.clone())).unwrap())
                    .await
                    .unwrap();
                let status = response.status();
                prop_assert!(
                    status == StatusCode::OK || status.is_client_error(),
                    "status {} for {:?}", status, String::from_utf8_lossy(bytes)
                );
                let body: Value = serde_json::from_slice(&to_bytes(response.into_body(), 1 << 16).await.unwrap())
                    .expect("every answer is JSON");
                if status.is_client_error() {
                    prop_assert!(body["message"].is_string(), "error without message: {}", body);
                }
            }
            let scrape = state.metrics.scrape();
            let counted: u64 = STATUS_CODES.iter().map(|code| scrape.requests(*code)).sum();
            prop_assert_eq!(counted, requests.len() as u64);
            prop_assert_eq!(scrape.latency_count(), requests.len() as u64);
            Ok(())
        })?;
    }
}
