//! Logging that never makes a request wait.
//!
//! A login endpoint should leave a trail: one line per attempt (method, path, status,
//! latency, never a body). Written straight to stdout, that line costs a `write`
//! system call on the request path, and a slow consumer of the log (a full pipe, a
//! stalled log shipper) would stall every request behind it.
//!
//! So lines go to a bounded in-memory queue that one background thread writes out
//! ([`tracing_appender::non_blocking()`]). When the queue is full a line is **dropped
//! and counted**, never queued without bound and never waited for: the count is the
//! metric `log_lines_dropped_total`, so a lossy log is visible where you already look.
//!
//! Colour codes only go to a terminal: in a file or a log shipper they are noise.

use std::io::IsTerminal as _;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, Opts};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines the queue holds before new ones are dropped: at ~150 bytes a line, about
/// 1.5 MB, and several seconds of a flood's log lines.
pub const BUFFERED_LINES: usize = 10_000;

/// The filter when `RUST_LOG` is not set: one line per request and start-up events.
pub const DEFAULT_FILTER: &str = "info";

// ANCHOR: init
/// The running log writer. Keep it alive for the life of the program: dropping it
/// flushes what is queued and stops the writer thread.
pub struct Logging {
    _writer: WorkerGuard,
    dropped: ErrorCounter,
}

/// Installs the global subscriber: `RUST_LOG` (default [`DEFAULT_FILTER`]) to stdout,
/// through a bounded, lossy queue.
#[must_use]
pub fn init() -> Logging {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(stdout_in_batches());
    let dropped = writer.error_counter();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(writer)
        .init();
    Logging {
        _writer: guard,
        dropped,
    }
}
// ANCHOR_END: init

/// Standard output, written in batches: the writer thread takes every line queued,
/// then flushes once, so under load many lines go out in one `write` call, and when
/// idle each line goes out at once. (`std::io::stdout()` itself writes line by line.)
fn stdout_in_batches() -> Box<dyn std::io::Write + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        if let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() {
            return Box::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::fs::File::from(fd),
            ));
        }
    }
    Box::new(std::io::stdout())
}

impl Logging {
    /// A collector for `log_lines_dropped_total`, to register with the metrics.
    #[must_use]
    pub fn dropped_lines_collector(&self) -> DroppedLines {
        DroppedLines::new(self.dropped.clone())
    }
}

/// `log_lines_dropped_total`: lines the log queue had no room for, read from the
/// writer's own count at each scrape.
pub struct DroppedLines {
    count: ErrorCounter,
    desc: Desc,
}

impl DroppedLines {
    fn new(count: ErrorCounter) -> Self {
        let desc = Desc::new(
            "log_lines_dropped_total".to_owned(),
            "Log lines dropped because the log queue was full.".to_owned(),
            Vec::new(),
            std::collections::HashMap::new(),
        )
        .expect("a valid metric description");
        Self { count, desc }
    }
}

impl Collector for DroppedLines {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot =
            IntCounter::with_opts(Opts::new(self.desc.fq_name.clone(), self.desc.help.clone()))
                .expect("the same options as the description");
        snapshot.inc_by(u64::try_from(self.count.dropped_lines()).unwrap_or(u64::MAX));
        snapshot.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A writer that never accepts anything, like a log pipe nobody reads.
    struct Stalled(std::sync::mpsc::Receiver<()>);

    impl std::io::Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_log_queue_drops_and_counts_lines_instead_of_blocking() {
        let (release, stalled) = std::sync::mpsc::channel();
        let (mut writer, guard) = NonBlockingBuilder::default()
            .buffered_lines_limit(4)
            .lossy(true)
            .finish(Stalled(stalled));
        let collector = DroppedLines::new(writer.error_counter());
        // One line is taken by the stalled writer thread, four wait in the queue; with
        // a lossy queue the other 95 return at once instead of waiting.
        for _ in 0..100 {
            writer.write_all(b"a line\n").unwrap();
        }
        let families = collector.collect();
        let dropped = families[0].get_metric()[0].get_counter().get_value();
        assert!(
            (95.0..=96.0).contains(&dropped),
            "dropped {dropped} of 100 lines"
        );
        assert_eq!(families[0].name(), "log_lines_dropped_total");
        drop(release);
        drop(guard);
    }
}
