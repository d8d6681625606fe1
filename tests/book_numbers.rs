//! The numbers in the book's prose that come from the code or the configuration,
//! each checked against its source: the status codes `/login` answers, the
//! reasons a connection ends, the histogram's buckets, the dashboard's panels and
//! rows, the windows of the SLO rules, the series one replica exports and the
//! budgets Step 9 derives from them. A number the prose states and no test checks
//! is a number that drifts; where a count would not be checked, the book says
//! "every" instead.
//!
//! Numbers are found with a pattern around them, in words (`eleven`) or digits
//! (`3,050`), so that a change to the code fails here with the sentence to fix.

use std::collections::BTreeSet;
use std::fs;

use login_metrics::limits::{CONNECTION_BUFFER, HEADER_BLOCK_LIMIT, Limits, METRICS_CONNECTIONS};
use login_metrics::logging::{BUFFERED_BYTES, BUFFERED_LINES, METHOD_MAX};
use login_metrics::metrics::{
    Closed, HandshakeFailed, LATENCY_BUCKETS, Refused, STATUS_CODES, Unauthorized,
};
use login_metrics::metrics_listener::MetricsListener;
use login_metrics_testkit::book::book_src_dir;
use login_metrics_testkit::dashboard::{dashboard_file, load_dashboard};
use login_metrics_testkit::repository_yaml;
use regex::Regex;

const WORDS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

fn chapter(path: &str) -> String {
    fs::read_to_string(book_src_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A number written as digits (with thousands separators) or as a word.
fn parse(number: &str) -> usize {
    let lower = number.to_ascii_lowercase();
    WORDS
        .iter()
        .position(|word| *word == lower)
        .unwrap_or_else(|| {
            lower
                .replace(',', "")
                .parse()
                .unwrap_or_else(|_| panic!("`{number}` is not a number"))
        })
}

/// The number each match of `pattern` (whose group `n` is the number; any run of
/// white space in the pattern matches a line break too) holds in `path`; fails
/// when the pattern is not found, so that a reworded sentence is seen.
fn numbers(path: &str, pattern: &str) -> Vec<usize> {
    let pattern = pattern.replace(' ', r"\s+");
    let regex = Regex::new(&pattern).unwrap();
    let text = chapter(path);
    let found: Vec<usize> = regex
        .captures_iter(&text)
        .map(|captures| parse(&captures["n"]))
        .collect();
    assert!(
        !found.is_empty(),
        "book/src/{path} no longer says /{pattern}/: update this test with the sentence"
    );
    found
}

fn assert_says(path: &str, pattern: &str, expected: usize, what: &str) {
    for said in numbers(path, pattern) {
        assert_eq!(
            said, expected,
            "book/src/{path} says {said} for {what} (/{pattern}/), the code has {expected}"
        );
    }
}

const N: &str = r"(?<n>[\w,]+)";

#[test]
fn the_prose_counts_the_status_codes_and_close_reasons_the_server_exports() {
    let codes = STATUS_CODES.len();
    assert_says(
        "hardening/counting.md",
        &format!(r"with one of {N} status codes"),
        codes,
        "the status codes",
    );
    assert_says(
        "hardening/index.md",
        &format!(r"(?i){N} status codes, each explained"),
        codes,
        "the status codes",
    );
    let reasons = Closed::ALL.len();
    for (path, pattern) in [
        (
            "hardening/counting.md",
            format!(r"a connection ended, one of {N}\."),
        ),
        (
            "hardening/limits.md",
            format!(r"under one `reason` of {N},"),
        ),
        ("hardening/limits.md", format!(r"All {N} reasons at 0")),
        (
            "reference/metrics.md",
            format!(r"only the {N} values above"),
        ),
    ] {
        assert_says(path, &pattern, reasons, "the reasons a connection ends");
    }
    assert_says(
        "reference/metrics.md",
        &format!(r"\(and {N} on the metrics listener's refusals\)"),
        Refused::ALL.len(),
        "the reasons the metrics listener refuses a connection",
    );
}

/// The values in the first column of the table that starts at `header` in `text`.
fn rows_after(text: &str, header: &str) -> BTreeSet<String> {
    let table = &text[text.find(header).expect("the table") + 1..];
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.split('`').nth(1).unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_reference_tables_list_every_status_code_close_reason_and_refusal() {
    let metrics = chapter("reference/metrics.md");
    let codes: BTreeSet<String> = STATUS_CODES
        .iter()
        .map(|c| c.as_u16().to_string())
        .collect();
    assert_eq!(
        rows_after(&metrics, "\n| `status_code` |"),
        codes,
        "reference/metrics.md's table of status codes"
    );
    let reasons: BTreeSet<String> = Closed::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(
        rows_after(&metrics, "\n| `reason` | The connection ended because |"),
        reasons,
        "reference/metrics.md's table of reasons"
    );
    let refused: BTreeSet<String> = Refused::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(
        rows_after(
            &metrics,
            "\n| `reason` | The connection was refused because |"
        ),
        refused,
        "reference/metrics.md's table of the metrics listener's refusals"
    );

    // Step 5 names the 4xx codes the tutorial's `4..` matches.
    let step_5 = chapter("step-5-panels.md");
    let sentence =
        Regex::new(r"Against\s+the\s+production\s+server\s+that\s+is(?s:.*?)So\s+this\s+panel")
            .unwrap()
            .find(&step_5)
            .expect("Step 5 says what `4..` matches against the production server");
    let (start, end) = (sentence.start(), sentence.end());
    let named: BTreeSet<String> = Regex::new(r"\b4\d\d\b")
        .unwrap()
        .find_iter(&step_5[start..end])
        .map(|m| m.as_str().to_owned())
        .collect();
    let client_errors: BTreeSet<String> =
        codes.into_iter().filter(|c| c.starts_with('4')).collect();
    assert_eq!(named, client_errors, "Step 5's list of what `4..` matches");
}

#[test]
fn the_prose_counts_the_dashboards_panels_and_rows() {
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let panels = dashboard.panels.len();
    let rows = dashboard
        .panels
        .iter()
        .map(|panel| panel.grid_pos.y)
        .collect::<BTreeSet<_>>()
        .len();
    for path in ["step-4-grafana.md", "step-5-panels.md"] {
        assert_says(
            path,
            &format!(r"{N} panels in \w+ rows"),
            panels,
            "the panels",
        );
        assert_says(path, &format!(r"\w+ panels in {N} rows"), rows, "the rows");
    }
    // Step 5's table: one line per panel, with its row.
    let step_5 = chapter("step-5-panels.md");
    let table: Vec<(usize, String)> = step_5
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let row = cells.get(1)?.parse().ok()?;
            Some((row, (*cells.get(2)?).to_owned()))
        })
        .collect();
    let titles: BTreeSet<String> = dashboard.panels.iter().map(|p| p.title.clone()).collect();
    let listed: BTreeSet<String> = table.iter().map(|(_, title)| title.clone()).collect();
    assert_eq!(listed, titles, "Step 5's table of panels, by title");
    assert_eq!(
        table.iter().map(|(row, _)| *row).max(),
        Some(rows),
        "Step 5's table numbers the rows"
    );
}

#[test]
fn the_prose_counts_the_histograms_buckets_and_the_slo_windows() {
    assert_says(
        "reference/metrics.md",
        &format!(r"there are {N} \(plus `\+Inf`\)"),
        LATENCY_BUCKETS.len(),
        "the finite buckets",
    );
    let recording = repository_yaml("rules/recording.yml");
    let windows = recording["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .filter(|rule| {
            rule["record"]
                .as_str()
                .is_some_and(|name| name.starts_with("job:login_requests_errors:ratio_rate"))
        })
        .count();
    assert_says(
        "step-7-alerting.md",
        &format!(r"bad logins over {N} windows"),
        windows,
        "the SLO windows",
    );
}

