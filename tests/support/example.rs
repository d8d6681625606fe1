//! Runs the repository's examples the way a reader does.

use std::process::Command;

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

/// Builds example `name` (a no-op after `cargo test` built it) and returns a
/// command that runs it. Not `current_target()`: that would rebuild every
/// dependency into a second target directory.
pub fn example(name: &str) -> Command {
    let mut build = escargot::CargoBuild::new().example(name).current_release();
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_this_crate) {
            build = build.env_remove(key);
        }
    }
    build
        .run()
        .unwrap_or_else(|error| panic!("building example {name}: {error}"))
        .command()
}
