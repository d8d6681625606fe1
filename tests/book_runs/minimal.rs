//! Step 1: the minimal server, run, logged into, and its metrics page read.

use std::time::Duration;

use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::book::shell::{Background, example_binary, run_ok, script, sub};

use crate::field;

#[test]
fn the_minimal_server_prints_its_addresses_and_the_metrics_page_step_1_shows() {
    // `cargo run --example minimal`, on free ports: the example reads them from
    // LOGIN_ADDR and LOGIN_METRICS_ADDR.
    let mut server = Background::start(
        &script(
            "step-1/run",
            &[sub(
                "cargo run --example minimal",
                example_binary("minimal"),
            )],
        ),
        &[
            ("LOGIN_ADDR", "127.0.0.1:0"),
            ("LOGIN_METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    let listening = server.line(Duration::from_secs(60));
    check_output(
        "step-1/listening",
        &listening,
        &Masks::none().loopback_ports(),
    );
    let address = |after: &str| {
        field(&listening.replace(", ", " ").replace(" on ", "="), after)
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let (login, metrics) = (address("login"), address("metrics"));
    let ports = [
        sub("127.0.0.1:5000", login.clone()),
        sub("127.0.0.1:8000", metrics.clone()),
    ];

    let answers = run_ok(&script("step-1/logins", &ports[..1]), &[]);
    for shown in [
        "HTTP/1.1 200 OK",
        r#"{"message":"Login successful"}"#,
        "HTTP/1.1 401 Unauthorized",
        r#"{"message":"Invalid username or password"}"#,
    ] {
        assert!(
            answers.contains(shown),
            "Step 1 says the logins answer `{shown}`:\n{answers}"
        );
    }

    let page = run_ok(&script("step-1/curl-metrics", &ports[1..]), &[]);
    check_output(
        "step-1/metrics",
        &page,
        &Masks::none()
            // The seconds the two logins took.
            .mask("[SECONDS]", r"_sum (?<redacted>[0-9.e-]+)")
            // Where each login fell depends on the machine's speed at that moment;
            // `+Inf` and `_count` are exact.
            .mask("[N]", r#"_bucket\{le="[0-9.]+"\} (?<redacted>\d+)"#),
    );
    drop(server);
}
