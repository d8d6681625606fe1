//! Includes: every `{{#include}}` names a file and a named anchor that exist.

use std::fs;
use std::path::Path;
use std::sync::LazyLock;

use login_metrics_testkit::book::{book_src_dir, markdown_files};
use regex::Regex;

use crate::{
    DIRECTIVE, assert_no_problems, assert_one_problem_mentioning, describe, line_of, scratch_book,
};

/// mdBook's anchor markers; any comment style works because only this text is matched.
static ANCHOR_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ANCHOR:\s*([\w_-]+)").expect("valid regex"));
static ANCHOR_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ANCHOR_END:\s*([\w_-]+)").expect("valid regex"));
/// What mdBook accepts as an anchor name.
static ANCHOR_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\w_-]+$").expect("valid regex"));

/// Every problem with the include directives of the Markdown files under `src`.
pub(crate) fn check_includes(src: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for md in markdown_files(src).expect("the book's source directory is readable") {
        let text = fs::read_to_string(&md).expect("Markdown files are UTF-8");
        problems.extend(check_includes_of(&md, &text));
    }
    problems
}

/// The include problems of one Markdown file.
fn check_includes_of(md: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for captures in DIRECTIVE.captures_iter(text) {
        let (Some(kind), Some(target)) = (captures.get(1), captures.get(2)) else {
            continue; // an escaped directive, shown literally by mdBook
        };
        let at = describe(md, line_of(text, kind.start()));
        let kind = kind.as_str();
        let mut words = target.as_str().split_whitespace();
        let Some(spec) = words.next() else {
            problems.push(format!("{at}: `{{{{#{kind}}}}}` without a path"));
            continue;
        };
        match kind {
            "include" | "rustdoc_include" => {
                if let Err(problem) = check_include(md, kind, spec) {
                    problems.push(format!("{at}: {{{{#{kind} {spec}}}}}: {problem}"));
                }
            }
            "playground" => {
                let file = md.parent().expect("a file has a parent").join(spec);
                if !file.is_file() {
                    problems.push(format!(
                        "{at}: {{{{#playground {spec}}}}}: no file {}",
                        file.display()
                    ));
                }
            }
            "title" => {}
            other => problems.push(format!(
                "{at}: unknown directive `{{{{#{other}}}}}` (mdBook would leave it in the page)"
            )),
        }
    }
    problems
}

/// Checks one `path`, `path:anchor` include. Line numbers are refused.
fn check_include(md: &Path, kind: &str, spec: &str) -> Result<(), String> {
    // mdBook splits at the first ':' into the path and a range or anchor.
    let (path, selector) = match spec.split_once(':') {
        Some((path, selector)) => (path, Some(selector)),
        None => (spec, None),
    };
    let file = md.parent().expect("a file has a parent").join(path);
    if !file.is_file() {
        return Err(format!("the file {} does not exist", file.display()));
    }
    let Some(selector) = selector else {
        return Ok(()); // the whole file
    };
    let is_line_range = selector.is_empty()
        || selector.contains(':')
        || selector.chars().all(|c| c.is_ascii_digit());
    if is_line_range || !ANCHOR_NAME.is_match(selector) {
        return Err(format!(
            "`:{selector}` is a line range; cut listings with a named anchor \
             (`// ANCHOR: name` ... `// ANCHOR_END: name`) instead"
        ));
    }
    let source = fs::read_to_string(&file)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let sections = anchored_sections(&source, selector)
        .map_err(|problem| format!("in {}: {problem}", file.display()))?;
    if sections.is_empty() {
        return Err(format!(
            "{} has no `ANCHOR: {selector}` line",
            file.display()
        ));
    }
    if kind == "include" && sections.len() > 1 {
        return Err(format!(
            "anchor `{selector}` is opened {} times in {}; `include` shows only the first \
             section (use `rustdoc_include`, or one section)",
            sections.len(),
            file.display()
        ));
    }
    if sections
        .iter()
        .all(|lines| lines.iter().all(|line| line.trim().is_empty()))
    {
        return Err(format!(
            "anchor `{selector}` in {} encloses nothing",
            file.display()
        ));
    }
    Ok(())
}

/// The sections of `source` between `ANCHOR: name` and `ANCHOR_END: name`,
/// without marker lines. Fails on a section that is never closed, an end
/// without a start and a start inside an open section of the same name.
fn anchored_sections<'a>(source: &'a str, name: &str) -> Result<Vec<Vec<&'a str>>, String> {
    let names = |regex: &Regex, line: &str| -> bool {
        regex
            .captures_iter(line)
            .any(|captures| &captures[1] == name)
    };
    let mut sections = Vec::new();
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (index, line) in source.lines().enumerate() {
        let number = index + 1;
        if names(&ANCHOR_END, line) {
            match open.take() {
                Some((_, lines)) => sections.push(lines),
                None => {
                    return Err(format!(
                        "line {number}: `ANCHOR_END: {name}` without an `ANCHOR: {name}` before it"
                    ));
                }
            }
        } else if names(&ANCHOR_START, line) {
            if let Some((start, _)) = open {
                return Err(format!(
                    "line {number}: `ANCHOR: {name}` again before the `ANCHOR_END` of line {start}"
                ));
            }
            open = Some((number, Vec::new()));
        } else if let Some((_, lines)) = open.as_mut() {
            // mdBook drops every marker line, whatever its name, from a listing.
            if !ANCHOR_START.is_match(line) && !ANCHOR_END.is_match(line) {
                lines.push(line);
            }
        }
    }
    if let Some((start, _)) = open {
        return Err(format!(
            "`ANCHOR: {name}` on line {start} has no matching `ANCHOR_END: {name}`"
        ));
    }
    Ok(sections)
}

#[test]
fn every_include_resolves_to_a_file_and_a_named_anchor() {
    assert_no_problems("book includes", &check_includes(&book_src_dir()));
}

pub(crate) fn include_problems(chapter: &str) -> Vec<String> {
    let book = scratch_book(chapter);
    check_includes(&book.path().join("src"))
}

#[test]
fn checker_detects_a_missing_include_file() {
    let problems = include_problems("```rust\n{{#include nowhere.rs:good}}\n```\n");
    assert_one_problem_mentioning(&problems, "does not exist");
    assert!(problems[0].contains("chapter.md:2"), "{}", problems[0]);
}

#[test]
fn checker_detects_a_missing_anchor() {
    let problems = include_problems("```rust\n{{#include code.rs:goood}}\n```\n");
    assert_one_problem_mentioning(&problems, "no `ANCHOR: goood` line");
}

#[test]
fn checker_detects_an_anchor_without_its_end() {
    let problems = include_problems("```rust\n{{#rustdoc_include code.rs:unclosed}}\n```\n");
    assert_one_problem_mentioning(&problems, "no matching `ANCHOR_END: unclosed`");
}

#[test]
fn checker_detects_a_reopened_anchor_that_include_would_cut_short() {
    let problems = include_problems("```rust\n{{#include code.rs:twice}}\n```\n");
    assert_one_problem_mentioning(&problems, "opened 2 times");
}

#[test]
fn checker_refuses_line_numbers() {
    for spec in [
        "code.rs:2",
        "code.rs:2:3",
        "code.rs::3",
        "code.rs:2:",
        "code.rs:",
    ] {
        let problems = include_problems(&format!("```rust\n{{{{#include {spec}}}}}\n```\n"));
        assert_one_problem_mentioning(&problems, "line range");
    }
}

#[test]
fn checker_detects_an_unknown_directive() {
    let problems = include_problems("{{#inclde code.rs:good}}\n");
    assert_one_problem_mentioning(&problems, "unknown directive");
}
