//! The Grafana side as code: typed views of the provisioning files and the
//! dashboard, and Grafana's built-in query variables.
//!
//! - [`DataSourceProvisioning`] and [`DashboardProvisioning`] read
//!   `grafana/provisioning/**.yml`; [`Dashboard`] reads `grafana/dashboards/login.json`.
//!   Only the fields the tests and the book rely on are typed; Grafana reads the rest.
//! - [`QueryContext`] replaces `$__rate_interval`, `$__interval`, `$__range` (and their
//!   `_ms`/`_s` and `${...}` forms) the way Grafana's Prometheus data source does before
//!   it sends a panel's query, so the tests can send the same `PromQL` to Prometheus.
//! - [`Variables`] replaces the dashboard's own variables (`$datasource`, `$job`,
//!   `$instance`) the way Grafana's frontend does, "All" included: it asks the engine
//!   for each variable's values exactly as the variable's `label_values(...)` query does.
//!
//! Each of those has a module: `provisioning`, `model`, `variables` and `intervals`
//! (Grafana's interval arithmetic); `expectations` says what ordinary traffic shows on
//! each panel. Their items are re-exported here.
//!
//! ```
//! use std::time::Duration;
//! use login_metrics_testkit::dashboard::QueryContext;
//!
//! // A 15 minute panel 300 points wide, Prometheus scraping every 15 s.
//! let ctx = QueryContext::for_panel(Duration::from_secs(900), 300, Duration::from_secs(15));
//! assert_eq!(ctx.interval, Duration::from_secs(15));
//! assert_eq!(ctx.rate_interval(), Duration::from_secs(60));
//! assert_eq!(
//!     ctx.expand("sum(rate(login_requests_total[$__rate_interval]))"),
//!     "sum(rate(login_requests_total[1m0s]))"
//! );
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The uid the provisioned Prometheus data source gets: the dashboard's default.
pub const DATASOURCE_UID: &str = "prometheus";
/// The uid of the second provisioned data source, the long-term store.
pub const LONG_TERM_STORE_UID: &str = "long-term-store";
/// What every panel names as its data source: the dashboard's data source variable.
pub const DATASOURCE_VARIABLE: &str = "${datasource}";
/// The uid of the provisioned dashboard (`/d/login-metrics` in Grafana).
pub const DASHBOARD_UID: &str = "login-metrics";

mod expectations;
mod intervals;
mod model;
mod provisioning;
mod variables;

pub use expectations::{
    Expect, NOT_NONZERO_UNDER_ORDINARY_TRAFFIC, PROBE_PANELS, expect_under_ordinary_traffic,
};
pub use intervals::{
    DEFAULT_SCRAPE_INTERVAL, QueryContext, format_interval, go_duration, query_range_as_grafana,
    round_interval,
};
pub use model::{
    Dashboard, DataSourceRef, FieldConfig, FieldDefaults, GridPos, Panel, Target, TemplateVariable,
    Templating, ThresholdStep, Thresholds, TimeRange,
};
pub use provisioning::{
    DashboardProvider, DashboardProviderOptions, DashboardProvisioning, DataSource,
    DataSourceJsonData, DataSourceProvisioning, env_reference,
};
pub use variables::{Variables, regex_escape};

/// Where the Grafana files live in this repository.
#[must_use]
pub fn grafana_dir() -> PathBuf {
    crate::repo_root().join("grafana")
}

/// `grafana/provisioning/datasources/prometheus.yml`.
#[must_use]
pub fn datasource_file() -> PathBuf {
    grafana_dir().join("provisioning/datasources/prometheus.yml")
}

/// `grafana/provisioning/datasources/long-term-store.yml`.
#[must_use]
pub fn long_term_store_file() -> PathBuf {
    grafana_dir().join("provisioning/datasources/long-term-store.yml")
}

/// `grafana/provisioning/dashboards/login-metrics.yml`.
#[must_use]
pub fn dashboard_provider_file() -> PathBuf {
    grafana_dir().join("provisioning/dashboards/login-metrics.yml")
}

/// `grafana/dashboards/login.json`.
#[must_use]
pub fn dashboard_file() -> PathBuf {
    grafana_dir().join("dashboards/login.json")
}

/// Reads and parses a provisioning or dashboard file.
pub fn load_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Reads and parses `grafana/dashboards/login.json` (or another dashboard file).
pub fn load_dashboard(path: &Path) -> anyhow::Result<Dashboard> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
