//! What the server logs, captured for a test.
//!
//! [`Captured`] sets a subscriber as the default of the current thread only, with
//! the server's filter and format (no colour codes). A test on tokio's
//! current-thread runtime (`#[tokio::test]`) polls the server's tasks, its
//! listeners included, on that thread, so it sees every line the server logs
//! while the tests around it, each on its own thread, see none of them.

use std::sync::{Arc, Mutex, PoisonError};

use login_metrics::logging::REQUEST_TARGET;

/// Everything logged on this thread while it lives.
pub struct Captured {
    text: Arc<Mutex<Vec<u8>>>,
    _default: tracing::subscriber::DefaultGuard,
}

impl Captured {
    /// Starts capturing at level `info` (the server's default filter).
    #[must_use]
    pub fn start() -> Self {
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&text);
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        Self {
            text,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Every line so far.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let text = self.text.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The per-request lines so far (target [`REQUEST_TARGET`]).
    #[must_use]
    pub fn request_lines(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.contains(REQUEST_TARGET))
            .collect()
    }
}

/// Where the subscriber writes: the shared buffer.
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The value of `key=VALUE` in a log line (`login=127.0.0.1:5000`), up to the next
/// space; `None` when the line has no such field.
///
/// ```
/// use login_metrics_testkit::logs::field;
///
/// let line = "INFO login_server: listening login=127.0.0.1:5000 metrics=127.0.0.1:8000";
/// assert_eq!(field(line, "metrics"), Some("127.0.0.1:8000"));
/// assert_eq!(field(line, "peer"), None);
/// ```
#[must_use]
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..].split_whitespace().next()
}

/// [`field`], parsed as a socket address; panics, naming the line, when it is
/// missing or not an address.
#[must_use]
pub fn address_field(line: &str, key: &str) -> std::net::SocketAddr {
    field(line, key)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no address {key}= in {line:?}"))
}
