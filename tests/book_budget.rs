//! The book's reading budgets, in words of prose.
//!
//! A reader of part one wants a working `/metrics`, a query answered by
//! Prometheus and a dashboard, soon; part two may go deep but not on and on. So
//! this test counts the prose of every chapter, in the order `SUMMARY.md` lists
//! them, and fails when:
//!
//! - the first `/metrics` output comes after more than 2,500 words of the book,
//!   the first answer of a Prometheus query after 4,000, the first dashboard after
//!   7,000, counted from the start of the book (the introduction) in reading order;
//! - a chapter of part one is longer than 4,000 words, or one of part two longer
//!   than 6,000 (split it);
//! - the prose tells the book's own history or notes about its making ("used to",
//!   "issue 12", "will be replaced") instead of what the code is and does.
//!
//! **Prose** is what mdBook renders as text: paragraphs, headings, lists, tables
//! and inline code. Fenced code blocks (and so every `{{#include}}`, which always
//! sits in one) and raw HTML (figures, captions of listings, comments) are not
//! prose. A word is a run of non-space characters with a letter or a digit in it.
//!
//! **Where the firsts are** is marked in the Markdown with an HTML comment, which
//! mdBook leaves out of the page, placed right after the output it marks:
//! `<!-- budget: first-metrics-output -->`, `<!-- budget: first-query-result -->`
//! and `<!-- budget: first-dashboard -->`. Each must appear exactly once; a missing
//! or repeated marker fails the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use login_metrics_testkit::book::book_src_dir;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use regex::Regex;

/// The markers, each with the most words of the book that may come before it.
const FIRSTS: [(&str, usize); 3] = [
    ("first-metrics-output", 2_500),
    ("first-query-result", 4_000),
    ("first-dashboard", 7_000),
];
/// The title of each part in `SUMMARY.md` (its first words), and the most words of
/// prose a chapter of it may hold.
const PART_BUDGETS: [(&str, usize); 2] = [("Part one", 4_000), ("Part two", 6_000)];

/// History and notes about the making of the book, which it does not tell: each
/// pattern with what it is.
const BANNED: [(&str, &str); 8] = [
    (r"(?i)\bused to\b", "history"),
    (r"(?i)\bwas replaced\b", "history"),
    (
        r"(?i)\b(?:earlier|first|old|older|previous) version\b",
        "history",
    ),
    (
        r"(?i)\bnow (?:also|writes|reach|reaches|says|does|wraps)\b",
        "history",
    ),
    (
        r"(?i)\bissue\s*#?\d+",
        "a note about the project's own process",
    ),
    (
        r"(?i)\banother engineer",
        "a note about the project's own process",
    ),
    (
        r"(?i)\bwill be (?:replaced|re-?measured|updated)\b",
        "a promise of a future run",
    ),
    (
        r"(?i)\bwe propose\b",
        "a note about the project's own process",
    ),
];

static MARKER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<!--\s*budget:\s*([\w-]+)\s*-->").expect("valid regex"));

/// One chapter, as `SUMMARY.md` lists it.
#[derive(Debug)]
struct Chapter {
    /// Relative to `book/src`.
    path: PathBuf,
    /// The part it belongs to (`None` before the first part title).
    part: Option<String>,
    text: String,
}

