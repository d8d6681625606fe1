//! # login-metrics
//!
//! A `POST /login` endpoint instrumented for Prometheus, the library behind the
//! book of the same name. The examples stay short because the work is here:
//!
//! - [`config`]: flags and environment variables.
//! - [`limits`]: timeouts, the connection budget and the shutdown grace.
//! - [`auth`]: users as argon2 hashes, checked without revealing who exists.
//! - [`hashing`]: the low-priority thread pool that password hashing runs on.
//! - [`metrics`]: the metrics of the original tutorial, and the middleware that
//!   records them and writes each request's log line.
//! - [`collector`]: metrics whose value lives elsewhere, read at each scrape.
//! - [`routes`]: the router and the layer stack around `/login`.
//! - [`error`]: the JSON error body.
//! - [`logging`]: one line per request, written off the request path.
//! - [`server`]: the two listeners, their limits and bounded shutdown.
//! - [`metrics_listener`]: who may connect to `/metrics`, and what each may hold.
//! - [`throttle`]: how many login attempts each client address may make.
//! - [`web_config`]: the credentials and TLS of `/metrics`, from an
//!   exporter-toolkit `web.yml`.
//!
//! The machinery the tests use (real Prometheus and Grafana, the book's queries)
//! is a crate of its own, `login-metrics-testkit`, and the tools that measure the
//! server another, `lab`, so none of it is a dependency of this one. The
//! `testing` feature, which only they turn on, adds the few read-only views of
//! internal counters they check that a server has no use for.

pub mod auth;
pub mod collector;
pub mod config;
pub mod error;
pub mod hashing;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod metrics_listener;
pub mod routes;
pub mod server;
pub mod throttle;
pub mod web_config;

pub use routes::{AppState, app};
pub use server::serve;
