//! The repository's examples (the programs the book tells a reader to run), built
//! and run as separate processes, the way a reader runs them.
//!
//! `cargo test` builds every example before it runs a test, so [`example`] only
//! finds the binary it already built. The lab's measurements want the example in
//! release mode instead: [`release_binary`].

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

/// What cargo sets in a test's environment about the crate under test. A build
/// started from inside a test inherits them, and build scripts that watch them
/// (ring's watches `CARGO_MANIFEST_DIR`) would then see a change and rebuild,
/// and the next `cargo test` would rebuild them back: left out.
fn set_by_cargo_for_this_crate(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// `cargo build --example name` in the repository, without the variables above.
fn build(name: &str) -> escargot::CargoBuild {
    let mut build = escargot::CargoBuild::new()
        .manifest_path(crate::repo_root().join("Cargo.toml"))
        .example(name);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_this_crate) {
            build = build.env_remove(key);
        }
    }
    build
}

/// Builds example `name` in the profile of the running test (a no-op after
/// `cargo test` built it) and returns a command that runs it. Not
/// `current_target()`: that would rebuild every dependency into a second target
/// directory.
#[must_use]
pub fn example(name: &str) -> Command {
    build(name)
        .current_release()
        .run()
        .unwrap_or_else(|error| panic!("building example {name}: {error}"))
        .command()
}

/// Builds example `name` in release mode and returns the path of its binary: what
/// a measurement runs, since a debug build measures the compiler, not the code.
pub fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    Ok(build(name)
        .release()
        .run()
        .with_context(|| format!("building example {name} (release)"))?
        .path()
        .to_owned())
}

/// Sends SIGTERM to `child`, as `docker stop`, systemd and Kubernetes do.
#[cfg(unix)]
pub fn terminate(child: &std::process::Child) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(
        sent.is_ok_and(|status| status.success()),
        "kill -TERM {pid} failed"
    );
}

/// The exit status of `child` once it has ended, waiting at most `patience`;
/// `None` if it is still running then.
pub fn exit_within(
    child: &mut std::process::Child,
    patience: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    use crate::wait::{Check, poll_blocking};
    poll_blocking(
        "the process to exit",
        patience,
        std::time::Duration::from_millis(20),
        || match child.try_wait() {
            Ok(Some(status)) => Check::Met(status),
            Ok(None) => Check::NotYet("still running".to_owned()),
            Err(error) => Check::NotYet(format!("try_wait: {error}")),
        },
    )
    .ok()
}
