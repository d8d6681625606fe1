//! The book's fenced blocks, each with the marker above it, for the tests that
//! check outputs against fresh runs and run the commands a reader types.
//!
//! A fenced block is one of three kinds, decided by its language (the first word
//! of the info string):
//!
//! - **Output** (`text`, `console`, `json`, `output`, or no language): what a
//!   command prints, or a text the book does not want run. The line above it must
//!   be `<!-- output: NAME -->`, a block a test compares with a fresh run, or
//!   `<!-- not-output: REASON -->`, a block that shows no run (a query that must not
//!   be sent, a file's layout).
//! - **Command** (`sh`, `bash`, `shell`): what the reader types. The line above it
//!   must be `<!-- command: NAME -->`, a block a test runs, or
//!   `<!-- not-run: REASON -->`, one that cannot run where the tests run.
//! - **Listing**: every other language (`rust`, `yaml`, `toml`, `promql`, ...).
//!   Listings are included from tested files or run as queries; they take no marker.
//!
//! A `NAME` is `chapter/what` (`step-2/promtool-check-config`). A test finds its
//! block with [`output`] or [`command`], which fail unless exactly one block
//! carries the name, and `tests/book/markers.rs` fails on a block without its
//! marker and on a name that no test file mentions.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use regex::Regex;

use super::{book_src_dir, markdown_files};

/// What the marker above a block says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `<!-- output: NAME -->`: checked against a fresh run by a test.
    Output(String),
    /// `<!-- not-output: REASON -->`: a text block that shows no run.
    NotOutput(String),
    /// `<!-- command: NAME -->`: run by a test.
    Command(String),
    /// `<!-- not-run: REASON -->`: a command the tests cannot run, and why.
    NotRun(String),
}

/// What a block is, by its language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Shows what a command prints (or a text that is no listing).
    Output,
    /// Shows what a reader types.
    Command,
    /// A listing or a query.
    Listing,
}

/// One fenced block of a chapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The chapter, relative to `book/src`.
    pub file: PathBuf,
    /// The 1-based line of the opening fence.
    pub line: usize,
    /// The fence's info string (`text`, `promql,expect-zero`, ...).
    pub info: String,
    /// The content, without the fences and without the indentation of a list item.
    pub text: String,
    /// The marker on the line above the fence, if any.
    pub marker: Option<Marker>,
    /// Where the content lies in the chapter's Markdown, in bytes (from the line
    /// after the opening fence to the start of the closing fence's line).
    pub content: Range<usize>,
}

impl Block {
    /// The block's language: the first word of its info string, lower-cased.
    #[must_use]
    pub fn language(&self) -> String {
        language(&self.info)
    }

    /// What the block is, by its language.
    #[must_use]
    pub fn kind(&self) -> Kind {
        kind_of(&self.language())
    }

    /// `file:line`, for messages.
    #[must_use]
    pub fn at(&self) -> String {
        format!("book/src/{}:{}", self.file.display(), self.line)
    }
}

/// The first word of a fence's info string, lower-cased.
#[must_use]
pub fn language(info: &str) -> String {
    info.split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The kind of a block in `language`.
#[must_use]
pub fn kind_of(language: &str) -> Kind {
    match language {
        "" | "text" | "console" | "json" | "output" => Kind::Output,
        "sh" | "bash" | "shell" => Kind::Command,
        _ => Kind::Listing,
    }
}

static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^<!--\s*(output|not-output|command|not-run):\s*(.*?)\s*-->$").expect("valid regex")
});

/// The marker a line holds, if it is one.
#[must_use]
pub fn marker_of(line: &str) -> Option<Marker> {
    let captures = MARKER.captures(line.trim())?;
    let value = captures[2].to_owned();
    Some(match &captures[1] {
        "output" => Marker::Output(value),
        "not-output" => Marker::NotOutput(value),
        "command" => Marker::Command(value),
        _ => Marker::NotRun(value),
    })
}

/// The fenced blocks of one chapter; `file` (relative to `book/src`) is recorded.
#[must_use]
pub fn blocks_of(file: &Path, markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String, String, usize)> = None;
    for (event, range) in Parser::new_ext(markdown, Options::all()).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let start = range.start;
                let line = markdown[..start].matches('\n').count() + 1;
                current = Some((line, info.to_string(), String::new(), start));
            }
            Event::Text(text) => {
                if let Some((_, _, content, _)) = current.as_mut() {
                    content.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((line, info, text, start)) = current.take() {
                    let fence = &markdown[start..range.end];
                    let after_open = start + fence.find('\n').map_or(fence.len(), |n| n + 1);
                    let close_line = markdown[..range.end]
                        .trim_end_matches(['\n', ' '])
                        .rfind('\n')
                        .map_or(after_open, |n| n + 1)
                        .max(after_open);
                    blocks.push(Block {
                        file: file.to_path_buf(),
                        line,
                        info,
                        text,
                        marker: marker_above(markdown, start),
                        content: after_open..close_line,
                    });
                }
            }
            _ => {}
        }
    }
    blocks
}

