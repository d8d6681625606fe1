//! # login-metrics
//!
//! A `POST /login` endpoint instrumented for Prometheus, the library behind the
//! book of the same name. The examples stay short because the work is here:
//!
//! - [`config`]: flags and environment variables.
//! - [`limits`]: timeouts, the connection budget and the shutdown grace.
//! - [`auth`]: users as argon2 hashes, checked without revealing who exists.
//! - [`hashing`]: the low-priority thread pool that password hashing runs on.
//! - [`metrics`]: the seed-compatible metrics and the middleware that records them.
//! - [`routes`]: the router and the layer stack around `/login`.
//! - [`error`]: the JSON error body.
//! - [`server`]: the two listeners, their limits and bounded shutdown.
//! - [`testing`]: an in-process server on free ports for tests.
//! - [`harness`]: real Prometheus (and Grafana) for end-to-end tests.
//! - [`book`]: the queries printed in the book, for the tests that run them.

pub mod auth;
pub mod book;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod harness;
pub mod hashing;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod testing;

pub use routes::{AppState, app};
pub use server::serve;
