//! The provisioning files as types: `grafana/provisioning/datasources/*.yml` and
//! `grafana/provisioning/dashboards/*.yml`. Only the fields the tests and the book
//! rely on are typed; Grafana reads the rest.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_references() {
        assert_eq!(env_reference("$PROMETHEUS_URL"), Some("PROMETHEUS_URL"));
        assert_eq!(env_reference("${PROMETHEUS_URL}"), Some("PROMETHEUS_URL"));
        assert_eq!(env_reference("http://localhost:9090"), None);
        assert_eq!(env_reference("$1X"), None);
        assert_eq!(env_reference("${A-B}"), None);
    }
}
