//! The book check.
//!
//! `mdbook build` exits 0 on a broken `{{#include}}`: a missing file leaves the
//! directive in the HTML and a misspelled anchor renders an empty listing. This
//! test fails instead, on:
//!
//! - an include whose file is missing, whose anchor has no `ANCHOR:` or no
//!   matching `ANCHOR_END:` line, whose anchored section is empty, or that uses
//!   line numbers (listings are cut by named anchor only, so they survive edits);
//! - an included listing without its file caption: the line above the code
//!   block must be `<span class="filename">Filename: PATH</span>`, PATH being
//!   the included file relative to the repository, as the Rust book names its
//!   listings;
//! - a relative link or image in the Markdown that points at nothing, or at a
//!   page that `SUMMARY.md` does not list (such a page is never rendered);
//! - `mdbook build` exiting non-zero, printing any `ERROR` or `WARN` line, or
//!   leaving `{{#` in the HTML it writes.
//!
//! The last part needs mdBook 0.5 on PATH. Without it the test prints how to
//! install it and skips that part, except under CI (`CI` set), where a missing
//! mdBook is a failure.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use login_metrics_testkit::book::{TUTORIAL_QUERIES, book_src_dir, markdown_files, promql_blocks};
use pulldown_cmark::{Event, Options, Parser, Tag};
use regex::Regex;

/// The mdBook release the book is written for (`book/book.toml` uses 0.5 keys).
const MDBOOK_VERSION: &str = "0.5.4";

/// A preprocessor directive, matched the way mdBook's `links` preprocessor does:
/// group 1 is the kind, group 2 the path and its properties. An escaped
/// directive (`\{{#include ...}}`) matches the first alternative and is skipped.
static DIRECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\\{\{\#.*\}\}|\{\{\s*\#([a-zA-Z0-9_]+)\s+([^}]+)\}\}").expect("valid regex")
});
/// mdBook's anchor markers; any comment style works because only this text is matched.
static ANCHOR_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ANCHOR:\s*([\w_-]+)").expect("valid regex"));
static ANCHOR_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ANCHOR_END:\s*([\w_-]+)").expect("valid regex"));
/// What mdBook accepts as an anchor name.
static ANCHOR_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\w_-]+$").expect("valid regex"));
/// `src="..."` and `href="..."` in raw HTML (figures, for example).
static HTML_LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?:src|href)\s*=\s*"([^"]*)""#).expect("valid regex"));

fn book_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("book")
}

/// Line number (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

fn describe(file: &Path, line: usize) -> String {
    let shown = file
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(file);
    format!("{}:{line}", shown.display())
}

// ---------------------------------------------------------------------------
// (a) includes
// ---------------------------------------------------------------------------

