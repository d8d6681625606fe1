//! Real engines for end-to-end tests.
//!
//! - [`engine`]: one launcher for every engine: a local or pulled image in Docker, or
//!   a native binary, on a free port, decided once per test binary, logs in errors.
//! - [`prometheus`]: [`prometheus::Prometheus`] runs the repository's `prometheus.yml`
//!   against the server under test; its builder runs the other configurations
//!   (`file_sd` targets, external labels, remote write, an Alertmanager).
//! - [`alertmanager`]: [`alertmanager::Alertmanager`] runs the repository's
//!   `alertmanager.yml`, its receivers posting to the test's webhook.
//! - [`victoria_metrics`]: VictoriaMetrics, the long-term store Prometheus writes to.
//! - [`blackbox`]: the blackbox exporter, logging in from outside with the probe account.
//! - [`grafana`]: Grafana in Docker, provisioned from the repository's files.
//! - [`docker`]: Docker availability, image references, unique names, container logs.
//!
//! Environment variables, per engine (`PROMETHEUS`, `ALERTMANAGER`, `VICTORIA_METRICS`,
//! `BLACKBOX`, whose image variable is `BLACKBOX_EXPORTER_IMAGE`, and `GRAFANA`):
//!
//! - `LOGIN_METRICS_<ENGINE>=container|native|auto` (default `auto`).
//! - `<ENGINE>_IMAGE`: the image for the container backend (default: the official
//!   image at the tag pinned in the engine's module).
//! - `DOCKER_HOST`: the Docker endpoint, as for any testcontainers user.

pub mod alertmanager;
pub mod blackbox;
pub mod docker;
pub mod engine;
pub mod grafana;
pub mod prometheus;
pub mod victoria_metrics;