/// The chapters in reading order, each with the part whose title precedes it.
fn chapters(src: &Path) -> Vec<Chapter> {
    let summary = fs::read_to_string(src.join("SUMMARY.md")).expect("SUMMARY.md");
    let mut part = None;
    let mut in_part_title = false;
    let mut chapters = Vec::new();
    for event in Parser::new(&summary) {
        match event {
            Event::Start(Tag::Heading { .. }) => {
                in_part_title = true;
                part = Some(String::new());
            }
            Event::End(TagEnd::Heading(_)) => in_part_title = false,
            Event::Text(text) if in_part_title => {
                if let Some(title) = part.as_mut() {
                    title.push_str(&text);
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) if !dest_url.is_empty() => {
                let path = PathBuf::from(dest_url.as_ref());
                let text = fs::read_to_string(src.join(&path))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                chapters.push(Chapter {
                    path,
                    part: part.clone().filter(|title| title != "Summary"),
                    text,
                });
            }
            _ => {}
        }
    }
    chapters
}

/// The options mdBook renders with, smart punctuation aside (it would split
/// words such as "don't" into several text events).
fn options() -> Options {
    Options::all() - Options::ENABLE_SMART_PUNCTUATION
}

/// The runs of prose in `markdown[..end]`: consecutive text and inline code
/// outside code blocks, joined, each with the line it starts on.
fn prose_before(markdown: &str, end: usize) -> Vec<(usize, String)> {
    let mut runs = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut in_code_block = false;
    for (event, range) in Parser::new_ext(markdown, options()).into_offset_iter() {
        if range.start >= end {
            break;
        }
        let inline = matches!(
            event,
            Event::Text(_)
                | Event::Code(_)
                | Event::SoftBreak
                | Event::HardBreak
                | Event::Start(Tag::Emphasis | Tag::Strong | Tag::Strikethrough | Tag::Link { .. })
                | Event::End(
                    TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough | TagEnd::Link
                )
        );
        if !inline {
            runs.extend(current.take());
        }
        match event {
            Event::Start(Tag::CodeBlock(_)) => in_code_block = true,
            Event::End(TagEnd::CodeBlock) => in_code_block = false,
            Event::Text(text) | Event::Code(text) if !in_code_block => {
                let line = markdown[..range.start].matches('\n').count() + 1;
                current
                    .get_or_insert_with(|| (line, String::new()))
                    .1
                    .push_str(&text);
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, run)) = current.as_mut() {
                    run.push(' ');
                }
            }
            _ => {}
        }
    }
    runs.extend(current);
    runs
}

/// The words of prose in `markdown[..end]`.
fn prose_words_before(markdown: &str, end: usize) -> usize {
    prose_before(markdown, end)
        .iter()
        .map(|(_, run)| count_words(run))
        .sum()
}

fn prose_words(markdown: &str) -> usize {
    prose_words_before(markdown, markdown.len())
}

fn count_words(text: &str) -> usize {
    text.split_whitespace()
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .count()
}

/// The prose of `markdown`, run by run, with the line each starts on.
fn prose_of(markdown: &str) -> Vec<(usize, String)> {
    prose_before(markdown, markdown.len())
}

/// Where each marker is: the words of the book before it, and the chapter.
fn markers(chapters: &[Chapter]) -> Vec<(String, usize, PathBuf)> {
    let mut found = Vec::new();
    let mut before = 0;
    for chapter in chapters {
        for captures in MARKER.captures_iter(&chapter.text) {
            let at = captures.get(0).expect("the whole match").start();
            found.push((
                captures[1].to_owned(),
                before + prose_words_before(&chapter.text, at),
                chapter.path.clone(),
            ));
        }
        before += prose_words(&chapter.text);
    }
    found
}

fn word_table(chapters: &[Chapter]) -> String {
    use std::fmt::Write as _;
    let mut table = String::new();
    let mut total = 0;
    for chapter in chapters {
        let words = prose_words(&chapter.text);
        total += words;
        let _ = writeln!(
            table,
            "{words:>6} {total:>7}  {} ({})",
            chapter.path.display(),
            chapter.part.as_deref().unwrap_or("front")
        );
    }
    table
}

