//! Step 7's Alertmanager, started as the book starts it, and `amtool` asking it.
//! Debian's package names the program `prometheus-alertmanager`, which runs where
//! `alertmanager` is not on PATH; port 9093 is a free one, and clustering (port
//! 9094) is off, so that parallel runs do not meet.

use std::time::Duration;

use login_metrics_testkit::book::shell::{Background, run, run_ok, script, sub};
use login_metrics_testkit::wait::{Check, poll_blocking};

use crate::{free_port, printed};

fn on_path(binary: &str) -> bool {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn alertmanager_runs_with_the_repositorys_file_and_amtool_silences_an_alert() {
    let program = ["alertmanager", "prometheus-alertmanager"]
        .into_iter()
        .find(|p| on_path(p));
    let Some(program) = program else {
        login_metrics_testkit::env::skip(
            "no `alertmanager` or `prometheus-alertmanager` on PATH \
             (`apt install prometheus-alertmanager`)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let _alertmanager = Background::start(
        &script(
            "step-7/alertmanager",
            &[
                sub(
                    "alertmanager --config.file",
                    format!("{program} --config.file"),
                ),
                sub(
                    "/tmp/login-metrics-alertmanager",
                    format!(
                        "{} --web.listen-address={web} --cluster.listen-address=",
                        dir.path().display()
                    ),
                ),
            ],
        ),
        &[],
    );
    poll_blocking(
        "Alertmanager to be ready",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            if run(&format!("curl -sf http://{web}/-/ready"), &[], "")
                .status
                .success()
            {
                Check::Met(())
            } else {
                Check::NotYet("not ready".to_owned())
            }
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    let asked = run(
        &script(
            "step-7/amtool-silence",
            &[sub(
                "amtool ",
                format!("amtool --alertmanager.url=http://{web} "),
            )],
        ),
        &[],
        "",
    );
    assert!(asked.status.success(), "{}", printed(&asked));
    let silences = run_ok(
        &format!("amtool --alertmanager.url=http://{web} silence query -o extended"),
        &[],
    );
    assert!(
        silences.contains("alertname=\"LoginMalformedRequests\"")
            || silences.contains("alertname=LoginMalformedRequests"),
        "{silences}"
    );
}
