//! Reading the Prometheus text exposition, as Prometheus does.
//!
//! The tests check a server's counters through what it serves on `/metrics`, the
//! way Prometheus sees them, not through accessors the server would carry only for
//! its tests: [`Scrape`] renders a server's registry and reads the login metrics
//! from the text, and [`sample`], [`samples`] and [`sum`] read any page (an
//! engine's own `/metrics`, an older server's).
//!
//! ```
//! use login_metrics::metrics::Metrics;
//! use login_metrics_testkit::exposition::ScrapeMetrics as _;
//!
//! let metrics = Metrics::new();
//! assert_eq!(metrics.scrape().latency_count(), 0);
//! ```

use axum::http::StatusCode;
use login_metrics::metrics::{Closed, Metrics, Refused};

/// The value of one series, matched exactly: `series` is the whole left-hand side
/// of the sample line, such as `login_requests_total{status_code="200"}`. `None`
/// when no line has it.
///
/// Exact matching matters: `text.contains("…{status_code=\"200\"} 1")` also
/// accepts 10, 15 and 100. The page may be OpenMetrics: an exemplar after the value
/// (`… 7 # {trace_id="…"} 1.0`) is not part of the sample.
#[must_use]
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    sample_lines(exposition).find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        if key == series {
            value.parse().ok()
        } else {
            None
        }
    })
}

/// The sample lines of a page, each without its OpenMetrics exemplar.
fn sample_lines(exposition: &str) -> impl Iterator<Item = &str> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split_once(" # ").map_or(line, |(sample, _)| sample))
}

/// Every sample of the metric `name`, whatever its labels.
#[must_use]
pub fn samples(exposition: &str, name: &str) -> Vec<f64> {
    sample_lines(exposition)
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None; // a longer name with this prefix
            }
            rest.rsplit_once(' ')
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        })
        .collect()
}

/// The sum of every sample of `name`; `None` when there is none.
#[must_use]
pub fn sum(exposition: &str, name: &str) -> Option<f64> {
    let values = samples(exposition, name);
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The login server's metrics as one scrape shows them, named after the metrics.
#[derive(Debug, Clone)]
pub struct Scrape {
    text: String,
}

impl Scrape {
    /// What `/metrics` would serve from `metrics` now.
    #[must_use]
    pub fn of(metrics: &Metrics) -> Self {
        Self::from_text(metrics.render())
    }

    /// A page read elsewhere (over HTTP).
    #[must_use]
    pub fn from_text(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }

    /// The whole page.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// One series, matched exactly (see [`sample`]).
    #[must_use]
    pub fn value(&self, series: &str) -> Option<f64> {
        sample(&self.text, series)
    }

    /// `login_requests_total{status_code="CODE"}`: zero for a code never answered
    /// (every code the server may answer exists from start-up; a test checks it).
    #[must_use]
    pub fn requests(&self, status: StatusCode) -> u64 {
        let series = format!(
            "login_requests_total{{status_code=\"{}\"}}",
            status.as_str()
        );
        self.value(&series).map_or(0, whole)
    }

    /// `login_request_latency_seconds_count`: requests timed.
    #[must_use]
    pub fn latency_count(&self) -> u64 {
        whole(self.required("login_request_latency_seconds_count"))
    }

    /// `login_requests_in_flight`.
    #[must_use]
    pub fn requests_in_flight(&self) -> u64 {
        whole(self.required("login_requests_in_flight"))
    }

    /// `login_connections_open`.
    #[must_use]
    pub fn connections_open(&self) -> u64 {
        whole(self.required("login_connections_open"))
    }

    /// `login_connections_closed_total{reason="REASON"}`.
    #[must_use]
    pub fn connections_closed(&self, reason: Closed) -> u64 {
        whole(self.required(&format!(
            "login_connections_closed_total{{reason=\"{}\"}}",
            reason.as_str()
        )))
    }

    /// `login_metrics_connections_refused_total{reason="REASON"}`: connections
    /// the metrics listener refused.
    #[must_use]
    pub fn metrics_connections_refused(&self, reason: Refused) -> u64 {
        whole(self.required(&format!(
            "login_metrics_connections_refused_total{{reason=\"{}\"}}",
            reason.as_str()
        )))
    }

    /// `login_unmatched_requests_total`.
    #[must_use]
    pub fn unmatched_requests(&self) -> u64 {
        whole(self.required("login_unmatched_requests_total"))
    }

    fn required(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no `{series}` in the exposition:\n{}", self.text))
    }
}

/// A counter or gauge that counts things: a whole number, never negative.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "checked: a whole number from 0 to 2^53"
)]
fn whole(value: f64) -> u64 {
    assert!(
        value.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&value),
        "{value} is not a count"
    );
    value as u64
}