/// The series one replica exports, as Step 9 counts them. Its total is checked
/// against a real scrape by `tests/login_server_example.rs`.
#[test]
fn step_9s_series_budget_adds_up_from_the_code() {
    let path = "step-9-scale.md";
    let one = |pattern: &str| numbers(path, &pattern.replace("{N}", N))[0];
    let total = one(r"of this server exports {N} series");
    let codes = one(r"series: {N} counters by status code");
    let histogram = one(r"{N} for the latency histogram");
    let buckets = one(r"latency histogram \({N} buckets");
    let connections = one(r"{N} about login connections");
    let reasons = one(r"\({N} reasons a connection ended");
    let refused = one(r"{N} reasons the metrics listener refuses a connection");
    let unauthorized = one(r"{N}\s+reasons it answers a scrape 401");
    let handshakes = one(r"{N}\s+reasons it gives up a TLS handshake");
    let hashing = one(r"{N} hashing gauges");
    let process = one(r"and {N} process metrics");
    let added = one(r"Prometheus adds {N} per target");
    let per_replica = one(r"{N} per replica\.");
    assert_eq!(codes, STATUS_CODES.len());
    assert_eq!(buckets, LATENCY_BUCKETS.len() + 1, "the buckets with +Inf");
    assert_eq!(histogram, buckets + 2, "the buckets, _sum and _count");
    assert_eq!(reasons, Closed::ALL.len());
    assert_eq!(refused, Refused::ALL.len());
    assert_eq!(unauthorized, Unauthorized::ALL.len());
    assert_eq!(handshakes, HandshakeFailed::ALL.len());
    assert_eq!(
        connections,
        reasons + 2,
        "the reasons, the open connections and the budget"
    );
    // Four single series: the throttle's gauge, in flight, unmatched, dropped log lines.
    assert_eq!(
        total,
        codes
            + histogram
            + connections
            + refused
            + unauthorized
            + handshakes
            + hashing
            + 4
            + process,
        "the parts add up to the total"
    );
    assert_eq!(per_replica, total + added);
    assert_says(
        path,
        r"Three replicas: (?<n>[\d,]+)\.",
        3 * per_replica,
        "three replicas",
    );
    assert_says(
        path,
        r"Fifty: (?<n>[\d,]+)\.",
        50 * per_replica,
        "fifty replicas",
    );
    assert_says(
        path,
        r"the same [\d,]+ with deduplication, (?<n>[\d,]+) without",
        2 * 50 * per_replica,
        "fifty replicas written twice",
    );
    assert_says(
        path,
        r"50 × 10 × \d+ = (?<n>[\d,]+) new series",
        50 * 10 * per_replica,
        "a day of deployments",
    );
    // A year of those days, in hundred thousands: "about 12.6 million".
    assert_says(
        path,
        r"A year of them in the long-term store is about (?<n>\d+)\.\d million",
        50 * 10 * per_replica * 365 / 1_000_000,
        "a year of deployments, whole millions",
    );
    assert_says(
        path,
        r"A year of them in the long-term store is about \d+\.(?<n>\d) million",
        (50 * 10 * per_replica * 365 + 50_000) / 100_000 % 10,
        "a year of deployments, tenths of a million",
    );
    assert_says(
        path,
        r"becomes (?<n>\d+) series per replica instead of \d+",
        5 * histogram,
        "the histogram with a label of five values",
    );
}

