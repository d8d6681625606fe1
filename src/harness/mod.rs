//! Real Prometheus (and Grafana) for end-to-end tests.
//!
//! - [`prometheus`]: [`prometheus::Prometheus`] runs the repository's `prometheus.yml`
//!   against the server under test, in Docker or as a local process.
//! - [`docker`]: Docker availability, image references, unique names and container logs.
//!
//! Environment variables:
//!
//! - `LOGIN_METRICS_PROMETHEUS=container|native|auto` (default `auto`).
//! - `PROMETHEUS_IMAGE`: the Prometheus image for the container backend
//!   (default [`prometheus::DEFAULT_IMAGE`]).
//! - `DOCKER_HOST`: the Docker endpoint, as for any testcontainers user.

pub mod docker;
pub mod grafana;
pub mod prometheus;
