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
//! The queue is bounded in lines and in bytes: lines are short, but what a client
//! sends ends up in some of them, and a bound in lines alone lets long lines take
//! gigabytes. Whatever comes from a client is cut short before it is logged, too.
//!
//! Colour codes only go to a terminal: in a file or a log shipper they are noise.

use std::borrow::Cow;
use std::io::{self, IsTerminal as _, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::collector::ReadAtScrape;

// ANCHOR: queue_bounds
/// Lines the queue holds before new ones are dropped: at ~150 bytes a line, about
/// 1.5 MB, and several seconds of a flood's log lines.
pub const BUFFERED_LINES: usize = 10_000;

/// Bytes the queue holds before new lines are dropped, whatever their number: a
/// bound on the memory a stalled log reader can make the server hold.
pub const BUFFERED_BYTES: usize = 4 * 1024 * 1024;
// ANCHOR_END: queue_bounds

/// The filter when `RUST_LOG` is not set: one line per request and start-up events.
pub const DEFAULT_FILTER: &str = "info";

// ANCHOR: answered
/// The target of the per-request lines: `RUST_LOG=info,login_metrics::request=off`
/// keeps every other line and drops these.
pub const REQUEST_TARGET: &str = "login_metrics::request";

/// The line each answered request leaves: method, path, client address, status
/// and latency. Never a body (a login body holds a password), never a query
/// string, never a header's value. Written by the metrics layer as it counts the
/// request, so each request counted, 499s included, is logged once with the same
/// status.
pub fn answered(
    method: &str,
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

// ANCHOR: method
/// The longest method written to the log as it is. The standard methods have at
/// most seven letters; a client may send any token, of any length.
pub const METHOD_MAX: usize = 16;

/// A request's method as the log writes it: as it is up to [`METHOD_MAX`]
/// characters, cut there and marked with `…` beyond. (A method holds only
/// token characters: no spaces, quotes or line breaks to escape.)
#[must_use]
pub fn method(method: &Method) -> Cow<'static, str> {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::PATCH, "PATCH"),
        (Method::TRACE, "TRACE"),
    ];
    if let Some((_, name)) = STANDARD.iter().find(|(standard, _)| standard == method) {
        return Cow::Borrowed(name);
    }
    let name = method.as_str();
    match name.get(..METHOD_MAX) {
        Some(start) if name.len() > METHOD_MAX => Cow::Owned(format!("{start}…")),
        _ => Cow::Owned(name.to_owned()),
    }
}
// ANCHOR_END: method

// ANCHOR: init
/// The running log writer. Keep it alive for the life of the program: dropping it
/// flushes what is queued and stops the writer thread.
pub struct Logging {
    _writer: WorkerGuard,
    queue: LogQueue,
}

/// Installs the global subscriber: `RUST_LOG` (default [`DEFAULT_FILTER`]) to stdout,
/// through a queue bounded in lines and bytes, which drops what does not fit.
#[must_use]
pub fn init() -> Logging {
    let (queue, guard) = LogQueue::new(stdout_in_batches(), BUFFERED_LINES, BUFFERED_BYTES);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(queue.clone())
        .init();
    Logging {
        _writer: guard,
        queue,
    }
}
// ANCHOR_END: init

// ANCHOR: log_queue
/// The log's queue: [`tracing_appender::non_blocking()`], bounded in bytes as well
/// as in lines. Each line takes its place in both counts when it is queued, and
/// gives it back when the writer thread takes it out to write it; a line that does
/// not fit is dropped and counted.
#[derive(Clone)]
pub struct LogQueue {
    lines: NonBlocking,
    room: Arc<Room>,
}

/// What the queue holds now, what it may hold, and what it dropped.
#[derive(Debug)]
struct Room {
    lines: AtomicUsize,
    bytes: AtomicUsize,
    max_lines: usize,
    max_bytes: usize,
    dropped: AtomicUsize,
}

