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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::promql::QueryApi;
use crate::wait::{Check, poll};

/// The uid the provisioned Prometheus data source gets: the dashboard's default.
pub const DATASOURCE_UID: &str = "prometheus";
/// The uid of the second provisioned data source, the long-term store.
pub const LONG_TERM_STORE_UID: &str = "long-term-store";
/// What every panel names as its data source: the dashboard's data source variable.
pub const DATASOURCE_VARIABLE: &str = "${datasource}";
/// The uid of the provisioned dashboard (`/d/login-metrics` in Grafana).
pub const DASHBOARD_UID: &str = "login-metrics";

/// What a panel's query shows under the tests' ordinary traffic (good logins, wrong
/// passwords, malformed bodies, one client at a time), when that is not a non-zero
/// number: the tests check exactly this instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly zero: ordinary traffic gets nobody throttled, shed or queued.
    /// `tests/under_attack.rs` proves the same queries show an attack.
    Zero,
    /// A valid answer, empty while no alert fires. `tests/alerting.rs` proves it
    /// lists an alert that fires.
    Answer,
}

/// The panels [`Expect`] covers: `(title, refId, expectation)`.
pub const NOT_NONZERO_UNDER_ORDINARY_TRAFFIC: [(&str, &str, Expect); 4] = [
    (
        "Throttled (429) and shed (503) per second",
        "A",
        Expect::Zero,
    ),
    (
        "Throttled (429) and shed (503) per second",
        "B",
        Expect::Zero,
    ),
    ("Hashing queue", "A", Expect::Zero),
    ("Firing alerts", "A", Expect::Answer),
];

/// What the query `ref_id` of panel `title` shows under ordinary traffic; `None`
/// for the usual: a non-zero number.
#[must_use]
pub fn expect_under_ordinary_traffic(title: &str, ref_id: &str) -> Option<Expect> {
    NOT_NONZERO_UNDER_ORDINARY_TRAFFIC
        .iter()
        .find(|(t, r, _)| *t == title && *r == ref_id)
        .map(|(_, _, expect)| *expect)
}

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

// ---------------------------------------------------------------------------
// Provisioning YAML
// ---------------------------------------------------------------------------

/// A data source provisioning file (`apiVersion: 1`, `datasources: [...]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceProvisioning {
    /// Always 1.
    pub api_version: u32,
    /// The data sources to create or update.
    #[serde(default)]
    pub datasources: Vec<DataSource>,
}

/// One provisioned data source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// Name shown in Grafana.
    pub name: String,
    /// Plugin id, `prometheus`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Fixed uid that dashboards refer to.
    pub uid: String,
    /// `proxy`: Grafana's server queries the data source, not the browser.
    #[serde(default)]
    pub access: Option<String>,
    /// Where Grafana reaches Prometheus; may be an environment reference such as
    /// `$PROMETHEUS_URL`, which Grafana expands when it reads the file.
    pub url: String,
    /// Whether new panels pick this data source.
    #[serde(default)]
    pub is_default: bool,
    /// Whether the UI may change it.
    #[serde(default)]
    pub editable: bool,
    /// Plugin settings.
    #[serde(default)]
    pub json_data: DataSourceJsonData,
}

/// The Prometheus data source settings this project uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceJsonData {
    /// The scrape interval ("Scrape interval" in the UI), the base of `$__rate_interval`.
    #[serde(default)]
    pub time_interval: Option<String>,
    /// `POST` or `GET` for queries.
    #[serde(default)]
    pub http_method: Option<String>,
}

/// A dashboard provisioning file (`apiVersion: 1`, `providers: [...]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardProvisioning {
    /// Always 1.
    pub api_version: u32,
    /// Where dashboards come from.
    #[serde(default)]
    pub providers: Vec<DashboardProvider>,
}

/// One dashboard provider: a directory of dashboard JSON files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardProvider {
    /// Provider name.
    pub name: String,
    /// Grafana folder the dashboards go to.
    #[serde(default)]
    pub folder: Option<String>,
    /// `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether UI edits may be saved over the files.
    #[serde(default)]
    pub allow_ui_updates: bool,
    /// Whether the dashboards can be deleted in the UI.
    #[serde(default)]
    pub disable_deletion: bool,
    /// How often Grafana rereads the directory.
    #[serde(default)]
    pub update_interval_seconds: Option<u64>,
    /// Where the files are.
    pub options: DashboardProviderOptions,
}

