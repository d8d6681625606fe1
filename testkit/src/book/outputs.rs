//! An output block of the book, compared with what a fresh run printed.
//!
//! The book shows real output: times, addresses and counts as one run printed
//! them. What changes from run to run is masked in the comparison only, on both
//! sides, by [`Masks`]: each mask is a regular expression and the placeholder both
//! texts get where it matches, so the reader sees `date: Sat, 05 Dec 2026 ...` and
//! the test compares `date: [DATE]` with `date: [DATE]`. Everything else must be
//! equal, line for line (an excerpt may end with a line `...`, which stands for
//! the rest of the output).
//!
//! `LOGIN_METRICS_BLESS=1` (see [`BLESS_ENV`]) turns a comparison into a rewrite:
//! the fresh output replaces the block in its chapter. A normal `cargo test` never
//! writes to the book.

use std::fs;
use std::sync::Mutex;

use regex::Regex;
use snapbox::{Assert, IntoData as _, Redactions};

use super::blocks::{Block, Kind, Marker, output};
use super::book_src_dir;

/// Set to `1` to write fresh outputs into the book instead of comparing.
pub const BLESS_ENV: &str = "LOGIN_METRICS_BLESS";

/// What varies from run to run in one output block, and the placeholder each
/// variable part becomes on both sides of the comparison.
#[derive(Debug, Default)]
pub struct Masks {
    masks: Vec<(&'static str, Regex)>,
}

impl Masks {
    /// No masks: the output must be the same, byte for byte (trailing blank lines aside).
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a mask: every match of `pattern` (or of its capture group named
    /// `redacted`, when it has one) becomes `placeholder`, which must be written in
    /// brackets, in capitals (`[TIME]`).
    #[must_use]
    pub fn mask(mut self, placeholder: &'static str, pattern: &str) -> Self {
        let regex = Regex::new(pattern)
            .unwrap_or_else(|error| panic!("mask {placeholder}: {pattern}: {error}"));
        self.masks.push((placeholder, regex));
        self
    }

    /// An RFC 3339 time stamp as `tracing` prints it (`2026-12-05T21:35:05.835189Z`).
    #[must_use]
    pub fn log_time(self) -> Self {
        self.mask("[TIME]", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
    }

    /// The port of every loopback address (`127.0.0.1:5000` -> `127.0.0.1:[PORT]`).
    #[must_use]
    pub fn loopback_ports(self) -> Self {
        self.mask(
            "[PORT]",
            r"(?:127\.0\.0\.1|localhost|\[::1\]|0\.0\.0\.0):(?<redacted>\d+)",
        )
    }

    fn redactions(&self) -> Redactions {
        let mut redactions = Redactions::new();
        for (placeholder, regex) in &self.masks {
            redactions
                .insert(placeholder, regex.clone())
                .unwrap_or_else(|error| panic!("mask {placeholder}: {error}"));
        }
        redactions
    }

    /// `text` with every mask applied.
    #[must_use]
    pub fn apply(&self, text: &str) -> String {
        self.redactions().redact(text)
    }
}

/// Whether this run writes fresh outputs into the book ([`BLESS_ENV`]).
#[must_use]
pub fn blessing() -> bool {
    std::env::var(BLESS_ENV).is_ok_and(|value| value.trim() == "1")
}

/// Compares the block marked `<!-- output: NAME -->` with `fresh`, what a run just
/// printed, under `masks`; panics with a diff when they differ. Under
/// [`BLESS_ENV`]`=1` writes `fresh` into the block instead.
pub fn check_output(name: &str, fresh: &str, masks: &Masks) {
    let block = output(name);
    assert!(
        block.kind() == Kind::Output,
        "{}: `{name}` marks a ```{} block, not an output block",
        block.at(),
        block.language()
    );
    if blessing() {
        bless(&block, fresh);
        return;
    }
    let expected = masks.apply(trim_end(&block.text));
    let actual = trim_end(fresh).to_owned();
    let redactions = masks.redactions();
    // No path normalisation: `\"` in a JSON body is not a Windows path.
    let assert = Assert::new().redact_with(redactions).normalize_paths(false);
    if let Err(error) = assert.try_eq(
        Some(&format!("a fresh run, for {}", block.at())),
        actual.into_data(),
        expected.into_data(),
    ) {
        panic!(
            "{} (`<!-- output: {name} -->`) is not what a fresh run prints; \
             regenerate with `{BLESS_ENV}=1 cargo test --test book_runs`, or fix the code:\n{error}",
            block.at()
        );
    }
}

/// Text without trailing blank lines and spaces, with one final newline.
fn trim_end(text: &str) -> &str {
    text.trim_end()
}

/// Serialises rewrites of the book's files within one test binary.
static WRITING: Mutex<()> = Mutex::new(());

/// Writes `fresh` as the content of `block`, keeping the block's indentation.
fn bless(block: &Block, fresh: &str) {
    let _one_at_a_time = WRITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = book_src_dir().join(&block.file);
    let markdown = fs::read_to_string(&path).expect("the chapter is readable");
    // Re-read the block: another blessing may have moved it.
    let current = super::blocks::blocks_of(&block.file, &markdown)
        .into_iter()
        .find(|b| b.marker == block.marker && matches!(b.marker, Some(Marker::Output(_))))
        .expect("the block is still there");
    let indent: String = markdown[current.content.start..]
        .chars()
        .take_while(|c| *c == ' ')
        .collect();
    let mut content = String::new();
    for line in trim_end(fresh).lines() {
        if !line.is_empty() {
            content.push_str(&indent);
        }
        content.push_str(line);
        content.push('\n');
    }
    let rewritten = format!(
        "{}{content}{}",
        &markdown[..current.content.start],
        &markdown[current.content.end..]
    );
    fs::write(&path, rewritten).expect("the chapter is writable");
    crate::env::report(&format!(
        "blessed: {} (`{}`)",
        current.at(),
        match &current.marker {
            Some(Marker::Output(name)) => name.as_str(),
            _ => "",
        }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_apply_to_both_sides_and_keep_the_rest() {
        let masks = Masks::none().log_time().loopback_ports();
        assert_eq!(
            masks.apply("2026-12-05T21:35:05.835189Z INFO listening login=127.0.0.1:5000"),
            "[TIME] INFO listening login=127.0.0.1:[PORT]"
        );
        assert_eq!(
            masks.apply("2027-01-01T00:00:00.1Z INFO listening login=127.0.0.1:41234"),
            "[TIME] INFO listening login=127.0.0.1:[PORT]"
        );
    }

    #[test]
    fn a_mask_with_a_redacted_group_replaces_only_the_group() {
        let masks = Masks::none().mask("[N]", r#"_bucket\{le="[^+"]+"\} (?<redacted>\d+)"#);
        assert_eq!(
            masks.apply("x_bucket{le=\"0.1\"} 7\nx_bucket{le=\"+Inf\"} 7"),
            "x_bucket{le=\"0.1\"} [N]\nx_bucket{le=\"+Inf\"} 7"
        );
    }
}
