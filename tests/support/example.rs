//! Runs the repository's examples the way a reader does.

use std::process::Command;

/// Builds example `name` (a no-op after `cargo test` built it) and returns a
/// command that runs it. Not `current_target()`: that would rebuild every
/// dependency into a second target directory.
pub fn example(name: &str) -> Command {
    escargot::CargoBuild::new()
        .example(name)
        .current_release()
        .run()
        .unwrap_or_else(|error| panic!("building example {name}: {error}"))
        .command()
}
