//! The Prometheus HTTP query API, as both Prometheus and VictoriaMetrics serve it:
//! `GET /api/v1/query`, `/api/v1/query_range` and `/api/v1/label/<name>/values`;
//! and Prometheus' `/api/v1/query_exemplars`.
//!
//! [`QueryApi`] is the one client the engine wrappers share
//! ([`Prometheus`](crate::harness::prometheus::Prometheus),
//! [`VictoriaMetrics`](crate::harness::victoria_metrics::VictoriaMetrics)), so a test can send
//! the same query to both and compare: `prometheus.api()` and `victoria.api()`.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::wait::{Check, TimedOut, poll};

/// How often a wait asks an engine again: often enough to see a 1 s scrape soon after it.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// A client of one engine's query API.
#[derive(Debug, Clone)]
pub struct QueryApi {
    name: &'static str,
    base_url: String,
    http: reqwest::Client,
}

impl QueryApi {
    /// A client of the engine `name` (for messages) at `base_url` (`http://IP:PORT`).
    #[must_use]
    pub fn new(name: &'static str, base_url: String, http: reqwest::Client) -> Self {
        Self {
            name,
            base_url,
            http,
        }
    }

    /// The engine's name in messages: `Prometheus`, `VictoriaMetrics`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// An instant query at the engine's current time; the `data.result` array.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Value> {
        let data = self.query_data(promql, None).await?;
        Ok(data.get("result").cloned().unwrap_or(Value::Null))
    }

    /// An instant query evaluated at `time` (Unix seconds); the `data.result` array.
    /// Comparing two engines needs a fixed time: "now" differs between two requests.
    pub async fn query_at(&self, promql: &str, time: f64) -> anyhow::Result<Value> {
        let data = self.query_data(promql, Some(time)).await?;
        Ok(data.get("result").cloned().unwrap_or(Value::Null))
    }

    /// A range query from `start` to `end` (Unix seconds) every `step`; the
    /// `data.result` array (a matrix: each series with its `values`).
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> anyhow::Result<Value> {
        let params = [
            ("query", promql.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{}", step.as_secs_f64())),
        ];
        let data = self.api_data("query_range", promql, &params).await?;
        Ok(data.get("result").cloned().unwrap_or(Value::Null))
    }

    /// `GET /api/v1/label/<label>/values?match[]=<selector>`: the values Grafana offers
    /// for a variable defined as `label_values(<selector>, <label>)`, sorted.
    pub async fn label_values(&self, label: &str, selector: &str) -> anyhow::Result<Vec<String>> {
        let params = [("match[]", selector.to_owned())];
        let data = self
            .api_data(&format!("label/{label}/values"), selector, &params)
            .await?;
        let mut values: Vec<String> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        values.sort();
        Ok(values)
    }

    /// `GET /api/v1/query_exemplars` for the series `selector` selects, from `start`
    /// to `end` (Unix seconds): the `data` array, one entry per series with its
    /// `seriesLabels` and its `exemplars` (each with `labels`, `value`, `timestamp`).
    /// Only a Prometheus started with exemplar storage keeps any.
    pub async fn query_exemplars(
        &self,
        selector: &str,
        start: f64,
        end: f64,
    ) -> anyhow::Result<Value> {
        let params = [
            ("query", selector.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
        ];
        self.api_data("query_exemplars", selector, &params).await
    }

    /// Polls the instant query `promql` until it returns at least one number that is
    /// not NaN, **zero included**, and returns that `data.result` array. Use it only
    /// where zero is a correct answer; where traffic was sent, use
    /// [`poll_for_nonzero`](Self::poll_for_nonzero). `Err` carries the last answer;
    /// the wrappers add their own report to it.
    pub async fn poll_for_data(&self, promql: &str, timeout: Duration) -> Result<Value, TimedOut> {
        self.poll_until(promql, timeout, |numbers| !numbers.is_empty())
            .await
    }

    /// Polls `promql` until at least one of its numbers is finite and not zero: the
    /// proof that traffic was counted. A rate over requests that were never recorded
    /// is 0, which [`poll_for_data`](Self::poll_for_data) would accept.
    pub async fn poll_for_nonzero(
        &self,
        promql: &str,
        timeout: Duration,
    ) -> Result<Value, TimedOut> {
        self.poll_until(promql, timeout, |numbers| {
            numbers.iter().any(|v| v.is_finite() && *v != 0.0)
        })
        .await
    }

    /// Polls the instant query `promql` until `accept` holds for its numbers (NaN left
    /// out), and returns the `data.result` array.
    pub async fn poll_until(
        &self,
        promql: &str,
        timeout: Duration,
        accept: impl Fn(&[f64]) -> bool,
    ) -> Result<Value, TimedOut> {
        let what = format!("an answer to `{promql}` from {}", self.name);
        poll(&what, timeout, POLL_EVERY, || async {
            match self.query_data(promql, None).await {
                Ok(data) if accept(&numbers(&data)) => {
                    Check::Met(data.get("result").cloned().unwrap_or(Value::Null))
                }
                Ok(data) => Check::NotYet(data.to_string()),
                Err(e) => Check::NotYet(format!("error: {e:#}")),
            }
        })
        .await
    }

    /// Polls the instant query `promql` until it returns exactly one series whose value
    /// is `expected` (within 1e-9); `Err` carries the last answer.
    pub async fn poll_for_value(
        &self,
        promql: &str,
        expected: f64,
        timeout: Duration,
    ) -> Result<Value, TimedOut> {
        let what = format!("`{promql}` = {expected} in {}", self.name);
        poll(&what, timeout, POLL_EVERY, || async {
            match self.query(promql).await {
                Ok(result) => match single_value(&result) {
                    Some(value) if (value - expected).abs() < 1e-9 => Check::Met(result),
                    _ => Check::NotYet(result.to_string()),
                },
                Err(e) => Check::NotYet(format!("error: {e:#}")),
            }
        })
        .await
    }

    /// [`poll_for_value`](Self::poll_for_value), for an engine without a report of
    /// its own to add.
    pub async fn wait_for_value(
        &self,
        promql: &str,
        expected: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.poll_for_value(promql, expected, timeout).await?;
        Ok(())
    }

    /// `GET path` (relative to the base URL); the JSON body of a 2xx answer.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        get_json(&self.http, &format!("{}{path}", self.base_url)).await
    }

    /// `GET path` as text (a `/metrics` page, for example).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        get_text(&self.http, &format!("{}{path}", self.base_url)).await
    }

    async fn query_data(&self, promql: &str, time: Option<f64>) -> anyhow::Result<Value> {
        let mut params = vec![("query", promql.to_owned())];
        if let Some(time) = time {
            params.push(("time", format!("{time:.3}")));
        }
        self.api_data("query", promql, &params).await
    }

    /// `GET /api/v1/<endpoint>` with `params`; the `data` of a successful answer.
    async fn api_data(
        &self,
        endpoint: &str,
        promql: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/{endpoint}", self.base_url);
        let response = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .with_context(|| format!("GET {url}?query={promql}"))?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| {
            format!(
                "{} query `{promql}`: HTTP {status} with a body that is not JSON",
                self.name
            )
        })?;
        if body["status"] != "success" {
            bail!(
                "{} query `{promql}` failed (HTTP {status}): {} {}",
                self.name,
                body["errorType"],
                body["error"]
            );
        }
        Ok(body["data"].clone())
    }
}