impl Room {
    /// Takes room for one line of `bytes`, or returns `false` (and takes none).
    fn take(&self, bytes: usize) -> bool {
        if self.lines.fetch_add(1, Ordering::AcqRel) >= self.max_lines {
            self.lines.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        if self.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > self.max_bytes {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.lines.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back the room of a line the writer thread has taken out.
    fn give_back(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.lines.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LogQueue {
    /// A queue of at most `max_lines` lines and `max_bytes` bytes, which a thread
    /// of its own writes out to `writer`; stopped when the guard is dropped.
    pub fn new(
        writer: impl Write + Send + 'static,
        max_lines: usize,
        max_bytes: usize,
    ) -> (Self, WorkerGuard) {
        let room = Arc::new(Room {
            lines: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_lines,
            max_bytes,
            dropped: AtomicUsize::new(0),
        });
        // A line holds its room until the writer thread takes it out of the
        // channel and writes it, so the channel never holds more lines than
        // the room allows and never drops one itself.
        let (lines, guard) = NonBlockingBuilder::default()
            .buffered_lines_limit(max_lines)
            .lossy(true)
            .thread_name("log-writer")
            .finish(Dequeued {
                inner: writer,
                room: Arc::clone(&room),
            });
        (Self { lines, room }, guard)
    }

    /// Lines dropped so far, because the queue had no room for them.
    #[must_use]
    pub fn dropped_lines(&self) -> usize {
        self.room.dropped.load(Ordering::Relaxed) + self.lines.error_counter().dropped_lines()
    }

    /// Bytes queued now, waiting for the writer thread.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.room.bytes.load(Ordering::Relaxed)
    }
}

/// Each formatted event comes as one `write` call: one line.
impl Write for LogQueue {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if self.room.take(line.len()) {
            self.lines.write(line)
        } else {
            self.room.dropped.fetch_add(1, Ordering::Relaxed);
            Ok(line.len())
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogQueue {
    type Writer = LogQueue;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The writer thread's end: gives back each line's room as the thread writes it.
/// The thread writes each line with one `write_all` call.
struct Dequeued<W> {
    inner: W,
    room: Arc<Room>,
}

impl<W: Write> Write for Dequeued<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, line: &[u8]) -> io::Result<()> {
        self.room.give_back(line.len());
        self.inner.write_all(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
// ANCHOR_END: log_queue

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
    /// queue had no room for, read from the queue's own count at each scrape.
    #[must_use]
    pub fn dropped_lines_collector(&self) -> ReadAtScrape {
        dropped_lines(self.queue.clone())
    }
}

fn dropped_lines(queue: LogQueue) -> ReadAtScrape {
    ReadAtScrape::counter(
        "log_lines_dropped_total",
        "Log lines dropped because the log queue was full.",
        move || queue.dropped_lines(),
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
        let (mut queue, guard) = LogQueue::new(Stalled(stalled), 4, BUFFERED_BYTES);
        let collector = dropped_lines(queue.clone());
        // One line is taken by the stalled writer thread, four wait in the queue; with
        // a lossy queue the other 95 return at once instead of waiting.
        for _ in 0..100 {
            queue.write_all(b"a line\n").unwrap();
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

    #[test]
    fn long_lines_fill_the_queue_by_their_bytes_not_their_number() {
        let (release, stalled) = std::sync::mpsc::channel();
        let max_bytes = 64 * 1024;
        let (mut queue, guard) = LogQueue::new(Stalled(stalled), BUFFERED_LINES, max_bytes);
        // 1,000 lines of 10 KiB: 10 MB by number, if only lines were counted.
        let line = [b'x'; 10 * 1024];
        for _ in 0..1000 {
            queue.write_all(&line).unwrap();
            assert!(
                queue.queued_bytes() <= max_bytes,
                "{}",
                queue.queued_bytes()
            );
        }
        // Six fit in 64 KiB, and one more is out with the stalled writer thread.
        let dropped = queue.dropped_lines();
        assert!((993..=994).contains(&dropped), "dropped {dropped} of 1,000");
        drop(release);
        drop(guard);
    }

    #[test]
    fn a_method_is_logged_as_it_is_up_to_16_characters_then_cut() {
        assert_eq!(method(&Method::POST), "POST");
        let custom = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method(&custom), "PROPFIND");
        let long = Method::from_bytes(&vec![b'X'; 400_000]).unwrap();
        assert_eq!(method(&long), format!("{}…", "X".repeat(METHOD_MAX)));
    }
}
