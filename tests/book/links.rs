//! Captions and links: every included listing names its file on the line above
//! it, and every relative link or image points at something mdBook renders.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use login_metrics_testkit::book::{book_src_dir, markdown_files};
use pulldown_cmark::{Event, Options, Parser, Tag};
use regex::Regex;

use crate::includes::include_problems;
use crate::{
    DIRECTIVE, assert_no_problems, assert_one_problem_mentioning, describe, line_of, normalise,
    scratch_book,
};

static HTML_LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?:src|href)\s*=\s*"([^"]*)""#).expect("valid regex"));

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

#[test]
fn every_listing_carries_a_caption_naming_its_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_no_problems("book captions", &check_captions(&book_src_dir(), root));
}

#[test]
fn every_relative_link_and_image_exists() {
    assert_no_problems("book links", &check_links(&book_src_dir()));
}

fn link_problems(chapter: &str) -> Vec<String> {
    let book = scratch_book(chapter);
    check_links(&book.path().join("src"))
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
