//! Markers: every block that shows what a command prints, and every command a
//! reader is told to type, says which test checks it or why none can.
//!
//! Which blocks need which marker is decided by their language
//! (`testkit/src/book/blocks.rs`): an output block (`text`, `console`, `json`,
//! `output` or none) needs `<!-- output: NAME -->` or `<!-- not-output: REASON -->`
//! on the line above it, a command block (`sh`, `bash`, `shell`)
//! `<!-- command: NAME -->` or `<!-- not-run: REASON -->`. A listing (`rust`,
//! `yaml`, `promql`, ...) takes none. Every NAME must be mentioned, as a string
//! literal, by a file under `tests/`: that test finds the block by its name
//! (`book::blocks::output`, `book::shell::script`) and checks it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use login_metrics_testkit::book::blocks::{Block, Kind, Marker, blocks_in, marker_of};
use login_metrics_testkit::book::{TUTORIAL_QUERIES, book_src_dir, markdown_files, promql_blocks};
use login_metrics_testkit::repo_root;

use crate::{assert_no_problems, assert_one_problem_mentioning, scratch_book};

/// Every block whose marker is missing, of the wrong kind or without a reason.
fn marker_problems(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    for block in blocks {
        let at = block.at();
        match (block.kind(), &block.marker) {
            (Kind::Output, Some(Marker::Output(name) | Marker::NotOutput(name)))
            | (Kind::Command, Some(Marker::Command(name) | Marker::NotRun(name))) => {
                if name.is_empty() {
                    problems.push(format!("{at}: a marker without a name or a reason"));
                }
            }
            (Kind::Listing, None) => {}
            (Kind::Output, _) => problems.push(format!(
                "{at}: a ```{} block shows output; put `<!-- output: CHAPTER/NAME -->` on the \
                 line above it and check it in a test (tests/book_runs/), or \
                 `<!-- not-output: REASON -->` if it shows no run",
                block.language()
            )),
            (Kind::Command, _) => problems.push(format!(
                "{at}: a ```{} block is a command a reader types; put \
                 `<!-- command: CHAPTER/NAME -->` on the line above it and run it in a test \
                 (tests/book_runs/), or `<!-- not-run: REASON -->` if it cannot run there",
                block.language()
            )),
            (Kind::Listing, Some(marker)) => problems.push(format!(
                "{at}: a ```{} block is a listing, and takes no marker ({marker:?})",
                block.language()
            )),
        }
    }
    problems
}

/// Markers that mark no block: the next non-blank line after each is not a fence.
fn stray_markers(src: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for md in markdown_files(src).expect("the book's source directory is readable") {
        let text = fs::read_to_string(&md).expect("Markdown files are UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            if marker_of(line).is_none() {
                continue;
            }
            let next = lines[index + 1..].iter().find(|l| !l.trim().is_empty());
            if !next.is_some_and(|l| l.trim_start().starts_with("```")) {
                problems.push(format!(
                    "{}:{}: `{}` is not followed by a fenced block",
                    md.strip_prefix(src).unwrap_or(&md).display(),
                    index + 1,
                    line.trim()
                ));
            }
        }
    }
    problems
}

/// The names of the marked blocks, with where each is, and every name used twice.
fn names(blocks: &[Block]) -> (BTreeMap<String, String>, Vec<String>) {
    let mut found = BTreeMap::new();
    let mut twice = Vec::new();
    for block in blocks {
        if let Some(Marker::Output(name) | Marker::Command(name)) = &block.marker
            && let Some(before) = found.insert(name.clone(), block.at())
        {
            twice.push(format!("`{name}` marks {before} and {}", block.at()));
        }
    }
    (found, twice)
}

/// The Rust files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).expect("tests/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn every_output_and_command_block_carries_its_marker() {
    let blocks = blocks_in(&book_src_dir()).expect("book/src is readable");
    let mut problems = marker_problems(&blocks);
    problems.extend(stray_markers(&book_src_dir()));
    problems.extend(names(&blocks).1);
    assert_no_problems("book markers", &problems);
}

#[test]
fn every_marked_output_and_command_is_checked_by_a_test() {
    let blocks = blocks_in(&book_src_dir()).expect("book/src is readable");
    let sources: String = rust_files(&repo_root().join("tests"))
        .iter()
        .map(|file| fs::read_to_string(file).expect("a test file is UTF-8"))
        .collect();
    let unchecked: Vec<String> = names(&blocks)
        .0
        .into_iter()
        .filter(|(name, _)| !sources.contains(&format!("\"{name}\"")))
        .map(|(name, at)| format!("{at}: no file under tests/ checks `{name}`"))
        .collect();
    assert_no_problems("unchecked book blocks", &unchecked);
}

#[test]
fn the_book_shows_the_tutorials_three_queries_as_promql_blocks() {
    let queries: Vec<String> = promql_blocks()
        .expect("book/src is readable")
        .into_iter()
        .map(|block| block.query)
        .collect();
    for tutorial in TUTORIAL_QUERIES {
        assert!(
            queries.iter().any(|query| query == tutorial),
            "no ```promql block holds `{tutorial}` verbatim; found {queries:#?}"
        );
    }
}

fn problems_of(chapter: &str) -> Vec<String> {
    let book = scratch_book(chapter);
    let src = book.path().join("src");
    let mut problems = marker_problems(&blocks_in(&src).unwrap());
    problems.extend(stray_markers(&src));
    problems
}

#[test]
fn checker_accepts_marked_blocks_and_unmarked_listings() {
    let chapter = "<!-- command: scratch/run -->\n\n```sh\ncargo run\n```\n\n\
                   <!-- output: scratch/printed -->\n\n```text\nhello\n```\n\n\
                   <!-- not-output: a query that must not run -->\n```text\nrate(x[1m])\n```\n\n\
                   <!-- not-run: needs Grafana -->\n```bash\nopen http://localhost:3000\n```\n\n\
                   ```yaml\nkey: value\n```\n\n```promql\nup\n```\n";
    assert_no_problems("marked blocks", &problems_of(chapter));
}

#[test]
fn checker_detects_unmarked_outputs_and_commands() {
    assert_one_problem_mentioning(&problems_of("```text\nhello\n```\n"), "shows output");
    assert_one_problem_mentioning(&problems_of("```\nhello\n```\n"), "shows output");
    assert_one_problem_mentioning(&problems_of("```json\n{}\n```\n"), "shows output");
    assert_one_problem_mentioning(&problems_of("```sh\ncargo run\n```\n"), "a reader types");
    // A command's marker does not do for an output, nor the other way round.
    assert_one_problem_mentioning(
        &problems_of("<!-- command: scratch/x -->\n```text\nhello\n```\n"),
        "shows output",
    );
    assert_one_problem_mentioning(
        &problems_of("<!-- output: scratch/x -->\n```sh\ncargo run\n```\n"),
        "a reader types",
    );
    assert_one_problem_mentioning(
        &problems_of("<!-- output: scratch/x -->\n```rust\nfn f() {}\n```\n"),
        "takes no marker",
    );
    assert_one_problem_mentioning(
        &problems_of("<!-- output: scratch/x -->\n\nA paragraph.\n\n```rust\nfn f() {}\n```\n"),
        "not followed by a fenced block",
    );
}