/// The marker on the last non-blank line before byte `start`.
fn marker_above(markdown: &str, start: usize) -> Option<Marker> {
    let line_start = markdown[..start].rfind('\n').map_or(0, |n| n + 1);
    markdown[..line_start]
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(marker_of)
}

/// Every fenced block of the book, in file order.
pub fn book_blocks() -> io::Result<Vec<Block>> {
    blocks_in(&book_src_dir())
}

/// Every fenced block of the Markdown files under `dir`.
pub fn blocks_in(dir: &Path) -> io::Result<Vec<Block>> {
    let mut blocks = Vec::new();
    for path in markdown_files(dir)? {
        let text = fs::read_to_string(&path)?;
        let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
        blocks.extend(blocks_of(&relative, &text));
    }
    Ok(blocks)
}

/// The one block marked `<!-- output: NAME -->`; panics unless there is exactly one.
#[must_use]
pub fn output(name: &str) -> Block {
    the_one(&Marker::Output(name.to_owned()))
}

/// The one block marked `<!-- command: NAME -->`; panics unless there is exactly one.
#[must_use]
pub fn command(name: &str) -> Block {
    the_one(&Marker::Command(name.to_owned()))
}

fn the_one(marker: &Marker) -> Block {
    let blocks = book_blocks().expect("book/src is readable");
    let found: Vec<Block> = blocks
        .into_iter()
        .filter(|block| block.marker.as_ref() == Some(marker))
        .collect();
    match found.as_slice() {
        [one] => one.clone(),
        [] => panic!("no block of the book is marked {marker:?}"),
        many => panic!(
            "{} blocks are marked {marker:?}: {:?}",
            many.len(),
            many.iter().map(Block::at).collect::<Vec<_>>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Title

<!-- command: sample/run -->

```sh
cargo run
```

<!-- output: sample/printed -->

```text
hello
world
```

- In a list:

  <!-- not-run: needs a browser -->

  ```sh
  open http://localhost:3000
  ```

```rust
fn listing() {}
```

```
no language
```
";

    #[test]
    fn blocks_carry_their_language_kind_marker_and_content() {
        let blocks = blocks_of(Path::new("sample.md"), SAMPLE);
        let seen: Vec<(usize, Kind, Option<Marker>, &str)> = blocks
            .iter()
            .map(|b| (b.line, b.kind(), b.marker.clone(), b.text.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    5,
                    Kind::Command,
                    Some(Marker::Command("sample/run".into())),
                    "cargo run\n"
                ),
                (
                    11,
                    Kind::Output,
                    Some(Marker::Output("sample/printed".into())),
                    "hello\nworld\n"
                ),
                (
                    20,
                    Kind::Command,
                    Some(Marker::NotRun("needs a browser".into())),
                    "open http://localhost:3000\n"
                ),
                (24, Kind::Listing, None, "fn listing() {}\n"),
                (28, Kind::Output, None, "no language\n"),
            ]
        );
        // The content range covers exactly the lines between the fences.
        assert_eq!(&SAMPLE[blocks[1].content.clone()], "hello\nworld\n");
        assert_eq!(
            &SAMPLE[blocks[2].content.clone()],
            "  open http://localhost:3000\n"
        );
    }

    #[test]
    fn markers_are_read_strictly() {
        assert_eq!(
            marker_of("<!-- output: step-1/metrics -->"),
            Some(Marker::Output("step-1/metrics".into()))
        );
        assert_eq!(
            marker_of("  <!--not-output: a query that must not run-->"),
            Some(Marker::NotOutput("a query that must not run".into()))
        );
        assert_eq!(marker_of("<!-- budget: first-dashboard -->"), None);
        assert_eq!(marker_of("output: x"), None);
    }

    #[test]
    fn languages_decide_the_kind() {
        for output in ["", "text", "console", "json", "TEXT"] {
            assert_eq!(kind_of(&language(output)), Kind::Output, "{output:?}");
        }
        for command in ["sh", "bash", "shell"] {
            assert_eq!(kind_of(command), Kind::Command);
        }
        for listing in ["rust", "yaml", "toml", "promql", "promql,expect-zero"] {
            assert_eq!(kind_of(&language(listing)), Kind::Listing, "{listing:?}");
        }
    }
}