/// Every problem with the include directives of the Markdown files under `src`.
fn check_includes(src: &Path) -> Vec<String> {
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

// ---------------------------------------------------------------------------
// (a') file captions
// ---------------------------------------------------------------------------

/// The caption a listing of `file` (relative to the repository) carries.
fn caption_for(file: &Path) -> String {
    format!(
        "<span class=\"filename\">Filename: {}</span>",
        file.display()
    )
}

/// Every include under `src` whose code block lacks the caption naming its file;
/// files are named relative to `root`.
fn check_captions(src: &Path, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for md in markdown_files(src).expect("the book's source directory is readable") {
        let text = fs::read_to_string(&md).expect("Markdown files are UTF-8");
        problems.extend(check_captions_of(&md, &text, root));
    }
    problems
}

fn check_captions_of(md: &Path, text: &str, root: &Path) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    for captures in DIRECTIVE.captures_iter(text) {
        let (Some(kind), Some(target)) = (captures.get(1), captures.get(2)) else {
            continue;
        };
        if !matches!(kind.as_str(), "include" | "rustdoc_include") {
            continue;
        }
        let line = line_of(text, kind.start());
        let at = describe(md, line);
        let Some(path) = target.as_str().split_whitespace().next() else {
            continue; // reported by the include check
        };
        let path = path.split_once(':').map_or(path, |(path, _)| path);
        let file = normalise(&md.parent().expect("a file has a parent").join(path));
        let shown = file.strip_prefix(root).unwrap_or(&file);
        let expected = caption_for(shown);
        let is_fence = |l: &&str| {
            let l = l.trim_start();
            l.starts_with("```") || l.starts_with("~~~")
        };
        let Some(fence) = lines[..line - 1].iter().rposition(is_fence) else {
            problems.push(format!("{at}: an include outside a code block"));
            continue;
        };
        let above = lines[..fence].iter().rev().find(|l| !l.trim().is_empty());
        if above.map(|l| l.trim()) != Some(expected.as_str()) {
            problems.push(format!(
                "{at}: the listing of {} needs `{expected}` on the line above its code block",
                shown.display()
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// (b) links and images
// ---------------------------------------------------------------------------

/// The chapter files `SUMMARY.md` lists, normalised.
fn summary_chapters(src: &Path) -> BTreeSet<PathBuf> {
    let summary = src.join("SUMMARY.md");
    let text = fs::read_to_string(&summary).expect("book/src/SUMMARY.md exists");
    Parser::new(&text)
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. }) if !dest_url.is_empty() => {
                Some(normalise(&src.join(dest_url.as_ref())))
            }
            _ => None,
        })
        .collect()
}

/// Removes `.` and `..` components without touching the file system.
fn normalise(path: &Path) -> PathBuf {
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

/// Every problem with relative links and images in the Markdown under `src`.
fn check_links(src: &Path) -> Vec<String> {
    let chapters = summary_chapters(src);
    let mut problems = Vec::new();
    for md in markdown_files(src).expect("the book's source directory is readable") {
        let text = fs::read_to_string(&md).expect("Markdown files are UTF-8");
        problems.extend(check_links_of(&md, &text, &chapters));
    }
    problems
}

fn check_links_of(md: &Path, text: &str, chapters: &BTreeSet<PathBuf>) -> Vec<String> {
    let mut targets = Vec::new();
    for (event, range) in Parser::new_ext(text, Options::all()).into_offset_iter() {
        match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                targets.push((range.start, dest_url.to_string()));
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                targets.extend(
                    HTML_LINK
                        .captures_iter(&html)
                        .map(|captures| (range.start, captures[1].to_owned())),
                );
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for (offset, target) in targets {
        let at = describe(md, line_of(text, offset));
        if let Some(fragment) = target.strip_prefix('#') {
            if !heading_ids(text).contains(fragment) {
                problems.push(format!("{at}: `{target}` names no heading of this page"));
            }
            continue;
        }
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        if target.starts_with('/') {
            problems.push(format!(
                "{at}: `{target}` is absolute; the book may be served under a sub-path, use a relative link"
            ));
            continue;
        }
        let path = target.split(['#', '?']).next().unwrap_or_default();
        let file = normalise(&md.parent().expect("a file has a parent").join(path));
        if !file.exists() {
            problems.push(format!(
                "{at}: `{target}` points to {}, which does not exist",
                file.display()
            ));
        } else if file.extension().is_some_and(|ext| ext == "md")
            && md.file_name().is_some_and(|name| name != "SUMMARY.md")
            && !chapters.contains(&file)
        {
            problems.push(format!(
                "{at}: `{target}` is not listed in SUMMARY.md, so mdBook never renders it"
            ));
        } else if let Some((_, fragment)) = target.split_once('#')
            && file.extension().is_some_and(|ext| ext == "md")
        {
            let page = fs::read_to_string(&file).expect("a chapter is UTF-8");
            if !heading_ids(&page).contains(fragment) {
                problems.push(format!(
                    "{at}: `{target}`: {} has no heading with the id `{fragment}`",
                    file.display()
                ));
            }
        }
    }
    problems
}

/// The ids mdBook gives the headings of a page: the heading's text, lower-cased,
/// spaces as `-`, every character but letters, digits, `_` and `-` dropped, and
/// `-1`, `-2`... after an id already taken.
fn heading_ids(markdown: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(markdown, Options::all()) {
        match event {
            Event::Start(Tag::Heading { id: Some(id), .. }) => {
                ids.insert(id.to_string());
            }
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(text) | Event::Code(text) => {
                if let Some(heading) = heading.as_mut() {
                    heading.push_str(&text);
                }
            }
            Event::End(pulldown_cmark::TagEnd::Heading(_)) => {
                if let Some(heading) = heading.take() {
                    let id: String = heading
                        .chars()
                        .filter_map(|c| {
                            if c.is_alphanumeric() || c == '_' || c == '-' {
                                Some(c.to_ascii_lowercase())
                            } else if c.is_whitespace() {
                                Some('-')
                            } else {
                                None
                            }
                        })
                        .collect();
                    let mut unique = id.clone();
                    let mut n = 0;
                    while ids.contains(&unique) {
                        n += 1;
                        unique = format!("{id}-{n}");
                    }
                    ids.insert(unique);
                }
            }
            _ => {}
        }
    }
    ids
}

// ---------------------------------------------------------------------------
// (c) mdbook build
// ---------------------------------------------------------------------------

/// What `mdbook --version` found.
enum Mdbook {
    Usable,
    Missing(String),
}

fn find_mdbook() -> Mdbook {
    match Command::new("mdbook").arg("--version").output() {
        Ok(output) if output.status.success() => {
            let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if version.starts_with("mdbook v0.5.") {
                Mdbook::Usable
            } else {
                Mdbook::Missing(format!("found `{version}`, but the book needs mdBook 0.5"))
            }
        }
        Ok(output) => Mdbook::Missing(format!(
            "`mdbook --version` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            Mdbook::Missing("mdbook is not on PATH".to_owned())
        }
        Err(error) => Mdbook::Missing(format!("cannot run mdbook: {error}")),
    }
}

/// Builds `book_dir` into `out` and returns the problems found.
fn build_problems(book_dir: &Path, out: &Path) -> Vec<String> {
    let mut command = Command::new("mdbook");
    command.arg("build").arg(book_dir).arg("-d").arg(out);
    // MDBOOK_* variables override book.toml and the log filter; build what is committed.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MDBOOK_") {
            command.env_remove(&name);
        }
    }
    command.env_remove("RUST_LOG").env("NO_COLOR", "1");
    let output = command.output().expect("mdbook was found a moment ago");

    let mut problems = Vec::new();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        problems.push(format!("`mdbook build` failed ({}):\n{log}", output.status));
    }
    problems.extend(
        log.lines()
            .filter(|line| line.contains("ERROR") || line.contains("WARN"))
            .map(|line| format!("mdbook: {line}")),
    );
    for page in html_files(out) {
        let html = fs::read_to_string(&page).expect("mdBook writes UTF-8 HTML");
        for (offset, _) in html.match_indices("{{#") {
            let end = html[offset..].find('\n').map_or(html.len(), |n| offset + n);
            problems.push(format!(
                "{}: unprocessed directive left in the HTML: {}",
                page.display(),
                &html[offset..end.min(offset + 120)]
            ));
        }
    }
    problems
}

fn html_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).expect("the build directory is readable") {
            let path = entry.expect("readable directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "html") {
                files.push(path);
            }
        }
    }
    files
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The checks on this repository's book
// ---------------------------------------------------------------------------

