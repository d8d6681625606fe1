//! A command block of the book, run as the reader would type it.
//!
//! The script is the block's own text, so that a change to the book (a mount
//! dropped from a `docker run`) changes what the test runs. Where a command cannot
//! run here as written, the test names a [`Substitution`]: a port that may be
//! taken (5000, 8000, 9090) becomes a free one, `cargo run --example X` the binary
//! `cargo test` already built, an official image that no registry here serves the
//! local one. Each substitution must apply: one whose text the block no longer
//! holds fails, so a substitution cannot hide a change to the book.
//!
//! Scripts run under `bash -e` from the repository's root.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::blocks::{Block, Kind, command};
use crate::repo_root;

/// One change to a block's text before it runs, and why it is needed here.
#[derive(Debug, Clone)]
pub struct Substitution {
    /// The text of the block to replace (every occurrence).
    pub from: String,
    /// What runs instead.
    pub to: String,
}

/// `from` -> `to` in a block before it runs.
#[must_use]
pub fn sub(from: impl Into<String>, to: impl Into<String>) -> Substitution {
    Substitution {
        from: from.into(),
        to: to.into(),
    }
}

/// The script of the block marked `<!-- command: NAME -->`, with `substitutions`
/// applied; panics when one of them finds nothing to replace.
#[must_use]
pub fn script(name: &str, substitutions: &[Substitution]) -> String {
    let block = command(name);
    script_of(&block, substitutions)
}

/// The script of `block` with `substitutions` applied.
#[must_use]
pub fn script_of(block: &Block, substitutions: &[Substitution]) -> String {
    assert!(
        block.kind() == Kind::Command,
        "{}: a ```{} block is not a command block",
        block.at(),
        block.language()
    );
    let mut text = block.text.clone();
    for substitution in substitutions {
        assert!(
            text.contains(&substitution.from),
            "{}: the substitution of `{}` finds nothing to replace in:\n{text}",
            block.at(),
            substitution.from
        );
        text = text.replace(&substitution.from, &substitution.to);
    }
    text
}

/// `cargo run [--release] --example NAME [--]` -> the binary `cargo test` built,
/// in the test's profile: a nested cargo would rebuild (another profile, other
/// features) and wait for the build lock.
#[must_use]
pub fn example_binary(name: &str) -> String {
    let program = crate::example::example(name).get_program().to_owned();
    shell_quote(&program.to_string_lossy())
}

/// A word quoted for bash.
#[must_use]
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn bash(script: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-e")
        .arg("-c")
        .arg(script)
        .current_dir(repo_root())
        // What a reader's shell usually does not set, and what would change the
        // output: a backtrace after every error, the log level.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    command
}

/// Runs `script` to its end, with `stdin` as its input.
#[must_use]
pub fn run(script: &str, env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = bash(script)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("the script reads its input");
    child.wait_with_output().expect("bash ends")
}

/// Runs `script` and returns its standard output; panics, with both streams, when
/// it fails.
#[must_use]
pub fn run_ok(script: &str, env: &[(&str, &str)]) -> String {
    let output = run(script, env, "");
    assert!(
        output.status.success(),
        "the book's command failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command that keeps running (a server, Prometheus), started from a book block;
/// killed, with its process group, when dropped.
pub struct Background {
    child: Child,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    /// Standard error, kept for messages.
    stderr: tempfile::NamedTempFile,
}

impl Background {
    /// Starts `script` in a process group of its own, standard output piped and
    /// standard error kept in a file ([`Self::stderr`]).
    #[must_use]
    pub fn start(script: &str, env: &[(&str, &str)]) -> Self {
        use std::os::unix::process::CommandExt as _;
        let stderr = tempfile::NamedTempFile::new().expect("a temporary file");
        let mut command = bash(&format!("exec {script}"));
        command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("the temporary file reopens"))
            .process_group(0);
        let mut child = command.spawn().expect("bash runs");
        let stdout = child.stdout.take().map(BufReader::new);
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// What the command wrote to standard error so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// The next line of standard output, waiting at most `within`.
    pub fn line(&mut self, within: Duration) -> String {
        let mut stdout = self.stdout.take().expect("standard output is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = stdout.read_line(&mut line);
            let _ = sender.send((read.map(|_| line), stdout));
        });
        let (line, stdout) = receiver
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("no line of output within {within:?}"));
        self.stdout = Some(stdout);
        line.expect("the output is readable")
    }

    /// The process id of the command (bash `exec`s it).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The running child, for signals and its exit.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // The whole group: `exec` leaves one process, but a pipeline would not.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}
