//! The queries printed in the book, collected so that tests can run them.
//!
//! Every fenced code block whose info string starts with `promql` (any case) in
//! `book/src/**/*.md` is one query. The end-to-end tests send each of them to a
//! real Prometheus after generating traffic, so the book cannot show a query
//! that returns nothing.
//!
//! Conventions for writers, enforced by those tests:
//!
//! - One expression per block (it may span several lines).
//! - Grafana's variables (`$__rate_interval`, `$__interval`, `$__range`) may
//!   appear; the caller replaces them the way Grafana does before sending the
//!   query to Prometheus.
//! - A block that must not be run, such as a deliberately wrong query, is
//!   fenced as `text`, not `promql`.
//! - A block must return a non-zero value under the tests' traffic (good logins,
//!   wrong passwords, malformed bodies), since zero is what an uncounted request
//!   gives too. A query whose right answer under that traffic is 0 (a rate of
//!   server errors) is fenced ```` ```promql,expect-zero ```` and checked to be 0.
//! - A query about the blackbox exporter's probe (job `login_probe`), which only a
//!   Prometheus scraping a real exporter can answer, is fenced ```` ```promql,probe ````:
//!   `tests/probe.rs` runs it there, with the probe logging in, and requires a non-zero
//!   value; the other tests leave it out.
//! - A query of a native histogram is fenced ```` ```promql,native ````: the
//!   production server exports classic buckets only, so such a block is run
//!   against a Prometheus that ingests native histograms and keeps exemplars,
//!   scraping the minimal server written with `prometheus-client`
//!   (`tests/native_histograms.rs`), and every other block against one scraping
//!   the production server (`tests/prometheus_e2e.rs`).
//!
//! The other fenced blocks, what a reader types and what a run prints, are in
//! [`blocks`]; [`outputs`] compares an output block with a fresh run, and
//! [`shell`] runs a command block as the reader types it.
//!
//! ```no_run
//! for block in login_metrics_testkit::book::promql_blocks()? {
//!     println!("{}:{}: {}", block.file.display(), block.line, block.query);
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod blocks;
pub mod outputs;
pub mod shell;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::dashboard::QueryContext;
use crate::harness::prometheus::{Prometheus, TEST_INTERVAL};
use crate::panels::ANSWER_WITHIN;
use crate::promql::result_numbers;
use crate::traffic::Traffic;

/// The original tutorial's three queries, verbatim: they must keep working
/// against this server unchanged, so the book shows them and the tests run them.
pub const TUTORIAL_QUERIES: [&str; 3] = [
    r#"sum(rate(login_requests_total{status_code="200"}[1m]))"#,
    r#"sum(rate(login_requests_total{status_code=~"4.."}[1m]))"#,
    "rate(login_request_latency_seconds_sum[1m]) / rate(login_request_latency_seconds_count[1m])",
];

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// One fenced `promql` block of the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromqlBlock {
    /// The Markdown file the block is in.
    pub file: PathBuf,
    /// The 1-based line of the opening fence, for error messages.
    pub line: usize,
    /// The query, with surrounding whitespace removed.
    pub query: String,
    /// The fence says ```` ```promql,expect-zero ````: under the tests' traffic, which
    /// has no server errors, the query's correct answer is 0, and the test checks
    /// exactly that instead of a non-zero value.
    pub expect_zero: bool,
    /// The fence says ```` ```promql,probe ````: the query asks about the blackbox
    /// exporter's probe, and runs where one probes the server (`tests/probe.rs`).
    pub needs_probe: bool,
    /// The fence says ```` ```promql,native ````: the query reads a native histogram,
    /// and is run against a Prometheus that ingests them.
    pub native: bool,
}

/// `book/src` of this repository, where the chapters are.
///
/// The path is fixed when the crate is compiled, so it is meant for tests and
/// tools run from a checkout, not for an installed binary.
#[must_use]
pub fn book_src_dir() -> PathBuf {
    crate::repo_root().join("book").join("src")
}

/// Every `.md` file under `dir`, recursively, sorted by path.
pub fn markdown_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The `promql` blocks of this repository's book, in file order.
pub fn promql_blocks() -> io::Result<Vec<PromqlBlock>> {
    promql_blocks_in(&book_src_dir())
}

/// The `promql` blocks of every Markdown file under `dir`.
pub fn promql_blocks_in(dir: &Path) -> io::Result<Vec<PromqlBlock>> {
    let mut blocks = Vec::new();
    for file in markdown_files(dir)? {
        let text = fs::read_to_string(&file)?;
        blocks.extend(promql_blocks_of(&file, &text));
    }
    Ok(blocks)
}

