//! What monitoring costs, in-process (`cargo bench -p lab --bench costs`):
//!
//! - `login_400`: one malformed login through the real `app()` and through
//!   `app_without_metrics()`, the same router minus the metrics layer. The
//!   difference is what the layer adds per request (goal: ≤ 1 µs).
//! - `render`: `Metrics::render()` with every series present (goal: ≤ 50 µs
//!   median), and its parts: the process collector's `/proc` reads and the
//!   text encoding alone.
//! - `argon2`: one password verification as the server runs it, the cost the
//!   metrics are compared with.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, criterion_main};
use login_metrics::auth::UserStore;
use login_metrics::metrics::{LATENCY_BUCKETS, Metrics, STATUS_CODES};
use login_metrics::routes::app_without_metrics;
use login_metrics::{AppState, app};
use prometheus::core::Collector;
use prometheus::{Encoder, TextEncoder};
use tower::ServiceExt;

/// A body that is not JSON: the cheapest answer `/login` gives (400).
const MALFORMED: &str = r#"{"username": "user", "password": "#;

fn malformed_login() -> Request<Body> {
    Request::post("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(MALFORMED))
        .expect("a valid request")
}

// ANCHOR: layer_bench
/// The same router with and without the metrics layer, answering a 400.
fn login_400(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let state = || AppState::new(UserStore::with_demo_user());
    let routers = [
        ("without_metrics", app_without_metrics(state())),
        ("with_metrics", app(state())),
    ];
    let mut group = c.benchmark_group("login_400");
    for (name, router) in routers {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let router = router.clone();
                async move {
                    let response = router.oneshot(malformed_login()).await.expect("infallible");
                    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
                    axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .expect("a body")
                }
            });
        });
    }
    group.finish();
}
// ANCHOR_END: layer_bench

// ANCHOR: render_bench
/// `/metrics` rendering with every status code and every latency bucket used.
fn render(c: &mut Criterion) {
    let metrics = Metrics::new();
    for (code, seconds) in STATUS_CODES.iter().cycle().zip(LATENCY_BUCKETS) {
        metrics.observe(*code, Duration::from_secs_f64(seconds * 0.9));
    }
    let mut group = c.benchmark_group("render");
    group.bench_function("full", |b| b.iter(|| black_box(metrics.render())));

    // The parts: the process collector reads /proc/self on every scrape...
    let process = prometheus::process_collector::ProcessCollector::for_self();
    group.bench_function("process_collector", |b| {
        b.iter(|| black_box(process.collect()));
    });
    // ...and most of that is the kernel: the same three files and one
    // directory read with nothing but std, no parsing.
    #[cfg(target_os = "linux")]
    group.bench_function("proc_reads_only", |b| {
        b.iter(|| {
            let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
            let limits = std::fs::read("/proc/self/limits").map_or(0, |text| text.len());
            let stat = std::fs::read("/proc/self/stat").map_or(0, |text| text.len());
            black_box((fds, limits, stat))
        });
    });
    // ...and the text encoder writes what was gathered.
    let families = metrics.registry().gather();
    group.bench_function("encode_only", |b| {
        b.iter(|| {
            let mut buffer = Vec::with_capacity(8 * 1024);
            TextEncoder::new()
                .encode(&families, &mut buffer)
                .expect("encoding into a Vec");
            black_box(buffer)
        });
    });
    group.finish();
}
// ANCHOR_END: render_bench

// ANCHOR: argon2_bench
/// One verification of the demo user's password, as the server runs it: on
/// the blocking pool, behind the store's semaphore.
fn argon2(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let store = Arc::new(UserStore::with_demo_user());
    let mut group = c.benchmark_group("argon2");
    group.sample_size(20);
    group.bench_function("verify", |b| {
        b.to_async(&runtime).iter(|| {
            let store = Arc::clone(&store);
            async move {
                let valid = store
                    .verify("user", "pass".to_owned(), std::time::Duration::MAX)
                    .await;
                assert!(matches!(valid, Ok(true)));
            }
        });
    });
    group.finish();
}
// ANCHOR_END: argon2_bench

/// In a private module: `criterion_group!` defines an undocumented `pub fn`.
mod group {
    criterion::criterion_group!(benches, super::login_400, super::render, super::argon2);
}
criterion_main!(group::benches);
