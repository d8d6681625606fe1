//! Docker Compose, asked to validate `docker-compose.yml` (`compose config`).
//! Readers have one of two forms, the `docker compose` plugin or the older
//! `docker-compose` program; the tests use whichever answers, as the book tells
//! readers to.
//!
//! ```no_run
//! use login_metrics_testkit::compose::Stack;
//!
//! // `None`: no compose command here, and the skip line is printed.
//! if let Some(config) = Stack::new().password("secret").profile("scale").merged() {
//!     assert!(config["services"]["victoria-metrics"].is_mapping());
//! }
//! ```

use std::process::{Command, Output};

use serde_yaml_ng::Value as Yaml;

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

/// `compose [--profile P] --file docker-compose.yml [--file O ...] config` in the
/// repository, as a reader types it, with the Grafana admin password set (or unset)
/// and none of the stack's other variables inherited from the test's environment.
#[derive(Debug, Default, Clone)]
pub struct Stack<'a> {
    password: Option<&'a str>,
    profile: Option<&'a str>,
    overrides: Vec<&'a str>,
}

impl<'a> Stack<'a> {
    /// `docker-compose.yml` alone, without a Grafana admin password.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// What `export GRAFANA_ADMIN_PASSWORD=...` hands to compose.
    #[must_use]
    pub fn password(mut self, password: &'a str) -> Self {
        self.password = Some(password);
        self
    }

    /// `--profile profile`.
    #[must_use]
    pub fn profile(mut self, profile: &'a str) -> Self {
        self.profile = Some(profile);
        self
    }

    /// An override file (`deploy/probe/compose.yml`) after `docker-compose.yml`.
    #[must_use]
    pub fn with_file(mut self, file: &'a str) -> Self {
        self.overrides.push(file);
        self
    }

    /// The stack as `compose config` merges it, parsed. `None`, with the skip line
    /// printed, where no compose command is installed. Panics with compose's
    /// complaint when it refuses the files.
    #[must_use]
    pub fn merged(&self) -> Option<Yaml> {
        let (cmd, output) = self.run()?;
        assert!(
            output.status.success(),
            "{} config: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Some(serde_yaml_ng::from_slice(&output.stdout).expect("compose config prints YAML"))
    }

    /// What compose says when it refuses the stack. `None`, with the skip line
    /// printed, where no compose command is installed. Panics if compose accepts it.
    #[must_use]
    pub fn refusal(&self) -> Option<String> {
        let (cmd, output) = self.run()?;
        assert!(
            !output.status.success(),
            "{} config accepted {self:?}",
            cmd.join(" ")
        );
        Some(String::from_utf8_lossy(&output.stderr).into_owned())
    }

    fn run(&self) -> Option<(Vec<&'static str>, Output)> {
        let Some(cmd) = command() else {
            crate::env::skip("neither `docker compose` nor `docker-compose` is installed");
            return None;
        };
        let mut command = Command::new(cmd[0]);
        command.args(&cmd[1..]);
        if let Some(profile) = self.profile {
            command.args(["--profile", profile]);
        }
        command.args(["--file", "docker-compose.yml"]);
        for file in &self.overrides {
            command.args(["--file", file]);
        }
        command
            .arg("config")
            .current_dir(repo_root())
            .env_remove("GRAFANA_ADMIN_PASSWORD")
            .env_remove("GRAFANA_ANONYMOUS_ENABLED")
            .env_remove("PROMETHEUS_URL");
        if let Some(password) = self.password {
            command.env("GRAFANA_ADMIN_PASSWORD", password);
        }
        let output = command
            .output()
            .expect("the compose command ran a moment ago");
        Some((cmd, output))
    }
}
