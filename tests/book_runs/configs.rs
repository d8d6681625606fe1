//! promtool and amtool on the repository's files, as Steps 2 and 7 run them: no
//! server, no substitution. A rule added to `rules/alerts.yml` changes promtool's
//! count, and the outputs the book shows must change with it.

use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::book::shell::{run, script};

use crate::printed;

/// Runs the command block `name` as written, if `tool` is installed (one
/// `skipped:` line otherwise, a failure under CI), and returns what it printed.
fn run_with(tool: &str, name: &str) -> Option<String> {
    if std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_err()
    {
        login_metrics_testkit::env::skip(&format!(
            "`{tool}` is not installed (`apt install prometheus prometheus-alertmanager`)"
        ));
        return None;
    }
    // Both streams in the order a terminal shows them.
    let output = run(&format!("exec 2>&1\n{}", script(name, &[])), &[], "");
    assert!(
        output.status.success(),
        "`{name}` failed ({}):\n{}",
        output.status,
        printed(&output)
    );
    Some(printed(&output))
}

#[test]
fn promtool_checks_the_configuration_and_both_rule_files_as_steps_2_and_7_show() {
    for (command, output) in [
        ("step-2/promtool-check-config", "step-2/check-config"),
        ("step-7/promtool-check-config", "step-7/check-config"),
    ] {
        if let Some(printed) = run_with("promtool", command) {
            check_output(output, &printed, &Masks::none());
        }
    }
}

#[test]
fn promtool_runs_the_rule_unit_tests_as_step_7_shows() {
    if let Some(printed) = run_with("promtool", "step-7/promtool-test-rules") {
        check_output("step-7/test-rules", &printed, &Masks::none());
    }
}

#[test]
fn amtool_checks_alertmanager_yml_and_routes_as_step_7_shows() {
    if let Some(printed) = run_with("amtool", "step-7/amtool-check-config") {
        check_output("step-7/amtool-check", &printed, &Masks::none());
    }
    if let Some(printed) = run_with("amtool", "step-7/amtool-routes") {
        check_output("step-7/routes", &printed, &Masks::none());
    }
}
