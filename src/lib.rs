//! # login-metrics
//!
//! A `POST /login` endpoint instrumented for Prometheus, the library behind the
//! book of the same name. The examples stay short because the work is here:
//!
//! - [`config`]: flags and environment variables.
//! - [`limits`]: timeouts, the connection budget and the shutdown grace.
//! - [`auth`]: users as argon2 hashes, checked without revealing who exists.
//! - [`hashing`]: the low-priority thread pool that password hashing runs on.
//! - [`metrics`]: the seed-compatible metrics and the middleware that records
//!   them and writes each request's log line.
//! - [`routes`]: the router and the layer stack around `/login`.
//! - [`error`]: the JSON error body.
//! - [`logging`]: one line per request, written off the request path.
//! - [`server`]: the two listeners, their limits and bounded shutdown.
//! - [`throttle`]: how many login attempts each client address may make.
//!
//! The machinery the tests use (real Prometheus and Grafana, the book's queries)
//! is a crate of its own, `login-metrics-testkit`, so none of it is a dependency
//! of this one.

pub mod auth;
pub mod config;
pub mod error;
pub mod hashing;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod throttle;

pub use routes::{AppState, app};
pub use server::serve;