#[test]
fn the_prose_states_the_limits_and_defaults_the_code_sets() {
    let limits = Limits::default();
    let scrapers = MetricsListener::default();
    let seconds = |d: std::time::Duration| usize::try_from(d.as_secs()).unwrap();
    for (path, pattern, expected, what) in [
        (
            "hardening/limits.md",
            r"a small budget of its own, {N} connections",
            METRICS_CONNECTIONS,
            "the metrics listener's budget",
        ),
        (
            "hardening/limits.md",
            r"The metrics listener's budget of {N} is small",
            METRICS_CONNECTIONS,
            "the metrics listener's budget",
        ),
        (
            "reference/metrics.md",
            r"budget of {N} connections was full",
            METRICS_CONNECTIONS,
            "the metrics listener's budget",
        ),
        (
            "hardening/limits.md",
            r"read at most {N} KiB of line and headers",
            HEADER_BLOCK_LIMIT / 1024,
            "the header block limit",
        ),
        (
            "hardening/limits.md",
            r"hold at most {N} KiB of a connection's",
            CONNECTION_BUFFER / 1024,
            "the connection's buffer",
        ),
        (
            "hardening/limits.md",
            r"requests, {N} by default, on both listeners",
            limits.max_requests_per_connection,
            "the requests per connection",
        ),
        (
            "hardening/limits.md",
            r"`LOGIN_WRITE_TIMEOUT`, {N} seconds",
            seconds(limits.write_timeout),
            "the write timeout",
        ),
        (
            "hardening/limits.md",
            r"`--metrics-max-connections-per-client`, {N} by default",
            scrapers.max_connections_per_client,
            "the metrics listener's share per address",
        ),
        (
            "hardening/limits.md",
            r"connections then takes {N}, and",
            scrapers.max_connections_per_client,
            "the metrics listener's share per address",
        ),
        (
            "hardening/limits.md",
            r"`--metrics-idle-timeout`, {N} seconds",
            seconds(scrapers.idle_timeout),
            "the metrics listener's idle timeout",
        ),
        (
            "hardening/shutdown-and-logs.md",
            r"{N} queued lines with a method",
            BUFFERED_LINES,
            "the log queue's lines",
        ),
        (
            "hardening/shutdown-and-logs.md",
            r"also stops at {N} MiB",
            BUFFERED_BYTES / (1024 * 1024),
            "the log queue's bytes",
        ),
        (
            "hardening/shutdown-and-logs.md",
            r"as it is up to {N} characters",
            METHOD_MAX,
            "the longest method logged as it is",
        ),
        (
            "hardening/shutdown-and-logs.md",
            r"longer method than {N} characters is written as its first",
            METHOD_MAX,
            "the longest method logged as it is",
        ),
    ] {
        assert_says(path, &pattern.replace("{N}", N), expected, what);
    }
}
