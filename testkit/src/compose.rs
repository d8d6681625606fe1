//! Docker Compose, asked to validate `docker-compose.yml` (`compose config`).
//! Readers have one of two forms, the `docker compose` plugin or the older
//! `docker-compose` program; the tests use whichever answers, as the book tells
//! readers to.

use std::process::{Command, Output};

use crate::repo_root;

/// `docker compose` (v2) or `docker-compose` (v1), whichever answers.
#[must_use]
pub fn command() -> Option<Vec<&'static str>> {
    [vec!["docker", "compose"], vec!["docker-compose"]]
        .into_iter()
        .find(|cmd| {
            Command::new(cmd[0])
                .args(&cmd[1..])
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// `compose [--profile P] --file docker-compose.yml config` in the repository,
/// with the Grafana admin password set to `password` (or unset) and none of the
/// stack's other variables inherited from the test's environment.
#[must_use]
pub fn config(cmd: &[&str], password: Option<&str>, profile: Option<&str>) -> Output {
    config_with(cmd, password, profile, &[])
}

/// [`config`] with override files (`deploy/probe/compose.yml`) after
/// `docker-compose.yml`, as a reader passes them with `--file`.
#[must_use]
pub fn config_with(
    cmd: &[&str],
    password: Option<&str>,
    profile: Option<&str>,
    overrides: &[&str],
) -> Output {
    let mut command = Command::new(cmd[0]);
    command.args(&cmd[1..]);
    if let Some(profile) = profile {
        command.args(["--profile", profile]);
    }
    command.args(["--file", "docker-compose.yml"]);
    for file in overrides {
        command.args(["--file", file]);
    }
    command
        .arg("config")
        .current_dir(repo_root())
        .env_remove("GRAFANA_ADMIN_PASSWORD")
        .env_remove("GRAFANA_ANONYMOUS_ENABLED")
        .env_remove("PROMETHEUS_URL");
    if let Some(password) = password {
        command.env("GRAFANA_ADMIN_PASSWORD", password);
    }
    command
        .output()
        .expect("the compose command ran a moment ago")
}
