//! What remote write reports about itself on Prometheus' own `/metrics`: how a
//! test sees that the pair of Step 9 keeps up with the long-term store.

use anyhow::Context;

use crate::exposition::{samples, sum};

/// What remote write reports about itself on Prometheus' `/metrics`, summed over every
/// `remote_write` queue.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RemoteWriteStats {
    /// Samples sent (`prometheus_remote_storage_samples_total`).
    pub sent: f64,
    /// Samples that failed for good (`prometheus_remote_storage_samples_failed_total`).
    pub failed: f64,
    /// Samples waiting in the queue (`prometheus_remote_storage_samples_pending`).
    pub pending: f64,
    /// Samples sent again after a recoverable error
    /// (`prometheus_remote_storage_samples_retried_total`).
    pub retried: f64,
    /// How far the slowest queue is behind: the newest sample Prometheus has
    /// (`prometheus_remote_storage_highest_timestamp_in_seconds`) minus the newest it
    /// sent (`prometheus_remote_storage_queue_highest_sent_timestamp_seconds`), in
    /// seconds; `None` before anything was sent.
    pub lag_seconds: Option<f64>,
}

/// The names of each figure, current first. Prometheus 2.23 renamed them (changelog of
/// 2.23.0: `succeeded_samples_total` became `samples_total`, `failed_samples_total`
/// became `samples_failed_total`, `pending_samples` became `samples_pending`); 2.42
/// and the 3.x releases use the new names. The old ones are read too, so that the same
/// check works on any Prometheus a reader runs.
pub const REMOTE_WRITE_METRICS: [(&str, &[&str]); 4] = [
    (
        "sent",
        &[
            "prometheus_remote_storage_samples_total",
            "prometheus_remote_storage_succeeded_samples_total",
        ],
    ),
    (
        "failed",
        &[
            "prometheus_remote_storage_samples_failed_total",
            "prometheus_remote_storage_failed_samples_total",
        ],
    ),
    (
        "pending",
        &[
            "prometheus_remote_storage_samples_pending",
            "prometheus_remote_storage_pending_samples",
        ],
    ),
    (
        "retried",
        &[
            "prometheus_remote_storage_samples_retried_total",
            "prometheus_remote_storage_retried_samples_total",
        ],
    ),
];

impl RemoteWriteStats {
    /// Reads the figures from a `/metrics` page. `Err` names a figure none of whose
    /// names appear, which means remote write is not configured.
    pub fn parse(exposition: &str) -> anyhow::Result<Self> {
        let mut values = [0.0_f64; 4];
        for (slot, (what, names)) in values.iter_mut().zip(REMOTE_WRITE_METRICS) {
            let found = names.iter().find_map(|name| sum(exposition, name));
            *slot = found.with_context(|| {
                format!(
                    "no remote write {what} figure ({}) on the page",
                    names.join(" or ")
                )
            })?;
        }
        let [sent, failed, pending, retried] = values;
        let highest = samples(
            exposition,
            "prometheus_remote_storage_highest_timestamp_in_seconds",
        )
        .into_iter()
        .fold(None, |max: Option<f64>, v| {
            Some(max.map_or(v, |m| m.max(v)))
        });
        let slowest_sent = samples(
            exposition,
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
        )
        .into_iter()
        .fold(None, |min: Option<f64>, v| {
            Some(min.map_or(v, |m| m.min(v)))
        });
        let lag_seconds = match (highest, slowest_sent) {
            (Some(highest), Some(sent)) if sent > 0.0 => Some((highest - sent).max(0.0)),
            _ => None,
        };
        Ok(Self {
            sent,
            failed,
            pending,
            retried,
            lag_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_write_figures_under_both_spellings() {
        let current = "\
# HELP prometheus_remote_storage_samples_total Total number of samples sent to remote storage.
prometheus_remote_storage_samples_total{remote_name=\"a\",url=\"u\"} 9500
prometheus_remote_storage_samples_total{remote_name=\"b\",url=\"v\"} 500
prometheus_remote_storage_samples_failed_total{remote_name=\"a\",url=\"u\"} 0
prometheus_remote_storage_samples_pending{remote_name=\"a\",url=\"u\"} 497
prometheus_remote_storage_samples_retried_total{remote_name=\"a\",url=\"u\"} 3
prometheus_remote_storage_samples_in_total 9997
prometheus_remote_storage_highest_timestamp_in_seconds 1.795686749e+09
prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name=\"a\",url=\"u\"} 1.795686747e+09
prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name=\"b\",url=\"v\"} 1.795686744e+09
";
        let stats = RemoteWriteStats::parse(current).unwrap();
        assert_eq!(
            stats,
            RemoteWriteStats {
                sent: 10_000.0,
                failed: 0.0,
                pending: 497.0,
                retried: 3.0,
                lag_seconds: Some(5.0),
            }
        );
        let old = "\
prometheus_remote_storage_succeeded_samples_total{queue=\"q\"} 7
prometheus_remote_storage_failed_samples_total{queue=\"q\"} 1
prometheus_remote_storage_pending_samples{queue=\"q\"} 2
prometheus_remote_storage_retried_samples_total{queue=\"q\"} 0
";
        let old = RemoteWriteStats::parse(old).unwrap();
        assert!((old.sent - 7.0).abs() < f64::EPSILON, "{old:?}");
        assert_eq!(old.lag_seconds, None);
        let err = RemoteWriteStats::parse("up 1\n").unwrap_err().to_string();
        assert!(err.contains("no remote write sent figure"), "{err}");
    }
}
