//! Grafana's provisioning files, checked without Grafana: the Prometheus data source
//! and the long-term store's, with fixed uids and their URLs from the environment,
//! and the provider that loads the dashboards directory, read only. The dashboard
//! itself is `tests/dashboard.rs`.

use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, DashboardProvisioning, DataSourceProvisioning, LONG_TERM_STORE_UID,
    dashboard_provider_file, datasource_file, env_reference, load_yaml, long_term_store_file,
};
use login_metrics_testkit::harness::grafana;

#[test]
fn the_data_source_is_provisioned_with_a_fixed_uid_and_settings_from_the_environment() {
    let provisioning: DataSourceProvisioning = load_yaml(&datasource_file()).unwrap();
    assert_eq!(provisioning.api_version, 1);
    let [datasource] = provisioning.datasources.as_slice() else {
        panic!("exactly one data source: {provisioning:?}");
    };
    assert_eq!(datasource.kind, "prometheus");
    assert_eq!(datasource.uid, DATASOURCE_UID);
    assert_eq!(datasource.access.as_deref(), Some("proxy"));
    assert!(datasource.is_default);
    assert!(
        !datasource.editable,
        "provisioned settings are not edited in the UI"
    );
    assert_eq!(env_reference(&datasource.url), Some("PROMETHEUS_URL"));
    let time_interval = datasource
        .json_data
        .time_interval
        .as_deref()
        .unwrap_or_default();
    assert_eq!(
        env_reference(time_interval),
        Some("PROMETHEUS_SCRAPE_INTERVAL")
    );
}

#[test]
fn the_long_term_store_is_a_second_data_source_that_speaks_promql() {
    let provisioning: DataSourceProvisioning = load_yaml(&long_term_store_file()).unwrap();
    assert_eq!(provisioning.api_version, 1);
    let [store] = provisioning.datasources.as_slice() else {
        panic!("exactly one data source: {provisioning:?}");
    };
    let prometheus: DataSourceProvisioning = load_yaml(&datasource_file()).unwrap();
    let prometheus = &prometheus.datasources[0];
    // The same plugin, so the dashboard's $datasource variable offers both.
    assert_eq!(store.kind, prometheus.kind);
    assert_eq!(store.uid, LONG_TERM_STORE_UID);
    assert_ne!(store.name, prometheus.name);
    assert!(!store.is_default, "Prometheus stays the default");
    assert!(!store.editable);
    assert_eq!(env_reference(&store.url), Some("LONG_TERM_STORE_URL"));
    // The store holds what Prometheus scraped: the same scrape interval.
    assert_eq!(
        store.json_data.time_interval,
        prometheus.json_data.time_interval
    );
}

#[test]
fn the_dashboard_provider_loads_the_dashboards_directory() {
    let provisioning: DashboardProvisioning = load_yaml(&dashboard_provider_file()).unwrap();
    assert_eq!(provisioning.api_version, 1);
    let [provider] = provisioning.providers.as_slice() else {
        panic!("exactly one provider: {provisioning:?}");
    };
    assert_eq!(provider.kind, "file");
    assert!(
        !provider.allow_ui_updates,
        "the repository is the source of truth"
    );
    assert_eq!(provider.options.path, grafana::CONTAINER_DASHBOARDS_DIR);
}