/// `metrics.scrape()`: [`Scrape::of`] as a method of the server's registry.
pub trait ScrapeMetrics {
    /// What `/metrics` would serve now.
    fn scrape(&self) -> Scrape;
}

impl ScrapeMetrics for Metrics {
    fn scrape(&self) -> Scrape {
        Scrape::of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP login_requests_total Login requests answered, by HTTP status code.
# TYPE login_requests_total counter
login_requests_total{status_code=\"200\"} 10
login_requests_total{status_code=\"401\"} 1
login_request_latency_seconds_count 11
login_request_latency_seconds_count_extra 5
";

    #[test]
    fn samples_match_the_whole_series_and_the_whole_value() {
        assert_eq!(
            sample(EXPOSITION, r#"login_requests_total{status_code="200"}"#),
            Some(10.0)
        );
        assert_eq!(
            sample(EXPOSITION, r#"login_requests_total{status_code="401"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(EXPOSITION, "login_request_latency_seconds_count"),
            Some(11.0)
        );
        assert_eq!(
            sample(EXPOSITION, r#"login_requests_total{status_code="20"}"#),
            None
        );
        assert_eq!(sample(EXPOSITION, "login_requests_total"), None);
    }

    #[test]
    fn every_sample_of_a_name_whatever_its_labels_and_no_longer_name() {
        assert_eq!(samples(EXPOSITION, "login_requests_total"), [10.0, 1.0]);
        assert_eq!(sum(EXPOSITION, "login_requests_total"), Some(11.0));
        assert_eq!(
            samples(EXPOSITION, "login_request_latency_seconds_count"),
            [11.0]
        );
        assert_eq!(sum(EXPOSITION, "login_unknown"), None);
    }

    #[test]
    fn an_openmetrics_exemplar_is_not_part_of_the_sample() {
        let page = "login_requests_total{status_code=\"200\"} 7 # {trace_id=\"ab12\"} 1.0\n# EOF\n";
        assert_eq!(
            sample(page, r#"login_requests_total{status_code="200"}"#),
            Some(7.0)
        );
        assert_eq!(samples(page, "login_requests_total"), [7.0]);
    }

    #[test]
    fn a_scrape_reads_the_login_metrics_by_name() {
        let scrape = Scrape::from_text(EXPOSITION);
        assert_eq!(scrape.requests(StatusCode::OK), 10);
        assert_eq!(scrape.requests(StatusCode::IM_A_TEAPOT), 0);
        assert_eq!(scrape.latency_count(), 11);
    }

    #[test]
    fn a_fresh_registry_reads_zero_everywhere() {
        let scrape = Metrics::new().scrape();
        assert_eq!(scrape.requests_in_flight(), 0);
        assert_eq!(scrape.connections_open(), 0);
        assert_eq!(scrape.unmatched_requests(), 0);
        for reason in Closed::ALL {
            assert_eq!(scrape.connections_closed(reason), 0);
        }
        for reason in Refused::ALL {
            assert_eq!(scrape.metrics_connections_refused(reason), 0);
        }
    }
}
