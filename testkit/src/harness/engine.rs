//! One way to run a real engine for a test: Prometheus, Alertmanager, VictoriaMetrics
//! or Grafana, from a container image or a native binary, on a free port, with its log
//! in every error.
//!
//! Where an engine runs is decided **once per test binary** ([`Engine::placement`]),
//! not once per test, from what this machine has:
//!
//! | `LOGIN_METRICS_<ENGINE>` | What happens |
//! | --- | --- |
//! | `container` | The image (`<ENGINE>_IMAGE`, else the pinned default) in Docker, or a failure. |
//! | `native` | The engine's binary from `PATH`, or a failure. |
//! | `auto` (default) | The image when Docker answers and the image is present or can be pulled; else the binary; else one `skipped:` line. |
//!
//! In `auto` mode an image that is neither present nor pullable counts the same as no
//! Docker at all: the common case of a laptop offline or behind a proxy. The first
//! test to ask prints one short note or skip line with the reason; later tests print
//! a short line that points at it.
//!
//! Each [`Running`] engine is stopped when dropped: the container is removed, the
//! process killed and its temporary directory deleted.

//!
//! This file holds the engine and the one decision per binary; the rest has a
//! module each: `decision` (where it runs, from what this machine has), `launch`
//! (starting it there) and `running` (the running engine, its log, stopping it).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::sync::OnceCell;

use crate::env;

mod decision;
mod launch;
mod running;

use decision::{Choice, Decision, backend_choice, explicit_image};
pub use decision::{Placement, find_binary};
pub use launch::{BindMount, Launch, LaunchContext, Reach, free_port, http_client};
pub use running::Running;

/// Longest an engine may take to start and answer its ready path.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a pull of a missing image may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest one request to an engine may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many lines of an engine's log an error message carries.
pub const LOG_LINES_IN_ERRORS: usize = 40;

/// Where an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A Docker container started with testcontainers.
    Container,
    /// A child process from a binary on `PATH`.
    Native,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Container => "container",
            Backend::Native => "native",
        })
    }
}

/// What an engine is and how to run it either way.
#[derive(Debug)]
pub struct EngineSpec {
    /// Its name in messages: `Prometheus`.
    pub name: &'static str,
    /// The variable choosing the backend: `LOGIN_METRICS_PROMETHEUS`.
    pub backend_env: &'static str,
    /// The variable naming the image: `PROMETHEUS_IMAGE`.
    pub image_env: &'static str,
    /// The pinned official image, for machines that can pull it.
    pub default_image: &'static str,
    /// Binary names to look for on `PATH`, in order; empty when there is no native build.
    pub binaries: &'static [&'static str],
    /// The port the engine listens on inside its container.
    pub container_port: u16,
    /// The path that answers 2xx once the engine is ready: `/-/ready`.
    pub ready_path: &'static str,
    /// Where configuration files go inside the container.
    pub container_config_dir: &'static str,
    /// The data directory inside the container (writable by the image's user).
    pub container_data_dir: &'static str,
    /// What to install, for the skip line.
    pub install_hint: &'static str,
    /// Whether a skip is accepted under CI. Only Grafana's, which no image here can
    /// satisfy, and which is documented; every other skip fails CI.
    pub skip_allowed_in_ci: bool,
}

/// An engine and the decision, made once per test binary, of where it runs.
#[derive(Debug)]
pub struct Engine {
    spec: EngineSpec,
    decision: OnceCell<Decision>,
    explained: AtomicBool,
}

impl Engine {
    /// An engine described by `spec`.
    #[must_use]
    pub const fn new(spec: EngineSpec) -> Self {
        Self {
            spec,
            decision: OnceCell::const_new(),
            explained: AtomicBool::new(false),
        }
    }

    /// What this engine is.
    #[must_use]
    pub fn spec(&self) -> &EngineSpec {
        &self.spec
    }

    /// The image reference in use: `<ENGINE>_IMAGE`, else the pinned default.
    #[must_use]
    pub fn image(&self) -> String {
        explicit_image(self.spec.image_env).unwrap_or_else(|| self.spec.default_image.to_owned())
    }

    /// Where the engine runs in this test binary, decided by the first caller.
    ///
    /// `Ok(None)`: the engine cannot run here and `auto` mode allows skipping; one line
    /// starting with `skipped:` has been printed and the test should return.
    /// `Err`: an explicit choice (or, under CI, any skip) cannot be met.
    pub async fn placement(&self) -> anyhow::Result<Option<Placement>> {
        let decision = self.decision.get_or_init(|| self.decide()).await;
        match decision {
            Decision::Run { placement, note } => {
                if let Some(note) = note
                    && !self.explained.swap(true, Ordering::SeqCst)
                {
                    env::report(note);
                }
                Ok(Some(placement.clone()))
            }
            Decision::Fail(reason) => Err(anyhow!("{reason}")),
            Decision::Skip(reason) => {
                if env::in_ci() && !self.spec.skip_allowed_in_ci {
                    bail!("under CI every test must run, but: {reason}");
                }
                if self.explained.swap(true, Ordering::SeqCst) {
                    env::report(&format!(
                        "skipped: {}: no {} here (see the first skip line above)",
                        env::current_test(),
                        self.spec.name
                    ));
                } else {
                    env::report(&format!("skipped: {}: {reason}", env::current_test()));
                }
                Ok(None)
            }
        }
    }

    /// Starts the engine where [`placement`](Self::placement) decided, with what
    /// `launch` returns for that place. `Ok(None)`: skipped, and said so.
    pub async fn start(
        &'static self,
        reach: Reach,
        launch: impl Fn(&LaunchContext) -> anyhow::Result<Launch>,
    ) -> anyhow::Result<Option<Running>> {
        let Some(placement) = self.placement().await? else {
            return Ok(None);
        };
        match placement {
            Placement::Container { image } => self.start_container(&image, reach, launch).await,
            Placement::Native { binary } => {
                if reach.network.is_some() {
                    let why = format!("this test needs {} on a Docker network", self.spec.name);
                    if backend_choice(self.spec.backend_env) == Ok(Choice::Only(Backend::Native)) {
                        // Asked for on purpose, not missing: the container pass covers it.
                        env::report(&format!(
                            "skipped: {}: {why}, and {}=native",
                            env::current_test(),
                            self.spec.backend_env
                        ));
                    } else {
                        env::skip(&format!(
                            "{why}, and there is no {} image here",
                            self.spec.name
                        ));
                    }
                    return Ok(None);
                }
                self.start_native(&binary, &reach, launch).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!(Backend::Container.to_string(), "container");
        assert_eq!(Backend::Native.to_string(), "native");
    }
}
