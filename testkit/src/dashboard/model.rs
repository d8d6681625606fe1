//! The dashboard as Grafana stores it, the classic JSON model of
//! `grafana/dashboards/login.json`, typed where the tests check it and kept as
//! JSON where they do not.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

impl TimeRange {
    /// How long a range `now-N<unit>` to `now` is: `now-15m` is 15 minutes. `None`
    /// for any other shape (an absolute time, a range that does not end now).
    #[must_use]
    pub fn length(&self) -> Option<Duration> {
        if self.to != "now" {
            return None;
        }
        let spec = self.from.strip_prefix("now-")?;
        let split = spec.find(|c: char| !c.is_ascii_digit())?;
        let (number, unit) = spec.split_at(split);
        let unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return None,
        };
        Some(Duration::from_secs(number.parse::<u64>().ok()? * unit))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_range_ending_now_has_a_length() {
        let range = |from: &str, to: &str| TimeRange {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        assert_eq!(
            range("now-15m", "now").length(),
            Some(Duration::from_secs(900))
        );
        assert_eq!(
            range("now-2d", "now").length(),
            Some(Duration::from_secs(172_800))
        );
        assert_eq!(range("now-15m", "now-5m").length(), None);
        assert_eq!(range("now-15w", "now").length(), None);
        assert_eq!(range("2026-01-01", "now").length(), None);
    }
}
