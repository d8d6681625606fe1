//! One row of the dashboard, asked from a real engine the way Grafana asks it.
//!
//! The quick start and the minimal server of Step 1 promise a dashboard whose
//! first row (is the target up, how many logins succeed, how many are in flight)
//! shows values as soon as Prometheus scrapes the server. [`row_answers`] checks
//! that promise against any server: it expands the dashboard's variables as
//! Grafana's frontend does for "All", Grafana's built-ins for a panel of the
//! dashboard's default range, and polls each query of the row until it returns a
//! number.
//!
//! ```no_run
//! # async fn example(api: &login_metrics_testkit::promql::QueryApi) -> anyhow::Result<()> {
//! use login_metrics_testkit::dashboard::{dashboard_file, load_dashboard};
//! use login_metrics_testkit::panels::{FIRST_ROW, row_answers};
//!
//! let dashboard = load_dashboard(&dashboard_file())?;
//! for answer in row_answers(&dashboard, FIRST_ROW, api).await? {
//!     println!("{} {}: {}", answer.panel, answer.ref_id, answer.value);
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use anyhow::Context;

use crate::dashboard::{DATASOURCE_UID, Dashboard, Panel, QueryContext, Variables};
use crate::harness::prometheus::TEST_INTERVAL;
use crate::promql::{QueryApi, numbers};

/// The grid row (`gridPos.y`) of the dashboard's first row of panels.
pub const FIRST_ROW: u32 = 0;

/// How long a query may take to return a number after traffic starts: two
/// scrapes for `rate()`, and room for a slow engine start.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(45);

/// Roughly a panel's width in pixels: Grafana's `maxDataPoints`.
const PANEL_POINTS: u32 = 1000;

/// What one query of a panel returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The panel's title.
    pub panel: String,
    /// The query's `refId` within the panel.
    pub ref_id: String,
    /// The query as sent, every variable replaced.
    pub promql: String,
    /// Its first number (the only one with one server scraped).
    pub value: f64,
}

/// The panels whose top edge is on grid row `y`, left to right.
#[must_use]
pub fn panels_in_row(dashboard: &Dashboard, y: u32) -> Vec<&Panel> {
    let mut panels: Vec<&Panel> = dashboard
        .panels
        .iter()
        .filter(|panel| panel.grid_pos.y == y)
        .collect();
    panels.sort_by_key(|panel| panel.grid_pos.x);
    panels
}

/// Every query of the panels on grid row `y`, sent to `api` as Grafana sends it
/// for the dashboard's default range on a data source scraped every second (the
/// harness' interval), polled until it returns a number; zero counts, since a gauge
/// such as the requests in flight is often zero between requests.
pub async fn row_answers(
    dashboard: &Dashboard,
    y: u32,
    api: &QueryApi,
) -> anyhow::Result<Vec<Answer>> {
    let panels = panels_in_row(dashboard, y);
    anyhow::ensure!(!panels.is_empty(), "no panel on grid row {y}");
    let variables = Variables::resolve_within(dashboard, DATASOURCE_UID, api, ANSWER_WITHIN)
        .await
        .context("the dashboard's variables")?;
    let context = QueryContext::for_panel(default_range(dashboard)?, PANEL_POINTS, TEST_INTERVAL);
    let mut answers = Vec::new();
    // ANCHOR: row_answers
    for panel in panels {
        for target in &panel.targets {
            let promql = context.expand(&variables.expand(&target.expr));
            let data = api
                .poll_for_data(&promql, ANSWER_WITHIN)
                .await
                .map_err(|no_data| {
                    anyhow::anyhow!(
                        "{:?} {}: `{promql}` returned no number; last answer {}",
                        panel.title,
                        target.ref_id,
                        no_data.last
                    )
                })?;
            let value = numbers(&serde_json::json!({"resultType": "vector", "result": data}))
                .first()
                .copied()
                .context("a number, just polled for")?;
            answers.push(Answer {
                panel: panel.title.clone(),
                ref_id: target.ref_id.clone(),
                promql,
                value,
            });
        }
    }
    // ANCHOR_END: row_answers
    Ok(answers)
}

/// The dashboard's default time range (`now-15m` → 15 minutes).
fn default_range(dashboard: &Dashboard) -> anyhow::Result<Duration> {
    let from = &dashboard.time.from;
    let spec = from
        .strip_prefix("now-")
        .with_context(|| format!("a relative range like now-15m, not {from:?}"))?;
    let digits = spec
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(spec.len());
    let (number, unit) = spec.split_at(digits);
    let number: u64 = number
        .parse()
        .with_context(|| format!("the number in {from:?}"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => anyhow::bail!("unit {other:?} in {from:?}"),
    };
    Ok(Duration::from_secs(number * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::{dashboard_file, load_dashboard};

    #[test]
    fn the_first_row_is_the_health_row_left_to_right() {
        let dashboard = load_dashboard(&dashboard_file()).unwrap();
        let titles: Vec<&str> = panels_in_row(&dashboard, FIRST_ROW)
            .iter()
            .map(|panel| panel.title.as_str())
            .collect();
        assert_eq!(
            titles,
            [
                "Target up",
                "Targets up of expected",
                "Login success ratio",
                "Requests in flight"
            ]
        );
    }

    #[test]
    fn the_default_range_is_read_from_the_dashboard() {
        let dashboard = load_dashboard(&dashboard_file()).unwrap();
        assert_eq!(
            default_range(&dashboard).unwrap(),
            Duration::from_secs(15 * 60)
        );
    }
}
