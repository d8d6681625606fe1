//! Metrics whose value lives elsewhere, read when Prometheus scrapes.
//!
//! Some state already has its own count: the hashing pool knows its queue, the
//! throttle how many clients it remembers, the log writer how many lines it
//! dropped. Copying each change into a gauge or counter would cost every request
//! something and could drift from the real figure; reading it once per scrape
//! costs nothing between scrapes and is always exact. [`ReadAtScrape`] is that
//! read, as a gauge or as a counter.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Opts};

/// A metric whose value comes from a closure at each scrape.
pub struct ReadAtScrape {
    desc: Desc,
    kind: Kind,
    read: Box<dyn Fn() -> usize + Send + Sync>,
}

/// What Prometheus is told the value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Goes up and down: a queue, a number of clients.
    Gauge,
    /// Only goes up: a count of events since start-up.
    Counter,
}

impl ReadAtScrape {
    /// A gauge `name` whose value is `read()` at each scrape.
    #[must_use]
    pub fn gauge(name: &str, help: &str, read: impl Fn() -> usize + Send + Sync + 'static) -> Self {
        Self::new(name, help, Kind::Gauge, Box::new(read))
    }

    /// A counter `name` (ending in `_total`) whose value is `read()` at each scrape;
    /// `read` must never go down.
    #[must_use]
    pub fn counter(
        name: &str,
        help: &str,
        read: impl Fn() -> usize + Send + Sync + 'static,
    ) -> Self {
        Self::new(name, help, Kind::Counter, Box::new(read))
    }

    fn new(name: &str, help: &str, kind: Kind, read: Box<dyn Fn() -> usize + Send + Sync>) -> Self {
        let desc = Desc::new(name.to_owned(), help.to_owned(), Vec::new(), HashMap::new())
            .expect("a valid metric description");
        Self { desc, kind, read }
    }

    /// The same metric with a reader that reads nothing: it names what a registry
    /// holds under this name, to unregister it.
    #[must_use]
    pub fn same_name(&self) -> Self {
        Self {
            desc: self.desc.clone(),
            kind: self.kind,
            read: Box::new(|| 0),
        }
    }
}

impl Collector for ReadAtScrape {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let opts = Opts::new(self.desc.fq_name.clone(), self.desc.help.clone());
        let value = (self.read)();
        match self.kind {
            Kind::Gauge => {
                let gauge = IntGauge::with_opts(opts).expect("the options of the description");
                gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
                gauge.collect()
            }
            Kind::Counter => {
                let counter = IntCounter::with_opts(opts).expect("the options of the description");
                counter.inc_by(u64::try_from(value).unwrap_or(u64::MAX));
                counter.collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    #[expect(clippy::float_cmp, reason = "small whole numbers are exact")]
    fn the_value_is_read_at_each_scrape_as_a_gauge_or_a_counter() {
        let state = Arc::new(AtomicUsize::new(3));
        let read = {
            let state = Arc::clone(&state);
            move || state.load(Ordering::SeqCst)
        };
        let gauge = ReadAtScrape::gauge("queued", "Waiting.", read.clone());
        let counter = ReadAtScrape::counter("dropped_total", "Dropped.", read);
        assert_eq!(
            gauge.collect()[0].get_metric()[0].get_gauge().get_value(),
            3.0
        );
        state.store(5, Ordering::SeqCst);
        assert_eq!(
            gauge.collect()[0].get_metric()[0].get_gauge().get_value(),
            5.0
        );
        let family = &counter.collect()[0];
        assert_eq!(family.name(), "dropped_total");
        assert_eq!(family.get_metric()[0].get_counter().get_value(), 5.0);
    }
}
