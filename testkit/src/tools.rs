//! The engines' own command-line checkers, `promtool` and `amtool`, run from the
//! repository's root.

/// Runs `promtool` (shipped with Prometheus) with `args`, feeding `stdin`, from the
/// repository's root.
///
/// Returns `None` after one `skipped:` line when promtool is not installed; under
/// CI a missing promtool is a failure (see [`crate::env::skip`]).
#[must_use]
pub fn promtool(args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
    run_tool(
        "promtool",
        "install Prometheus, which ships it (e.g. `apt install prometheus`)",
        args,
        stdin,
    )
}

/// Runs `amtool` (shipped with Alertmanager) with `args` from the repository's root,
/// like [`promtool`].
#[must_use]
pub fn amtool(args: &[&str]) -> Option<std::process::Output> {
    run_tool(
        "amtool",
        "install Alertmanager, which ships it (e.g. `apt install prometheus-alertmanager`)",
        args,
        b"",
    )
}

fn run_tool(
    tool: &str,
    install: &str,
    args: &[&str],
    stdin: &[u8],
) -> Option<std::process::Output> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let spawned = Command::new(tool)
        .args(args)
        .current_dir(crate::repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            crate::env::skip(&format!("{tool} not found ({error}); {install}"));
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .unwrap_or_else(|error| panic!("writing to {tool}: {error}"));
    Some(
        child
            .wait_with_output()
            .unwrap_or_else(|error| panic!("waiting for {tool}: {error}")),
    )
}