#[test]
fn the_firsts_come_within_their_budgets() {
    let chapters = chapters(&book_src_dir());
    eprintln!("words  so far  chapter\n{}", word_table(&chapters));
    let found = markers(&chapters);
    let mut problems = Vec::new();
    for (name, budget) in FIRSTS {
        let places: Vec<_> = found.iter().filter(|(n, ..)| n == name).collect();
        match places.as_slice() {
            [] => problems.push(format!(
                "no `<!-- budget: {name} -->` marker in any chapter of SUMMARY.md"
            )),
            [(_, words, chapter)] => {
                eprintln!("{name}: {words} words in, in {}", chapter.display());
                if *words > budget {
                    problems.push(format!(
                        "{name} comes after {words} words (in {}); the budget is {budget}",
                        chapter.display()
                    ));
                }
            }
            many => problems.push(format!(
                "`<!-- budget: {name} -->` appears {} times; mark only the first",
                many.len()
            )),
        }
    }
    for (name, _, chapter) in &found {
        if !FIRSTS.iter().any(|(known, _)| known == name) {
            problems.push(format!(
                "{}: unknown marker `budget: {name}`",
                chapter.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_chapter_is_longer_than_its_part_allows() {
    let chapters = chapters(&book_src_dir());
    let mut seen_parts = Vec::new();
    let mut problems = Vec::new();
    for chapter in &chapters {
        let Some(part) = &chapter.part else { continue };
        let Some((_, budget)) = PART_BUDGETS
            .iter()
            .find(|(title, _)| part.starts_with(title))
        else {
            continue;
        };
        seen_parts.push(part.clone());
        let words = prose_words(&chapter.text);
        if words > *budget {
            problems.push(format!(
                "{} has {words} words of prose; {part} allows {budget} (split it)",
                chapter.path.display()
            ));
        }
    }
    for (title, _) in PART_BUDGETS {
        assert!(
            seen_parts.iter().any(|part| part.starts_with(title)),
            "SUMMARY.md has no part titled {title:?}..., whose chapters this test measures"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_book_tells_what_the_code_does_not_its_history() {
    let banned: Vec<(Regex, &str)> = BANNED
        .iter()
        .map(|(pattern, what)| (Regex::new(pattern).expect("valid regex"), *what))
        .collect();
    let src = book_src_dir();
    let mut problems = Vec::new();
    for file in login_metrics_testkit::book::markdown_files(&src).expect("book/src") {
        let text = fs::read_to_string(&file).expect("UTF-8");
        for (line, prose) in prose_of(&text) {
            for (pattern, what) in &banned {
                if let Some(found) = pattern.find(&prose) {
                    problems.push(format!(
                        "{}:{line}: {what}: `{}`",
                        file.strip_prefix(&src).unwrap_or(&file).display(),
                        found.as_str()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// The counting itself
// ---------------------------------------------------------------------------

#[test]
fn prose_leaves_out_code_blocks_includes_and_html() {
    let markdown = "# A title here\n\nOne two `three`.\n\n```rust\n{{#include x.rs:y}}\nlet a = 1;\n```\n\n\
                    <figure><img src=\"a.svg\" alt=\"not counted\"></figure>\n\n\
                    | a | b |\n| --- | --- |\n| four | five |\n\n- six -- 7\n";
    assert_eq!(prose_words(markdown), 3 + 3 + 2 + 2 + 2);
}

#[test]
fn a_marker_counts_the_words_before_it_in_reading_order() {
    let chapters = vec![
        Chapter {
            path: "a.md".into(),
            part: None,
            text: "one two three\n".into(),
        },
        Chapter {
            path: "b.md".into(),
            part: Some("Part one".into()),
            text:
                "four five\n\n```text\nnot prose\n```\n\n<!-- budget: first-dashboard -->\n\nsix\n"
                    .into(),
        },
    ];
    let found = markers(&chapters);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "first-dashboard");
    assert_eq!(found[0].1, 5);
}

#[test]
fn the_banned_patterns_catch_what_they_name() {
    for (pattern, sample) in BANNED.iter().map(|(p, _)| *p).zip([
        "the buckets used to stop at 1 s",
        "TraceLayer was replaced",
        "an earlier version of the layer",
        "the layer now writes the line",
        "Goal (issue 11)",
        "Another engineer's builds",
        "The figures will be replaced by a run",
        "We propose restating the goal",
    ]) {
        assert!(
            Regex::new(pattern).unwrap().is_match(sample),
            "{pattern} misses {sample:?}"
        );
    }
}