/// A non-empty result with at least one number that is not NaN (zero counts).
#[must_use]
pub fn has_data(data: &Value) -> bool {
    !numbers(data).is_empty()
}

/// Every number of a query's `data` (vector, matrix or scalar), NaN left out.
#[must_use]
pub fn numbers(data: &Value) -> Vec<f64> {
    match data["resultType"].as_str() {
        Some("vector" | "matrix") => defined_numbers(&data["result"]),
        Some("scalar") => sample_value(&data["result"])
            .filter(|v| !v.is_nan())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Every number of a `data.result` array, a vector's or a matrix's, **NaN
/// included**: a check that every number is zero must see a NaN too.
#[must_use]
pub fn result_numbers(result: &Value) -> Vec<f64> {
    result
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| match series.get("values") {
            Some(values) => values.as_array().cloned().unwrap_or_default(),
            None => vec![series["value"].clone()],
        })
        .filter_map(|sample| sample_value(&sample))
        .collect()
}

/// [`result_numbers`] without NaN: the numbers that mean something.
#[must_use]
pub fn defined_numbers(result: &Value) -> Vec<f64> {
    result_numbers(result)
        .into_iter()
        .filter(|v| !v.is_nan())
        .collect()
}

/// The number of a `[time, "value"]` pair.
#[must_use]
pub fn sample_value(sample: &Value) -> Option<f64> {
    sample
        .get(1)
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<f64>().ok())
}

/// The single value of an instant vector with exactly one series; `None` otherwise.
#[must_use]
pub fn single_value(result: &Value) -> Option<f64> {
    match result.as_array().map(Vec::as_slice) {
        Some([one]) => sample_value(&one["value"]),
        _ => None,
    }
}

/// `GET url`: the body of a 2xx answer, else an error with the status and the body.
pub(crate) async fn get_text(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}: {text}");
    }
    Ok(text)
}

/// `GET url`: the JSON body of a 2xx answer, else an error as [`get_text`]'s.
pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let text = get_text(http, url).await?;
    serde_json::from_str(&text)
        .with_context(|| format!("GET {url}: a 2xx answer with a body that is not JSON: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_means_a_number() {
        let vector = |v: &str| json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, v]}]});
        assert!(has_data(&vector("1")));
        assert!(has_data(&vector("0")));
        assert!(!has_data(&vector("NaN")));
        assert!(!has_data(&json!({"resultType": "vector", "result": []})));
        assert!(has_data(
            &json!({"resultType": "scalar", "result": [1.0, "2"]})
        ));
        assert!(has_data(
            &json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[1.0, "NaN"], [2.0, "3"]]}]})
        ));
        assert_eq!(
            numbers(
                &json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[1.0, "NaN"], [2.0, "3"]]}]})
            ),
            [3.0]
        );
        assert_eq!(numbers(&vector("0")), [0.0]);
        let result = json!([
            {"metric": {}, "value": [1.0, "NaN"]},
            {"metric": {}, "values": [[1.0, "0"], [2.0, "4"]]}
        ]);
        assert_eq!(result_numbers(&result).len(), 3);
        assert!(result_numbers(&result)[0].is_nan());
        assert_eq!(defined_numbers(&result), [0.0, 4.0]);
    }

    #[test]
    fn a_single_value_needs_exactly_one_series() {
        let one = json!([{"metric": {}, "value": [1.0, "2.5"]}]);
        assert_eq!(single_value(&one), Some(2.5));
        let two = json!([{"metric": {}, "value": [1.0, "1"]}, {"metric": {}, "value": [1.0, "2"]}]);
        assert_eq!(single_value(&two), None);
        assert_eq!(single_value(&json!([])), None);
    }
}
