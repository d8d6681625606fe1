//! Grafana's interval arithmetic: `$__interval`, `$__rate_interval` and `$__range`
//! computed and formatted the way Grafana's Prometheus data source does before it
//! sends a panel's query, so that the tests send Prometheus the same `PromQL`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::promql::QueryApi;

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

/// A range query of the last `last` the way Grafana sends one for a panel in
/// `context`: start and end aligned to the step, which is the panel's interval.
pub async fn query_range_as_grafana(
    api: &QueryApi,
    promql: &str,
    context: &QueryContext,
    last: Duration,
) -> anyhow::Result<Value> {
    let step = context.interval.as_secs().max(1);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let end = now - now % step;
    let start = end.saturating_sub(last.as_secs());
    #[expect(
        clippy::cast_precision_loss,
        reason = "Unix seconds fit an f64 exactly"
    )]
    api.query_range(promql, start as f64, end as f64, Duration::from_secs(step))
        .await
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
}
