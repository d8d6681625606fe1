//! What the environment allows, decided in one place.
//!
//! A test that cannot run here (no Docker, no image, no binary) says so in one line
//! that starts with `skipped:` and passes, so that `cargo test` on a new machine is
//! green and honest about what it did not check. Under CI the same situation is a
//! failure: CI installs everything, so a missing tool there is a broken pipeline,
//! not a reason to skip.

use std::io::Write as _;

/// Whether the tests run under CI: `CI` is set to anything but empty, `0`, `false`
/// or `no` (GitHub Actions, GitLab and `.ci/run` all set `CI=true`).
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| is_truthy(&value))
}

/// The variable that turns the load tests on outside CI: `1`, `true`, `yes`, `on`.
pub const LOAD_TESTS_ENV: &str = "LOGIN_METRICS_LOAD_TESTS";

/// Whether the load tests run: the tests that flood a server far past what the
/// machine can answer, whose outcome depends on the machine as much as on the code.
/// They run under CI ([`in_ci`]) and when [`LOAD_TESTS_ENV`] says so; otherwise this
/// reports one `skipped:` line saying how to run them, and the caller returns.
#[must_use]
pub fn load_tests_on() -> bool {
    let asked = std::env::var(LOAD_TESTS_ENV).is_ok_and(|value| is_truthy(&value));
    if asked || in_ci() {
        return true;
    }
    report(&format!(
        "skipped: {}: a load test; run it with {LOAD_TESTS_ENV}=1 (CI runs it)",
        current_test()
    ));
    false
}

fn is_truthy(value: &str) -> bool {
    !matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no" | "off"
    )
}

/// Prints one line to the process's real standard error.
///
/// `cargo test` captures `println!`/`eprintln!` of passing tests, which would hide
/// why a test did not run; a direct write to stderr is not captured.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Reports that the current test is skipped, and why; the caller then returns.
///
/// Under CI ([`in_ci`]) a skip is a failure: this panics with the reason instead.
pub fn skip(reason: &str) {
    assert!(
        !in_ci(),
        "under CI every test must run, but: {reason} (.ci/run installs what the tests need)"
    );
    report(&format!("skipped: {}: {reason}", current_test()));
}

/// The name of the running test (libtest names each test's thread after it).
#[must_use]
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("this test")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_values_that_mean_no() {
        for no in ["", " ", "0", "false", "FALSE", "no", "off"] {
            assert!(!is_truthy(no), "{no:?}");
        }
        for yes in ["true", "1", "yes", "TRUE", "woodpecker"] {
            assert!(is_truthy(yes), "{yes:?}");
        }
    }

    #[test]
    fn the_current_test_is_named_after_its_thread() {
        assert!(current_test().ends_with("the_current_test_is_named_after_its_thread"));
    }
}