#[test]
fn every_include_resolves_to_a_file_and_a_named_anchor() {
    assert_no_problems("book includes", &check_includes(&book_src_dir()));
}

#[test]
fn every_listing_carries_a_caption_naming_its_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_no_problems("book captions", &check_captions(&book_src_dir(), root));
}

#[test]
fn every_relative_link_and_image_exists() {
    assert_no_problems("book links", &check_links(&book_src_dir()));
}

#[test]
fn mdbook_builds_the_book_cleanly() {
    match find_mdbook() {
        Mdbook::Usable => {}
        Mdbook::Missing(why) => {
            let hint = format!(
                "{why}; install it with `cargo install mdbook --locked --version {MDBOOK_VERSION}`"
            );
            login_metrics_testkit::env::skip(&format!("the book is not built: {hint}"));
            return;
        }
    }
    let out = tempfile::tempdir().expect("a temporary directory");
    let problems = build_problems(&book_dir(), out.path());
    assert_no_problems("mdbook build", &problems);
    assert!(
        out.path().join("index.html").is_file(),
        "mdbook build wrote no index.html into {}",
        out.path().display()
    );
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

// ---------------------------------------------------------------------------
// The checker itself, on deliberately broken books in temporary directories
// ---------------------------------------------------------------------------

/// A tiny book source: `src/code.rs` with one anchor, and `src/chapter.md`
/// holding `chapter` (plus a SUMMARY listing it).
fn scratch_book(chapter: &str) -> tempfile::TempDir {
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

fn include_problems(chapter: &str) -> Vec<String> {
    let book = scratch_book(chapter);
    check_includes(&book.path().join("src"))
}

fn link_problems(chapter: &str) -> Vec<String> {
    let book = scratch_book(chapter);
    check_links(&book.path().join("src"))
}

fn assert_one_problem_mentioning(problems: &[String], needle: &str) {
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

#[test]
fn checker_accepts_good_includes_and_links() {
    let chapter = "# Chapter\n\n```rust\n{{#include code.rs:good}}\n```\n\n\
                   ```rust\n{{#rustdoc_include code.rs:twice}}\n```\n\n\
                   ```yaml\n{{ #include config.yml:yaml }}\n```\n\n\
                   ```rust\n{{#include code.rs}}\n```\n\n\
                   Shown literally: \\{{#include missing.rs:nothing}}\n\n\
                   [Myself](chapter.md#chapter), [web](https://example.com), [here](#chapter)\n\n\
                   ![Diagram](images/diagram.svg)\n\n<img src=\"images/diagram.svg\" alt=\"\">\n";
    assert_no_problems("good includes", &include_problems(chapter));
    assert_no_problems("good links", &link_problems(chapter));
}

fn caption_problems(chapter: &str) -> Vec<String> {
    let book = scratch_book(chapter);
    check_captions(&book.path().join("src"), book.path())
}

#[test]
fn checker_accepts_listings_captioned_with_their_file() {
    let chapter = "<span class=\"filename\">Filename: src/code.rs</span>\n\n\
                   ```rust\n{{#include code.rs:good}}\n```\n\n\
                   - In a list:\n\n  <span class=\"filename\">Filename: src/config.yml</span>\n\n\
                   \x20 ```yaml\n  {{#include config.yml:yaml}}\n  ```\n";
    assert_no_problems("captioned listings", &caption_problems(chapter));
}

#[test]
fn checker_detects_a_listing_without_its_caption() {
    assert_one_problem_mentioning(
        &caption_problems("Some text:\n\n```rust\n{{#include code.rs:good}}\n```\n"),
        "Filename: src/code.rs",
    );
    // A caption naming another file is as wrong as none.
    assert_one_problem_mentioning(
        &caption_problems(
            "<span class=\"filename\">Filename: src/other.rs</span>\n\n\
             ```rust\n{{#include code.rs:good}}\n```\n",
        ),
        "Filename: src/code.rs",
    );
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

#[test]
fn checker_detects_broken_links_and_images() {
    assert_one_problem_mentioning(&link_problems("[Gone](gone.md)\n"), "does not exist");
    assert_one_problem_mentioning(
        &link_problems("![Gone](images/gone.png)\n"),
        "does not exist",
    );
    assert_one_problem_mentioning(
        &link_problems("<figure><img src=\"images/gone.svg\"></figure>\n"),
        "does not exist",
    );
    assert_one_problem_mentioning(
        &link_problems("[Hidden](unlisted.md)\n"),
        "not listed in SUMMARY.md",
    );
    assert_one_problem_mentioning(&link_problems("[Root](/chapter.md)\n"), "absolute");
    assert_one_problem_mentioning(
        &link_problems("# Chapter\n\n[Gone](chapter.md#no-such-heading)\n"),
        "no heading with the id `no-such-heading`",
    );
    assert_one_problem_mentioning(
        &link_problems("# Chapter\n\n[Gone](#nowhere)\n"),
        "names no heading",
    );
}

#[test]
fn checker_detects_a_directive_mdbook_left_in_the_html() {
    if !matches!(find_mdbook(), Mdbook::Usable) {
        println!("skipping: mdbook 0.5 is not on PATH (covered by mdbook_builds_the_book_cleanly)");
        return;
    }
    // mdBook exits 0 here and leaves the directive in the page: the check must not.
    let book = scratch_book("# Chapter\n\n```rust\n{{#include nowhere.rs}}\n```\n");
    fs::write(
        book.path().join("book.toml"),
        "[book]\ntitle = \"Scratch\"\n",
    )
    .unwrap();
    let out = tempfile::tempdir().expect("a temporary directory");
    let problems = build_problems(book.path(), out.path());
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("unprocessed directive")),
        "a missing include must be reported, got {problems:#?}"
    );
}
