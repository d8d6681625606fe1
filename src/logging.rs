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

use std::io::{self, IsTerminal as _, Write};
use std::net::IpAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::collector::ReadAtScrape;

/// Lines the queue holds before new ones are dropped: at ~150 bytes a line, about
/// 1.5 MB, and several seconds of a flood's log lines.
pub const BUFFERED_LINES: usize = 10_000;

/// The filter when `RUST_LOG` is not set: one line per request and start-up events.
pub const DEFAULT_FILTER: &str = "info";

// ANCHOR: answered
/// The target of the per-request lines: `RUST_LOG=info,login_metrics::request=off`
/// keeps every other line and drops these.
pub const REQUEST_TARGET: &str = "login_metrics::request";

/// The line each answered request leaves: method, path, client address, status
/// and latency. Never a body (a login body holds a password), never a query
/// string. Written by the metrics layer as it counts the request, so each
/// request counted, 499s included, is logged once with the same status.
pub fn answered(
    method: &Method,
    path: &str,
    peer: Option<IpAddr>,
    status: StatusCode,
    elapsed: Duration,
) {
    tracing::info!(
        target: REQUEST_TARGET,
        %method,
        path = %path,
        peer = peer.map(tracing::field::display),
        status = status.as_u16(),
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "answered"
    );
}
// ANCHOR_END: answered

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

/// How long the writer thread rests after writing a batch.
pub const WRITE_EVERY: Duration = Duration::from_millis(10);

/// Standard output, written in batches: the writer thread takes every line queued,
/// writes them with one `write` call, then rests for [`WRITE_EVERY`].
///
/// The rest is what makes the log cheap for requests. A request hands its line to
/// the queue; if the writer thread is asleep waiting for lines, the hand-over must
/// wake it: a system call and a context switch per line, as much as writing the
/// line. While it rests, handing over a line is a push to a queue, and the lines
/// pile up so that one `write` carries hundreds. A line that arrives when the
/// thread is idle is written at once; under load a line waits about 10 ms, and the
/// queue ([`BUFFERED_LINES`]) overflows only above a million lines a second.
fn stdout_in_batches() -> Paced<Box<dyn Write + Send>> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        if let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() {
            return Paced::new(
                Box::new(std::io::BufWriter::with_capacity(
                    64 * 1024,
                    std::fs::File::from(fd),
                )),
                WRITE_EVERY,
            );
        }
    }
    Paced::new(Box::new(std::io::stdout()), WRITE_EVERY)
}

/// A writer that rests after each `flush`, which the writer thread of
/// [`tracing_appender::non_blocking()`] calls once per batch of lines.
struct Paced<W> {
    inner: W,
    rest: Duration,
}

impl<W: Write> Paced<W> {
    fn new(inner: W, rest: Duration) -> Self {
        Self { inner, rest }
    }
}

impl<W: Write> Write for Paced<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = self.inner.flush();
        std::thread::sleep(self.rest);
        flushed
    }
}

impl Logging {
    /// `log_lines_dropped_total`, to register with the metrics: lines the log
    /// queue had no room for, read from the writer's own count at each scrape.
    #[must_use]
    pub fn dropped_lines_collector(&self) -> ReadAtScrape {
        dropped_lines(self.dropped.clone())
    }
}

fn dropped_lines(count: ErrorCounter) -> ReadAtScrape {
    ReadAtScrape::counter(
        "log_lines_dropped_total",
        "Log lines dropped because the log queue was full.",
        move || count.dropped_lines(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::core::Collector as _;
    use std::sync::mpsc::{Receiver, Sender, channel};

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

    /// A writer that hands each `write` call it gets to the test, as it happens.
    #[derive(Clone)]
    struct Recorded(Sender<Vec<u8>>);

    impl std::io::Write for Recorded {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Longer than any wait in these tests: a writer that does nothing for this
    /// long has failed.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A writer that flushes only when the test says so, as if every flush took
    /// until then: while it is held, the writer thread is busy, not waiting for lines.
    struct HeldFlush<W> {
        inner: W,
        flushing: Sender<()>,
        release: Receiver<()>,
    }

    impl<W: std::io::Write> std::io::Write for HeldFlush<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.inner.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let flushed = self.inner.flush();
            let _ = self.flushing.send(());
            let _ = self.release.recv_timeout(PATIENCE);
            flushed
        }
    }

    #[test]
    fn lines_arriving_while_the_writer_rests_go_out_together() {
        let (to_test, written) = channel();
        let (flushing, flushed) = channel();
        let (release, released) = channel();
        // The rest is a flush the test holds, not a length of time: what happens
        // during it does not depend on how fast this machine is.
        let held = HeldFlush {
            inner: std::io::BufWriter::with_capacity(64 * 1024, Recorded(to_test)),
            flushing,
            release: released,
        };
        let (mut writer, guard) = NonBlockingBuilder::default()
            .buffered_lines_limit(BUFFERED_LINES)
            .lossy(false)
            .finish(Paced::new(held, Duration::ZERO));
        // An idle writer writes a line at once, then rests.
        writer.write_all(b"first\n").unwrap();
        assert_eq!(written.recv_timeout(PATIENCE).unwrap(), b"first\n");
        flushed
            .recv_timeout(PATIENCE)
            .expect("the writer rests after its batch");
        // While it rests, lines pile up in the queue. (An idle writer would be
        // woken by each and write each on its own.)
        for line in 0..40 {
            writer
                .write_all(format!("line {line}\n").as_bytes())
                .unwrap();
        }
        release.send(()).unwrap();
        flushed
            .recv_timeout(PATIENCE)
            .expect("the writer rests after its second batch");
        let piles: Vec<Vec<u8>> = written.try_iter().collect();
        assert_eq!(
            piles.len(),
            1,
            "40 lines took {} writes after the first",
            piles.len()
        );
        let text = String::from_utf8_lossy(&piles[0]);
        assert_eq!(text.lines().count(), 40);
        assert!(text.starts_with("line 0\n") && text.ends_with("line 39\n"));
        drop(release);
        drop(guard);
    }

    #[test]
    fn the_writer_rests_after_each_flush() {
        let rest = Duration::from_millis(20);
        let mut paced = Paced::new(std::io::sink(), rest);
        let started = std::time::Instant::now();
        paced.flush().unwrap();
        assert!(started.elapsed() >= rest, "{:?}", started.elapsed());
    }

    #[test]
    fn a_full_log_queue_drops_and_counts_lines_instead_of_blocking() {
        let (release, stalled) = std::sync::mpsc::channel();
        let (mut writer, guard) = NonBlockingBuilder::default()
            .buffered_lines_limit(4)
            .lossy(true)
            .finish(Stalled(stalled));
        let collector = dropped_lines(writer.error_counter());
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