/// Options of a file provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardProviderOptions {
    /// Directory inside the Grafana container.
    pub path: String,
    /// Whether subdirectories become folders.
    #[serde(default)]
    pub folders_from_files_structure: bool,
}

/// The name of the environment variable when `value` is exactly `$NAME` or `${NAME}`,
/// the forms Grafana expands in provisioning files.
#[must_use]
pub fn env_reference(value: &str) -> Option<&str> {
    let name = value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .or_else(|| value.strip_prefix('$'))?;
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

// ---------------------------------------------------------------------------
// Dashboard JSON
// ---------------------------------------------------------------------------

/// A dashboard as Grafana stores it (the classic JSON model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// Fixed uid, part of the dashboard's URL.
    pub uid: String,
    /// Title.
    pub title: String,
    /// Version of the JSON model.
    pub schema_version: u32,
    /// Tags for search.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Default time range.
    pub time: TimeRange,
    /// Auto-refresh interval, e.g. `10s`.
    #[serde(default)]
    pub refresh: Option<String>,
    /// The variables offered at the top of the dashboard.
    #[serde(default)]
    pub templating: Templating,
    /// The panels, in layout order.
    pub panels: Vec<Panel>,
}

/// The dashboard's variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Templating {
    /// In the order Grafana resolves them (a later one may use an earlier one).
    #[serde(default)]
    pub list: Vec<TemplateVariable>,
}

/// One dashboard variable, such as `$job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateVariable {
    /// The name used in queries: `job` for `$job`.
    pub name: String,
    /// `datasource`, `query`, `custom`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The label shown in the UI.
    #[serde(default)]
    pub label: Option<String>,
    /// A `datasource` variable: the plugin id it lists; a `query` variable: the
    /// query (a string, or an object with `query` in it).
    #[serde(default)]
    pub query: Value,
    /// A `query` variable's query as text, such as `label_values(up, job)`.
    #[serde(default)]
    pub definition: Option<String>,
    /// Where a `query` variable's query goes.
    #[serde(default)]
    pub datasource: Option<DataSourceRef>,
    /// Whether "All" is offered.
    #[serde(default)]
    pub include_all: bool,
    /// Whether several values can be chosen.
    #[serde(default)]
    pub multi: bool,
    /// What "All" stands for in a query; `None`: every value, as a regex alternation.
    #[serde(default)]
    pub all_value: Option<String>,
    /// The value chosen when the dashboard opens, kept as JSON.
    #[serde(default)]
    pub current: Value,
}

impl TemplateVariable {
    /// Whether the dashboard opens with "All" chosen.
    #[must_use]
    pub fn defaults_to_all(&self) -> bool {
        let value = &self.current["value"];
        value == "$__all"
            || value
                .as_array()
                .is_some_and(|v| v.len() == 1 && v[0] == "$__all")
    }

    /// The `label_values(<selector>, <label>)` query of a `query` variable, as
    /// `(selector, label)`; `None` for anything else.
    #[must_use]
    pub fn label_values(&self) -> Option<(String, String)> {
        let text = self
            .definition
            .clone()
            .or_else(|| self.query.as_str().map(str::to_owned))
            .or_else(|| self.query["query"].as_str().map(str::to_owned))?;
        let inner = text
            .trim()
            .strip_prefix("label_values(")?
            .strip_suffix(')')?;
        let (selector, label) = inner.rsplit_once(',')?;
        Some((selector.trim().to_owned(), label.trim().to_owned()))
    }
}

/// A relative time range such as `now-15m` to `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Start, e.g. `now-15m`.
    pub from: String,
    /// End, e.g. `now`.
    pub to: String,
}

/// One panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Panel {
    /// Unique within the dashboard.
    pub id: u32,
    /// Visualization: `timeseries`, `stat`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Title.
    pub title: String,
    /// Tooltip text of the title.
    #[serde(default)]
    pub description: Option<String>,
    /// The data source of the panel's queries.
    pub datasource: Option<DataSourceRef>,
    /// Position on the 24-column grid.
    pub grid_pos: GridPos,
    /// Units, thresholds and other display settings.
    #[serde(default)]
    pub field_config: FieldConfig,
    /// The queries.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Visualization options (legend, tooltip, reduction), kept as JSON.
    #[serde(default)]
    pub options: Value,
}

/// A reference to a data source by type and uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSourceRef {
    /// Plugin id.
    #[serde(rename = "type")]
    pub kind: String,
    /// Data source uid.
    pub uid: String,
}

/// Position and size on the dashboard grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridPos {
    /// Column, 0..24.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// Width in columns.
    pub w: u32,
    /// Height in rows.
    pub h: u32,
}

