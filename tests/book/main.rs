//! The book check: what `mdbook build` lets through, and what a reader would
//! find wrong. One module per concern:
//!
//! - [`includes`]: an include whose file is missing, whose anchor has no
//!   `ANCHOR:` or no matching `ANCHOR_END:` line, whose anchored section is empty,
//!   or that uses line numbers (listings are cut by named anchor only, so they
//!   survive edits). `mdbook build` exits 0 on all of these: a missing file leaves
//!   the directive in the HTML and a misspelled anchor renders an empty listing.
//! - [`links`]: an included listing without its file caption (the line above the
//!   code block must be `<span class="filename">Filename: PATH</span>`, PATH being
//!   the included file relative to the repository, as the Rust book names its
//!   listings); a relative link or image that points at nothing, or at a page that
//!   `SUMMARY.md` does not list (such a page is never rendered).
//! - [`build`]: `mdbook build` exiting non-zero, printing any `ERROR` or `WARN`
//!   line, or leaving `{{#` in the HTML it writes. It needs mdBook 0.5 on PATH;
//!   without it the test prints how to install it and skips that part, except
//!   under CI (`CI` set), where a missing mdBook is a failure.
//! - [`markers`]: an output block (what a command prints) or a command block (what
//!   a reader types) without the marker that says which test checks it, or why none
//!   can (`testkit/src/book/blocks.rs` defines them); a marked name that no test
//!   mentions.
//!
//! The outputs and commands themselves run in `tests/book_runs/`, the numbers in
//! the prose in `tests/book_numbers.rs`.

mod build;
mod includes;
mod links;
mod markers;

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// A preprocessor directive, matched the way mdBook's `links` preprocessor does:
/// group 1 is the kind, group 2 the path and its properties. An escaped
/// directive (`\{{#include ...}}`) matches the first alternative and is skipped.
static DIRECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\\{\{\#.*\}\}|\{\{\s*\#([a-zA-Z0-9_]+)\s+([^}]+)\}\}").expect("valid regex")
});

pub(crate) fn book_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("book")
}

/// Line number (1-based) of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

pub(crate) fn describe(file: &Path, line: usize) -> String {
    let shown = file
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(file);
    format!("{}:{line}", shown.display())
}

pub(crate) fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Deliberately broken books in temporary directories, for the checkers' own tests
// ---------------------------------------------------------------------------

/// A tiny book source: `src/code.rs` with one anchor, and `src/chapter.md`
/// holding `chapter` (plus a SUMMARY listing it).
pub(crate) fn scratch_book(chapter: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("images")).unwrap();
    fs::write(
        src.join("code.rs"),
        "fn before() {}\n// ANCHOR: good\nfn good() {}\n// ANCHOR_END: good\n\
         // ANCHOR: twice\nfn a() {}\n// ANCHOR_END: twice\n// ANCHOR: twice\nfn b() {}\n// ANCHOR_END: twice\n\
         // ANCHOR: unclosed\nfn c() {}\n",
    )
    .unwrap();
    fs::write(
        src.join("config.yml"),
        "# ANCHOR: yaml\nkey: value\n# ANCHOR_END: yaml\n",
    )
    .unwrap();
    fs::write(src.join("images/diagram.svg"), "<svg/>").unwrap();
    fs::write(
        src.join("SUMMARY.md"),
        "# Summary\n\n- [Chapter](chapter.md)\n",
    )
    .unwrap();
    fs::write(src.join("unlisted.md"), "# Not in the summary\n").unwrap();
    fs::write(src.join("chapter.md"), chapter).unwrap();
    dir
}

pub(crate) fn assert_one_problem_mentioning(problems: &[String], needle: &str) {
    assert_eq!(
        problems.len(),
        1,
        "expected exactly one problem, got {problems:#?}"
    );
    assert!(
        problems[0].contains(needle),
        "the problem should mention `{needle}`: {}",
        problems[0]
    );
}