/// The `promql` blocks of one Markdown text; `file` is only recorded.
#[must_use]
pub fn promql_blocks_of(file: &Path, markdown: &str) -> Vec<PromqlBlock> {
    let mut blocks = Vec::new();
    // (line of the opening fence, text so far, its info string) inside a promql block.
    let mut current: Option<(usize, String, String)> = None;
    for (event, range) in Parser::new_ext(markdown, Options::all()).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) if is_promql(&info) => {
                let line = markdown[..range.start].matches('\n').count() + 1;
                current = Some((line, String::new(), info.to_string()));
            }
            Event::Text(text) => {
                if let Some((_, query, _)) = current.as_mut() {
                    query.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((line, query, info)) = current.take() {
                    blocks.push(PromqlBlock {
                        file: file.to_path_buf(),
                        line,
                        query: query.trim().to_owned(),
                        expect_zero: has_attribute(&info, "expect-zero"),
                        needs_probe: has_attribute(&info, "probe"),
                        native: has_attribute(&info, "native"),
                    });
                }
            }
            _ => {}
        }
    }
    blocks
}

/// Sends every block of `blocks` to `prometheus` while `traffic` (if the blocks
/// count logins) keeps flowing, with Grafana's variables replaced, and checks that
/// each answers: a non-zero number, or exactly 0 for a block fenced `expect-zero`.
/// The error names the block's place.
pub async fn every_block_answers(
    prometheus: &Prometheus,
    blocks: Vec<PromqlBlock>,
    traffic: Option<&Traffic>,
) -> anyhow::Result<()> {
    // ANCHOR: book_blocks
    // Grafana's variables as a 5-minute panel of a 1 s-scrape data source sees them.
    let context = QueryContext::for_panel(Duration::from_secs(300), 300, TEST_INTERVAL);
    for block in blocks {
        let query = context.expand(&block.query);
        let place = format!("{}:{}: `{}`", block.file.display(), block.line, block.query);
        if block.expect_zero {
            let result = prometheus
                .wait_for_data(&query, ANSWER_WITHIN)
                .await
                .with_context(|| place.clone())?;
            let numbers = result_numbers(&result);
            anyhow::ensure!(
                numbers.iter().all(|v| *v == 0.0),
                "{place}: expected 0, got {numbers:?}"
            );
        } else {
            prometheus
                .wait_for_nonzero(&query, ANSWER_WITHIN)
                .await
                .with_context(|| format!("{place} returned no non-zero value"))?;
        }
        if let Some(traffic) = traffic {
            anyhow::ensure!(!traffic.failed(), "the traffic generator stopped early");
        }
    }
    // ANCHOR_END: book_blocks
    Ok(())
}

/// Whether a fence's info string (```` ```promql ````, ```` ```promql,foo ````)
/// names `promql` as the block's language, in any spelling (`PromQL`, `PROMQL`): a
/// block a writer meant as PromQL is run, never left out for its capitals.
fn is_promql(info: &str) -> bool {
    info.split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .is_some_and(|language| language.eq_ignore_ascii_case("promql"))
}

/// Whether the fence's attributes (after the language) include `attribute`.
fn has_attribute(info: &str, attribute: &str) -> bool {
    info.split(|c: char| c == ',' || c.is_whitespace())
        .skip(1)
        .any(|given| given == attribute)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Title

Some text.

```promql
sum(rate(login_requests_total[1m]))
```

```rust
let not_promql = 1;
```

- In a list:

  ```promql,expect-zero
  rate(login_request_latency_seconds_sum[1m])
    / rate(login_request_latency_seconds_count[1m])
  ```

~~~PromQL
up
~~~

```promql,probe
probe_success{job=\"login_probe\"}
```

```promql,native
histogram_count(login_request_latency_seconds)
```
";

    #[test]
    fn collects_only_promql_fences_with_their_lines() {
        let blocks = promql_blocks_of(Path::new("sample.md"), SAMPLE);
        let found: Vec<(usize, &str)> = blocks
            .iter()
            .map(|block| (block.line, block.query.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (5, "sum(rate(login_requests_total[1m]))"),
                (
                    15,
                    "rate(login_request_latency_seconds_sum[1m])\n  / rate(login_request_latency_seconds_count[1m])"
                ),
                (20, "up"),
                (24, r#"probe_success{job="login_probe"}"#),
                (28, "histogram_count(login_request_latency_seconds)"),
            ]
        );
        assert!(
            blocks
                .iter()
                .all(|block| block.file == Path::new("sample.md"))
        );
        let zero: Vec<bool> = blocks.iter().map(|block| block.expect_zero).collect();
        assert_eq!(zero, [false, true, false, false, false]);
        let probe: Vec<bool> = blocks.iter().map(|block| block.needs_probe).collect();
        assert_eq!(probe, [false, false, false, true, false]);
        let native: Vec<bool> = blocks.iter().map(|block| block.native).collect();
        assert_eq!(native, [false, false, false, false, true]);
    }

    #[test]
    fn the_language_must_be_exactly_promql() {
        assert!(is_promql("promql"));
        assert!(is_promql("promql,ignore"));
        assert!(is_promql("promql title=x"));
        assert!(is_promql("PromQL"));
        assert!(is_promql("PROMQL,ignore"));
        assert!(!is_promql("promqlx"));
        assert!(!is_promql("text"));
        assert!(!is_promql(""));
    }

    #[test]
    fn the_book_has_promql_blocks() {
        let blocks = promql_blocks().expect("book/src is readable");
        assert!(
            !blocks.is_empty(),
            "no ```promql block found under {}",
            book_src_dir().display()
        );
        assert!(blocks.iter().all(|block| !block.query.is_empty()));
    }
}