/// Field settings: defaults for every series plus overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldConfig {
    /// Settings for every field.
    #[serde(default)]
    pub defaults: FieldDefaults,
    /// Per-series changes (colors by name...), kept as JSON.
    #[serde(default)]
    pub overrides: Vec<Value>,
}

/// The field settings the tests check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDefaults {
    /// Grafana unit id: `reqps`, `s`, `percentunit`, `short`, `none`...
    #[serde(default)]
    pub unit: Option<String>,
    /// Axis/scale minimum.
    #[serde(default)]
    pub min: Option<f64>,
    /// Axis/scale maximum.
    #[serde(default)]
    pub max: Option<f64>,
    /// Decimals shown.
    #[serde(default)]
    pub decimals: Option<u32>,
    /// Color steps.
    #[serde(default)]
    pub thresholds: Option<Thresholds>,
    /// Value-to-text mappings, kept as JSON.
    #[serde(default)]
    pub mappings: Vec<Value>,
    /// Visualization-specific settings (stacking, line width...), kept as JSON.
    #[serde(default)]
    pub custom: Value,
}

/// Threshold steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// `absolute` or `percentage`.
    pub mode: String,
    /// Ascending steps; the first has no value (it is the base color).
    pub steps: Vec<ThresholdStep>,
}

/// One threshold step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdStep {
    /// Color name or hex.
    pub color: String,
    /// Lower bound; `null` for the base step.
    pub value: Option<f64>,
}

/// One Prometheus query of a panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Query letter, unique within the panel.
    pub ref_id: String,
    /// The data source.
    pub datasource: Option<DataSourceRef>,
    /// The `PromQL`, possibly with Grafana's built-in variables.
    pub expr: String,
    /// Legend template, e.g. `{{status_code}}`.
    #[serde(default)]
    pub legend_format: Option<String>,
    /// Run as a range query.
    #[serde(default)]
    pub range: bool,
    /// Run as an instant query.
    #[serde(default)]
    pub instant: bool,
    /// `code` or `builder`.
    #[serde(default)]
    pub editor_mode: Option<String>,
}

impl Dashboard {
    /// Every `(panel, target)` pair, in panel order.
    pub fn queries(&self) -> impl Iterator<Item = (&Panel, &Target)> {
        self.panels
            .iter()
            .flat_map(|panel| panel.targets.iter().map(move |target| (panel, target)))
    }

    /// The panel titled `title`.
    #[must_use]
    pub fn panel(&self, title: &str) -> Option<&Panel> {
        self.panels.iter().find(|p| p.title == title)
    }

    /// The variable named `name`.
    #[must_use]
    pub fn variable(&self, name: &str) -> Option<&TemplateVariable> {
        self.templating.list.iter().find(|v| v.name == name)
    }
}

// ---------------------------------------------------------------------------
// The dashboard's own variables
// ---------------------------------------------------------------------------

/// The text each dashboard variable stands for in a query, as Grafana's frontend
/// substitutes it before sending the query: a data source variable becomes the
/// chosen data source's uid; a query variable set to "All" becomes its `allValue`
/// (`.+`), or, without one, every value it offers, regex-escaped and joined as
/// `(a|b)`, which is what Grafana's Prometheus data source does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

impl Variables {
    /// Every variable of `dashboard` at the value it opens with, the data source
    /// variable set to `datasource_uid`, each query variable's values asked from
    /// `api` with its own `label_values(...)` query (earlier variables substituted).
    pub async fn resolve(
        dashboard: &Dashboard,
        datasource_uid: &str,
        api: &QueryApi,
    ) -> anyhow::Result<Self> {
        let mut variables = Variables::default();
        for variable in &dashboard.templating.list {
            let value = match variable.kind.as_str() {
                "datasource" => datasource_uid.to_owned(),
                "query" => {
                    let (selector, label) = variable.label_values().with_context(|| {
                        format!("variable {:?}: not a label_values() query", variable.name)
                    })?;
                    let selector = variables.expand(&selector);
                    let options = api.label_values(&label, &selector).await?;
                    anyhow::ensure!(
                        !options.is_empty(),
                        "variable {:?}: label_values({selector}, {label}) offers nothing in {}",
                        variable.name,
                        api.name()
                    );
                    anyhow::ensure!(
                        variable.defaults_to_all(),
                        "variable {:?}: only \"All\" as the default is supported here",
                        variable.name
                    );
                    all_value(variable, &options)
                }
                other => anyhow::bail!("variable {:?}: type {other:?}", variable.name),
            };
            variables.set(&variable.name, value);
        }
        Ok(variables)
    }

