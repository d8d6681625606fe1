//! Waiting for something to happen, with a deadline and a message: the one
//! polling loop of the tests, the harness and the lab.
//!
//! A test that checks "X happens" waits for X rather than sleeping a fixed time
//! and hoping: it passes as soon as X is seen, and fails after a deadline long
//! enough for a busy machine, saying what it waited for and what it saw last.
//!
//! - [`poll`] looks with an async check, [`poll_blocking`] with a blocking one; each
//!   look answers [`Check::Met`] with a value, or [`Check::NotYet`] with what it saw.
//! - [`eventually`] is the short form for in-process state: a condition on a
//!   server's counters, looked at every 10 ms for up to 10 s, and a panic otherwise.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// What one look at the condition found.
#[derive(Debug)]
pub enum Check<T> {
    /// It holds: the value the wait returns.
    Met(T),
    /// Not yet: what was seen instead, for the message if time runs out.
    NotYet(String),
}

/// A wait that ran out of time.
#[derive(Debug, Clone)]
pub struct TimedOut {
    /// What was waited for.
    pub what: String,
    /// How long.
    pub within: Duration,
    /// What the last look saw.
    pub last: String,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not {} within {:?}; last seen: {}",
            self.what, self.within, self.last
        )
    }
}

impl std::error::Error for TimedOut {}

/// Looks with `check` every `every` until it is met, and returns its value; after
/// `within`, the last thing seen, as [`TimedOut`]. The first look is immediate, and
/// there is always one look after the deadline has passed.
pub async fn poll<T, F, Fut>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    let deadline = Deadline::new(what, within);
    loop {
        let past = deadline.passed();
        if let Some(done) = deadline.settle(check().await, past) {
            return done;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll`] for a check that blocks: for code on a thread of its own, or a test
/// without a runtime.
pub fn poll_blocking<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Check<T>,
) -> Result<T, TimedOut> {
    let deadline = Deadline::new(what, within);
    loop {
        let past = deadline.passed();
        if let Some(done) = deadline.settle(check(), past) {
            return done;
        }
        std::thread::sleep(every);
    }
}

/// When a wait ends, and what it says then.
struct Deadline<'a> {
    what: &'a str,
    within: Duration,
    at: Instant,
}

impl<'a> Deadline<'a> {
    fn new(what: &'a str, within: Duration) -> Self {
        Self {
            what,
            within,
            at: Instant::now() + within,
        }
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The end of the wait, if this look (taken `past` the deadline or not) ends it.
    fn settle<T>(&self, look: Check<T>, past: bool) -> Option<Result<T, TimedOut>> {
        match look {
            Check::Met(value) => Some(Ok(value)),
            Check::NotYet(last) if past => Some(Err(TimedOut {
                what: self.what.to_owned(),
                within: self.within,
                last,
            })),
            Check::NotYet(_) => None,
        }
    }
}

/// How long [`eventually`] waits: long enough for a busy machine, short enough that
/// a server that never acts fails the test.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Waits until `condition` holds, looking every 10 ms for up to [`PATIENCE`];
/// panics with `what` otherwise. For state in this process, which is cheap to look at.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let checked = poll(what, PATIENCE, Duration::from_millis(10), || {
        let holds = condition();
        async move {
            if holds {
                Check::Met(())
            } else {
                Check::NotYet("it did not hold".to_owned())
            }
        }
    })
    .await;
    if let Err(timed_out) = checked {
        panic!("timed out waiting until {}", timed_out.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_returns_the_value_once_the_check_is_met() {
        let mut looks = 0;
        let value = poll(
            "three looks",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                looks += 1;
                let seen = looks;
                async move {
                    if seen == 3 {
                        Check::Met(seen)
                    } else {
                        Check::NotYet(format!("{seen} looks"))
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(value, 3);
    }

    #[test]
    fn a_wait_that_runs_out_says_what_it_waited_for_and_saw_last() {
        let mut looks = 0;
        let timed_out = poll_blocking(
            "the impossible",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || -> Check<()> {
                looks += 1;
                Check::NotYet(format!("look {looks}"))
            },
        )
        .unwrap_err();
        assert!(looks >= 2, "it looked again after the first: {looks}");
        assert_eq!(timed_out.last, format!("look {looks}"));
        let message = timed_out.to_string();
        assert!(
            message.starts_with("not the impossible within 30ms; last seen: look"),
            "{message}"
        );
    }
}
