//! # crates-compared
//!
//! The minimal login server of Step 1 (`examples/minimal.rs` of the repository,
//! written with the `prometheus` crate) written again with the two other metrics
//! crates a Rust developer would pick, each as short as the crate allows:
//!
//! - `examples/with_prometheus_client.rs`: `prometheus-client`, the Prometheus
//!   project's own client, with native histogram buckets (served as protobuf to a
//!   scraper that asks for them) and exemplars;
//! - `examples/with_metrics.rs`: the `metrics` facade with
//!   `metrics-exporter-prometheus`, as axum's own example uses it.
//!
//! Each exposes the same names, label and buckets on the same ports (5000 and
//! 8000, moved by `LOGIN_ADDR` and `LOGIN_METRICS_ADDR`), so `prometheus.yml`, the
//! original tutorial's queries and the dashboard work unchanged against any of
//! them. Run one with
//!
//! ```sh
//! cargo run -p crates-compared --example with_prometheus_client
//! ```
//!
//! The crates live in a package of their own so that the server's build, and the
//! build of every other example, does not compile them. This library is empty:
//! the examples are the point.
