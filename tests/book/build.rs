//! `mdbook build`: it exits 0, prints no `ERROR` or `WARN`, and leaves no
//! directive in the HTML.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{assert_no_problems, book_dir, scratch_book};

/// The mdBook release the book is written for (`book/book.toml` uses 0.5 keys).
const MDBOOK_VERSION: &str = "0.5.4";

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
