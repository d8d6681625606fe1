//! "Watching from outside": the probe account made as the chapter makes it, the
//! exporter's check of the rendered configuration, and the server started with the
//! users file, which lets the probe log in. The exporter and Prometheus running the
//! probe are `tests/probe.rs`.

use login_metrics_testkit::book::shell::{example_binary, run, run_ok, script, shell_quote, sub};

use super::{LoginServer, printed};

/// The exporter's program: Debian's name, or the release archives' one.
fn exporter_program() -> Option<&'static str> {
    ["prometheus-blackbox-exporter", "blackbox_exporter"]
        .into_iter()
        .find(|program| {
            run(&format!("command -v {program}"), &[], "")
                .status
                .success()
        })
}

#[test]
fn the_probe_account_logs_in_and_its_rendered_configuration_passes_the_exporters_check() {
    if !run("command -v envsubst && command -v openssl", &[], "")
        .status
        .success()
    {
        login_metrics_testkit::env::skip(
            "envsubst or openssl is not installed (gettext-base, openssl)",
        );
        return;
    }
    // Where the reader's files go, in a directory of the test's own.
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| shell_quote(&dir.path().join(name).to_string_lossy());
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "# username:argon2-phc-hash\n").unwrap();
    let _silent = run_ok(
        &script(
            "outside/probe-account",
            &[
                sub(
                    "cargo run -q --example hash_password",
                    example_binary("hash_password"),
                ),
                sub("deploy/probe/password", at("password")),
                sub("deploy/probe/blackbox.rendered.yml", at("rendered.yml")),
                sub("users.txt", at("users.txt")),
            ],
        ),
        &[],
    );
    let password = std::fs::read_to_string(dir.path().join("password")).unwrap();
    let password = password.trim_end();
    assert_eq!(password.len(), 48, "24 random bytes in hex");
    let rendered = std::fs::read_to_string(dir.path().join("rendered.yml")).unwrap();
    assert!(
        rendered.contains(&format!(r#""password": "{password}""#)),
        "{rendered}"
    );
    assert!(!rendered.contains("LOGIN_PROBE_PASSWORD"), "{rendered}");
    let lines = std::fs::read_to_string(&users).unwrap();
    assert!(
        lines
            .lines()
            .any(|line| line.starts_with("probe:$argon2id$")),
        "{lines}"
    );

    match exporter_program() {
        Some(program) => {
            let mut substitutions = vec![sub(
                "deploy/probe/blackbox.rendered.yml",
                at("rendered.yml"),
            )];
            if program != "prometheus-blackbox-exporter" {
                substitutions.push(sub("prometheus-blackbox-exporter", program));
            }
            let checked = run(&script("outside/config-check", &substitutions), &[], "");
            assert!(checked.status.success(), "{}", printed(&checked));
        }
        None => login_metrics_testkit::env::skip(
            "the blackbox exporter is not installed (apt install prometheus-blackbox-exporter)",
        ),
    }

    let server = LoginServer::start("outside/server", &[sub("users.txt", at("users.txt"))]);
    let login = |user: &str, password: &str| server.login_status(user, password);
    assert_eq!(login("probe", password), "200");
    assert_eq!(login("probe", "not-the-password"), "401");
}