    /// [`resolve`](Self::resolve), retried until `timeout`: right after start-up the
    /// engine may not have the series the `label_values()` queries ask about yet.
    /// The error shows the last attempt's.
    pub async fn resolve_within(
        dashboard: &Dashboard,
        datasource_uid: &str,
        api: &QueryApi,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let what = format!("the dashboard's variables resolved by {}", api.name());
        let variables = poll(&what, timeout, crate::promql::POLL_EVERY, || async {
            match Self::resolve(dashboard, datasource_uid, api).await {
                Ok(variables) => Check::Met(variables),
                Err(e) => Check::NotYet(format!("{e:#}")),
            }
        })
        .await?;
        Ok(variables)
    }

    /// Sets `$name` to stand for `text` (already formatted for the query).
    pub fn set(&mut self, name: &str, text: impl Into<String>) {
        self.values.insert(name.to_owned(), text.into());
    }

    /// What `$name` stands for.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `text` with `$name`, `${name}` and `[[name]]` replaced for every known variable;
    /// Grafana's built-ins (`$__interval`...) and unknown names are left alone.
    #[must_use]
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(['$', '[']) {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            let (name, len) = if let Some(body) = rest.strip_prefix("${") {
                match body.find('}') {
                    Some(end) => (&body[..end], end + 3),
                    None => ("", 0),
                }
            } else if let Some(body) = rest.strip_prefix("[[") {
                match body.find("]]") {
                    Some(end) => (&body[..end], end + 4),
                    None => ("", 0),
                }
            } else if let Some(body) = rest.strip_prefix('$') {
                let end = body
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(body.len());
                (&body[..end], end + 1)
            } else {
                ("", 0)
            };
            match self.values.get(name) {
                Some(value) if len > 0 => {
                    out.push_str(value);
                    rest = &rest[len..];
                }
                _ => {
                    let first = rest.chars().next().map_or(1, char::len_utf8);
                    out.push_str(&rest[..first]);
                    rest = &rest[first..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// What "All" of `variable` stands for, given the values it offers.
fn all_value(variable: &TemplateVariable, options: &[String]) -> String {
    if let Some(all) = &variable.all_value {
        return all.clone();
    }
    let escaped: Vec<String> = options.iter().map(|o| regex_escape(o)).collect();
    match escaped.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join("|")),
    }
}

/// Grafana's `prometheusSpecialRegexEscape`: a value made safe inside `=~"..."`,
/// with the backslashes doubled for the PromQL string.
#[must_use]
pub fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str("\\\\");
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
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

// ---------------------------------------------------------------------------
// Grafana's built-in variables
// ---------------------------------------------------------------------------

/// What Grafana knows when it sends a panel's query: the data source's scrape
/// interval, the panel's interval (its step, `$__interval`) and the time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryContext {
    /// The data source's `timeInterval` (Prometheus' scrape interval); Grafana
    /// assumes 15 s when it is not set.
    pub scrape_interval: Duration,
    /// The panel's interval, also the step of a range query (`$__interval`).
    pub interval: Duration,
    /// The length of the dashboard's time range (`$__range`).
    pub range: Duration,
}

/// The scrape interval Grafana assumes when the data source sets none.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);

impl QueryContext {
    // ANCHOR: for_panel
    /// The context Grafana computes for a panel `max_data_points` wide (roughly its
    /// width in pixels) showing `range`: the interval is `range / max_data_points`
    /// rounded to a "nice" value, and never below the scrape interval.
    #[must_use]
    pub fn for_panel(range: Duration, max_data_points: u32, scrape_interval: Duration) -> Self {
        let raw = range / max_data_points.max(1);
        let interval = round_interval(raw).max(scrape_interval);
        Self {
            scrape_interval,
            interval,
            range,
        }
    }
    // ANCHOR_END: for_panel

    // ANCHOR: rate_interval
    /// `$__rate_interval`: `max($__interval + scrape interval, 4 × scrape interval)`,
    /// long enough for `rate()` to see at least four scrapes and never to skip one.
    #[must_use]
    pub fn rate_interval(&self) -> Duration {
        (self.interval + self.scrape_interval).max(4 * self.scrape_interval)
    }
    // ANCHOR_END: rate_interval

    /// `expr` with Grafana's built-in variables replaced, in Grafana's order:
    /// `$__interval_ms`, `$__interval`, `$__range_ms`, `$__range_s`, `$__range`,
    /// `$__rate_interval_ms`, `$__rate_interval`, each also as `${...}`.
    ///
    /// Formats follow Grafana: `$__interval` is whole units (`15s`, `1m`),
    /// `$__range` whole seconds (`900s`), `$__rate_interval` Go's duration format
    /// (`1m0s`), all of which `PromQL` accepts.
    #[must_use]
    pub fn expand(&self, expr: &str) -> String {
        let interval_ms = self.interval.as_millis().to_string();
        let range_ms = self.range.as_millis().to_string();
        // Rounded to the nearest second, like Grafana.
        let range_secs = ((self.range.as_millis() + 500) / 1000).to_string();
        let rate_interval = self.rate_interval();
        let replacements = [
            ("__interval_ms", interval_ms),
            ("__interval", format_interval(self.interval)),
            ("__range_ms", range_ms),
            ("__range_s", range_secs.clone()),
            ("__range", format!("{range_secs}s")),
            ("__rate_interval_ms", rate_interval.as_millis().to_string()),
            ("__rate_interval", go_duration(rate_interval)),
        ];
        let mut out = expr.to_owned();
        for (name, value) in &replacements {
            out = out.replace(&format!("${name}"), value);
            out = out.replace(&format!("${{{name}}}"), value);
        }
        out
    }
}

/// Grafana's "nice" interval for a raw `range / max data points` value.
#[must_use]
pub fn round_interval(raw: Duration) -> Duration {
    // (upper bound inclusive in ms, result in ms), from Grafana's interval calculator.
    const TABLE: [(u64, u64); 27] = [
        (10, 1),
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (172_800_000, 86_400_000),
    ];
    const WEEK_MS: u64 = 604_800_000;
    let ms = raw.as_secs_f64() * 1000.0;
    for (bound, result) in TABLE {
        #[allow(clippy::cast_precision_loss)] // exact: the bounds are far below 2^53
        if ms <= bound as f64 {
            return Duration::from_millis(result);
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let result = if ms <= WEEK_MS as f64 {
        86_400_000
    } else if ms <= (3 * WEEK_MS) as f64 {
        WEEK_MS
    } else if ms < (6 * WEEK_MS) as f64 {
        2_592_000_000
    } else {
        31_536_000_000
    };
    Duration::from_millis(result)
}

/// Grafana's format for `$__interval`: the largest unit that fits, truncated
/// (`90s` → `1m`), down to `1ms`.
#[must_use]
pub fn format_interval(d: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("y", 365 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let ms = d.as_millis();
    UNITS.iter().find(|(_, size)| ms >= *size).map_or_else(
        || "1ms".to_owned(),
        |(unit, size)| format!("{}{unit}", ms / size),
    )
}

/// Go's `time.Duration.String()` for whole milliseconds, which Grafana uses for
/// `$__rate_interval`: `4s`, `1m0s`, `1h2m3s`, `1.5s`, `250ms`.
#[must_use]
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1000 % 60;
    let millis = ms % 1000;
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    if millis == 0 {
        let _ = write!(out, "{seconds}s");
    } else {
        let fraction = format!("{millis:03}");
        let _ = write!(out, "{seconds}.{}s", fraction.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn rate_interval_is_at_least_four_scrapes() {
        let ctx = |interval| QueryContext {
            scrape_interval: S(15),
            interval,
            range: S(3600),
        };
        assert_eq!(ctx(S(15)).rate_interval(), S(60));
        assert_eq!(ctx(S(30)).rate_interval(), S(60));
        assert_eq!(ctx(S(60)).rate_interval(), S(75));
        assert_eq!(ctx(S(60)).expand("[$__rate_interval]"), "[1m15s]");
    }

    #[test]
    fn every_variable_and_both_spellings() {
        let ctx = QueryContext {
            scrape_interval: S(1),
            interval: S(2),
            range: Duration::from_millis(299_600),
        };
        assert_eq!(
            ctx.expand("$__interval $__interval_ms ${__interval} ${__interval_ms}"),
            "2s 2000 2s 2000"
        );
        assert_eq!(
            ctx.expand("$__range $__range_s $__range_ms ${__range} ${__range_s} ${__range_ms}"),
            "300s 300 299600 300s 300 299600"
        );
        assert_eq!(
            ctx.expand(
                "$__rate_interval $__rate_interval_ms ${__rate_interval} ${__rate_interval_ms}"
            ),
            "4s 4000 4s 4000"
        );
        // Other variables are left alone.
        assert_eq!(ctx.expand("$job ${instance}"), "$job ${instance}");
    }

    #[test]
    fn panel_interval_like_grafana() {
        // 15 minutes over 300 points = 3 s, rounded to 2 s, but not below the scrape.
        let ctx = QueryContext::for_panel(S(900), 300, S(1));
        assert_eq!(ctx.interval, S(2));
        assert_eq!(QueryContext::for_panel(S(900), 300, S(15)).interval, S(15));
        assert_eq!(
            QueryContext::for_panel(S(86_400), 1000, S(15)).interval,
            S(60)
        );
        assert_eq!(
            QueryContext::for_panel(S(7 * 86_400), 1000, S(15)).interval,
            S(600)
        );
    }

    #[test]
    fn rounding_table() {
        let ms = Duration::from_millis;
        assert_eq!(round_interval(ms(5)), ms(1));
        assert_eq!(round_interval(ms(1_500)), S(1));
        assert_eq!(round_interval(ms(1_501)), S(2));
        assert_eq!(round_interval(S(17)), S(15));
        assert_eq!(round_interval(S(100)), S(120));
        assert_eq!(round_interval(S(5 * 86_400)), S(86_400));
        assert_eq!(round_interval(S(400 * 86_400)), S(365 * 86_400));
    }

    #[test]
    fn duration_formats() {
        let ms = Duration::from_millis;
        assert_eq!(format_interval(S(90)), "1m");
        assert_eq!(format_interval(S(15)), "15s");
        assert_eq!(format_interval(ms(500)), "500ms");
        assert_eq!(format_interval(Duration::ZERO), "1ms");
        assert_eq!(go_duration(S(4)), "4s");
        assert_eq!(go_duration(S(60)), "1m0s");
        assert_eq!(go_duration(S(3723)), "1h2m3s");
        assert_eq!(go_duration(S(7200)), "2h0m0s");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(250)), "250ms");
    }

    #[test]
    fn dashboard_variables_expand_in_every_spelling() {
        let mut vars = Variables::default();
        vars.set("job", "login_server");
        vars.set("instance", ".+");
        vars.set("datasource", "long-term-store");
        assert_eq!(
            vars.expand(r#"up{job=~"$job", instance=~"${instance}"} [[job]]"#),
            r#"up{job=~"login_server", instance=~".+"} login_server"#
        );
        assert_eq!(vars.expand("${datasource}"), "long-term-store");
        // Built-ins, unknown names, longer names and lone characters stay.
        assert_eq!(
            vars.expand("[$__rate_interval] $jobs $x ${y} [[z]] $ [ a[1]"),
            "[$__rate_interval] $jobs $x ${y} [[z]] $ [ a[1]"
        );
    }

    #[test]
    fn all_is_the_custom_value_or_every_value_escaped() {
        let variable = |all_value: Option<&str>| TemplateVariable {
            name: "instance".into(),
            kind: "query".into(),
            label: None,
            query: Value::Null,
            definition: Some("label_values(login_requests_total{job=~\"$job\"}, instance)".into()),
            datasource: None,
            include_all: true,
            multi: true,
            all_value: all_value.map(str::to_owned),
            current: serde_json::json!({"text": ["All"], "value": ["$__all"]}),
        };
        let options = ["127.0.0.1:8001".to_owned(), "127.0.0.1:8002".to_owned()];
        assert_eq!(all_value(&variable(Some(".+")), &options), ".+");
        assert_eq!(
            all_value(&variable(None), &options),
            r"(127\\.0\\.0\\.1:8001|127\\.0\\.0\\.1:8002)"
        );
        assert_eq!(
            all_value(&variable(None), &options[..1]),
            r"127\\.0\\.0\\.1:8001"
        );
        assert!(variable(None).defaults_to_all());
        assert_eq!(
            variable(None).label_values(),
            Some((
                r#"login_requests_total{job=~"$job"}"#.to_owned(),
                "instance".to_owned()
            ))
        );
        assert_eq!(regex_escape(r"a\b"), r"a\\\\b");
    }

    #[test]
    fn environment_references() {
        assert_eq!(env_reference("$PROMETHEUS_URL"), Some("PROMETHEUS_URL"));
        assert_eq!(env_reference("${PROMETHEUS_URL}"), Some("PROMETHEUS_URL"));
        assert_eq!(env_reference("http://localhost:9090"), None);
        assert_eq!(env_reference("$1X"), None);
        assert_eq!(env_reference("${A-B}"), None);
    }
}
