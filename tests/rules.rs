//! The alerting half, checked without running anything: the rule files and
//! `alertmanager.yml` pass their tools' checks, every alert's logic passes its
//! `promtool test rules` cases, and every alert and recording rule follows the
//! conventions Step 7 states (severity, annotations, a runbook that exists, names).

use std::collections::{BTreeMap, BTreeSet};

use login_metrics_testkit::book::markdown_files;
use login_metrics_testkit::repo_root;
use login_metrics_testkit::repository_yaml;
use login_metrics_testkit::tools::{amtool, promtool};
use regex::Regex;
use serde_yaml_ng::Value as Yaml;

const RULE_FILES: [&str; 3] = [
    "rules/recording.yml",
    "rules/alerts.yml",
    "rules/native-histograms.yml",
];
/// The files of recording rules: the classic ones, and those of the native form.
const RECORDING_FILES: [&str; 2] = ["rules/recording.yml", "rules/native-histograms.yml"];
/// Where the book is published; every `runbook_url` starts with it.
const BOOK_URL: &str = "https://login-metrics.github.io/login-metrics/";

/// Every rule of a rule file, across its groups.
fn rules(path: &str) -> Vec<Yaml> {
    repository_yaml(path)["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap().clone())
        .collect()
}

fn alert_names() -> BTreeSet<String> {
    rules("rules/alerts.yml")
        .iter()
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect()
}

fn recording_names() -> BTreeSet<String> {
    RECORDING_FILES
        .iter()
        .flat_map(|file| recording_names_in(file))
        .collect()
}

fn recording_names_in(file: &str) -> BTreeSet<String> {
    rules(file)
        .iter()
        .filter_map(|rule| rule["record"].as_str().map(str::to_owned))
        .collect()
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The unit-test files under `rules/tests`.
fn rule_test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("rules/tests"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .map(|path| {
            path.strip_prefix(repo_root())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_rule_files_pass_promtool_check_rules() {
    let Some(output) = promtool(&[&["check", "rules"][..], &RULE_FILES].concat(), b"") else {
        return;
    };
    let text = output_text(&output);
    assert!(output.status.success(), "{text}");
    let found = Regex::new(r"SUCCESS: (\d+) rules found").unwrap();
    let counts: Vec<usize> = found
        .captures_iter(&text)
        .map(|c| c[1].parse().unwrap())
        .collect();
    assert_eq!(
        counts,
        [
            recording_names_in(RULE_FILES[0]).len(),
            rules(RULE_FILES[1]).len(),
            recording_names_in(RULE_FILES[2]).len()
        ],
        "{text}"
    );
}

#[test]
fn every_alert_and_recording_rule_passes_its_promtool_unit_tests() {
    let files = rule_test_files();
    assert!(!files.is_empty());
    let args: Vec<&str> = ["test", "rules"]
        .into_iter()
        .chain(files.iter().map(String::as_str))
        .collect();
    let Some(output) = promtool(&args, b"") else {
        return;
    };
    let text = output_text(&output);
    assert!(output.status.success(), "promtool test rules:\n{text}");
    assert_eq!(
        text.matches("  SUCCESS").count(),
        files.len(),
        "one SUCCESS per file:\n{text}"
    );
}

/// The unit tests cover every alert both ways, and every recording rule.
#[test]
fn every_alert_has_a_firing_and_a_quiet_case_and_every_recording_rule_a_case() {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut expressions = String::new();
    for file in rule_test_files() {
        for test in repository_yaml(&file)["tests"].as_sequence().unwrap() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_owned();
                match case["exp_alerts"].as_sequence() {
                    Some(expected) if !expected.is_empty() => firing.insert(name),
                    _ => quiet.insert(name),
                };
            }
            for case in test["promql_expr_test"].as_sequence().into_iter().flatten() {
                expressions.push_str(case["expr"].as_str().unwrap());
                expressions.push('\n');
            }
        }
    }
    let alerts = alert_names();
    assert_eq!(firing, alerts, "alerts with a case where they fire");
    assert_eq!(quiet, alerts, "alerts with a case where they do not");
    let untested: Vec<String> = recording_names()
        .into_iter()
        .filter(|name| !expressions.contains(name.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "recording rules without a promql_expr_test: {untested:?}"
    );
}

#[test]
fn recording_rules_are_named_level_metric_operations() {
    let convention = Regex::new(r"^[a-z_]+:[a-z_]+:[a-z0-9_]+$").unwrap();
    for name in recording_names() {
        assert!(
            convention.is_match(&name),
            "{name} is not level:metric:operations"
        );
    }
}

/// mdBook's id for a heading: lower case, spaces to `-`, other punctuation dropped.
fn heading_id(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c),
            _ => None,
        })
        .collect()
}

/// Heading ids of every chapter, by the path the book publishes it at (`x/y.html`).
fn book_anchors() -> BTreeMap<String, BTreeSet<String>> {
    let src = repo_root().join("book/src");
    markdown_files(&src)
        .unwrap()
        .into_iter()
        .map(|file| {
            let page = file
                .strip_prefix(&src)
                .unwrap()
                .with_extension("html")
                .to_string_lossy()
                .into_owned();
            let ids = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .filter_map(|line| line.strip_prefix('#'))
                .map(|heading| heading_id(heading.trim_start_matches('#')))
                .collect();
            (page, ids)
        })
        .collect()
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section() {
    let anchors = book_anchors();
    let alerts = rules("rules/alerts.yml");
    assert!(!alerts.is_empty());
    for alert in &alerts {
        let name = alert["alert"].as_str().unwrap();
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["page", "ticket"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        let annotations = &alert["annotations"];
        for key in ["summary", "description"] {
            let text = annotations[key].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name}: no {key}");
        }
        let description = annotations["description"].as_str().unwrap();
        assert!(
            description.contains("$value") || description.contains("$labels"),
            "{name}: the description says nothing of the value or the target: {description}"
        );
        let url = annotations["runbook_url"].as_str().unwrap_or_default();
        let (page, fragment) = url
            .strip_prefix(BOOK_URL)
            .and_then(|rest| rest.split_once('#'))
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not {BOOK_URL}PAGE#SECTION"));
        let ids = anchors
            .get(page)
            .unwrap_or_else(|| panic!("{name}: {page} is not a page of the book"));
        assert!(
            ids.contains(fragment),
            "{name}: {page} has no section #{fragment}"
        );
        assert_eq!(
            fragment,
            name.to_lowercase(),
            "{name}: the section is named after the alert"
        );
    }
}

#[test]
fn heading_ids_are_made_the_way_mdbook_makes_them() {
    assert_eq!(heading_id(" LoginServerDown"), "loginserverdown");
    assert_eq!(heading_id(" What to do, now!"), "what-to-do-now");
    assert_eq!(
        heading_id(" `$__rate_interval` instead"),
        "__rate_interval-instead"
    );
}

#[test]
fn alertmanager_yml_passes_amtool_check_config() {
    let Some(output) = amtool(&["check-config", "alertmanager.yml"]) else {
        return;
    };
    let text = output_text(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    // The receivers the routes name exist, and one of them gets what matches nothing.
    assert!(text.contains(" - 2 receivers"), "{text}");
    assert!(text.contains(" - 2 inhibit rules"), "{text}");
}

#[test]
fn pages_and_tickets_reach_their_own_receivers() {
    for (labels, receiver) in [
        ("severity=page", "page"),
        ("severity=ticket", "ticket"),
        ("alertname=Unrouted", "ticket"),
    ] {
        let Some(output) = amtool(&[
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            labels,
        ]) else {
            return;
        };
        // The receiver is on stdout; amtool may add a warning on stderr.
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{labels}: {}",
            output_text(&output)
        );
        assert_eq!(stdout.trim(), receiver, "{labels}");
    }
}
