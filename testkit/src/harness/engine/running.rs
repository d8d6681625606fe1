//! A running engine, container or process: its addresses, its log for error
//! messages, its readiness, and stopping it.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, bail};
use testcontainers::{ContainerAsync, GenericImage};

use super::{Backend, Engine, EngineSpec, LOG_LINES_IN_ERRORS, STARTUP_TIMEOUT};
use crate::harness::docker;
use crate::promql::POLL_EVERY;
use crate::wait::{Check, poll};

/// A running engine. Dropping it stops the engine.
#[derive(Debug)]
pub struct Running {
    pub(super) engine: &'static Engine,
    pub(super) backend: Backend,
    pub(super) port: u16,
    pub(super) network_url: Option<String>,
    pub(super) http: reqwest::Client,
    pub(super) runtime: Runtime,
}

/// What runs: a container, or a process of this machine.
#[derive(Debug)]
pub(super) enum Runtime {
    Container(Box<ContainerAsync<GenericImage>>),
    Native(NativeProcess),
}

/// Fields drop in order: the process dies before its directory is removed.
#[derive(Debug)]
pub(super) struct NativeProcess {
    pub(super) child: Mutex<ChildGuard>,
    pub(super) log_path: PathBuf,
    pub(super) dir: tempfile::TempDir,
}

/// A child process, killed and reaped when dropped.
#[derive(Debug)]
pub(super) struct ChildGuard(pub(super) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Which engine this is.
    #[must_use]
    pub fn spec(&self) -> &'static EngineSpec {
        &self.engine.spec
    }

    /// Where it runs.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How the engine reaches this machine: `host.docker.internal` or `127.0.0.1`.
    #[must_use]
    pub fn host_seen_from_engine(&self) -> &'static str {
        match self.backend {
            Backend::Container => docker::HOST_GATEWAY_NAME,
            Backend::Native => "127.0.0.1",
        }
    }

    /// `http://127.0.0.1:PORT`: the engine's HTTP API as the test sees it.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port on this machine where the engine answers.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `HOST:PORT` under which an engine placed at `peer` reaches this one: through the
    /// host gateway from a container (Docker publishes ports on every interface; a
    /// native engine must have been started with [`Reach::from_containers`](super::Reach::from_containers)), over
    /// loopback from a native process.
    #[must_use]
    pub fn address_for(&self, peer: Backend) -> String {
        match peer {
            Backend::Container => format!("{}:{}", docker::HOST_GATEWAY_NAME, self.port),
            Backend::Native => format!("127.0.0.1:{}", self.port),
        }
    }

    /// `http://NAME:PORT` on the Docker network of [`Reach::network`](super::Reach::network); `None` otherwise.
    #[must_use]
    pub fn network_url(&self) -> Option<&str> {
        self.network_url.as_deref()
    }

    /// An HTTP client with a timeout, that ignores proxy settings.
    #[must_use]
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The engine's own log (container stdout and stderr, or the process' output).
    pub async fn logs(&self) -> String {
        match &self.runtime {
            Runtime::Container(container) => docker::container_logs(container).await,
            Runtime::Native(process) => read_log(&process.log_path),
        }
    }

    /// The last lines of the log, for error messages.
    pub async fn log_tail(&self) -> String {
        docker::tail(&self.logs().await, LOG_LINES_IN_ERRORS)
    }

    /// The directory holding a native engine's configuration, where a test may change
    /// files while it runs (`file_sd` targets); `None` in a container.
    #[must_use]
    pub fn native_config_dir(&self) -> Option<PathBuf> {
        match &self.runtime {
            Runtime::Native(process) => Some(process.dir.path().join("config")),
            Runtime::Container(_) => None,
        }
    }

    /// Stops the engine now and waits until it is gone: the container is removed, the
    /// process killed (and reaped) and its directory deleted. Dropping does the same,
    /// but a container's removal then runs in the background; a test that stops one
    /// engine of several mid-run and checks what the others do calls this instead.
    pub async fn stop(self) -> anyhow::Result<()> {
        let name = self.spec().name;
        match self.runtime {
            Runtime::Container(container) => container
                .rm()
                .await
                .with_context(|| format!("removing the {name} container")),
            Runtime::Native(process) => {
                drop(process);
                Ok(())
            }
        }
    }

    /// `Some(description)` when the engine is no longer running.
    pub async fn exited(&self) -> Option<String> {
        match &self.runtime {
            Runtime::Container(container) => match container.is_running().await {
                Ok(true) => None,
                Ok(false) => Some(match container.exit_code().await {
                    Ok(Some(code)) => format!("container exit code {code}"),
                    _ => "container stopped".to_owned(),
                }),
                Err(e) => Some(format!("container state unknown: {e}")),
            },
            Runtime::Native(process) => {
                let mut child = process.child.lock().unwrap_or_else(PoisonError::into_inner);
                match child.0.try_wait() {
                    Ok(None) => None,
                    Ok(Some(status)) => Some(format!("process {status}")),
                    Err(e) => Some(format!("process state unknown: {e}")),
                }
            }
        }
    }

    /// Polls the ready path until it answers 2xx; fails early when the engine exits.
    pub(super) async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let spec = self.spec();
        let url = format!("{}{}", self.base_url(), spec.ready_path);
        let what = format!("{} ({}) ready at {url}", spec.name, self.backend);
        let ready = poll(&what, STARTUP_TIMEOUT, POLL_EVERY, || async {
            let last = match self.http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Check::Met(Ok(())),
                Ok(response) => format!("HTTP {}", response.status()),
                Err(e) => format!("{e}"),
            };
            match self.exited().await {
                Some(exit) => Check::Met(Err(exit)),
                None => Check::NotYet(last),
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => Ok(()),
            Ok(Err(exit)) => bail!(
                "{} ({}) exited before it was ready ({exit}); log:\n{}",
                spec.name,
                self.backend,
                self.log_tail().await
            ),
            Err(timed_out) => bail!(
                "{} ({}) not ready at {url} within {STARTUP_TIMEOUT:?} (last answer: {}); log:\n{}",
                spec.name,
                self.backend,
                timed_out.last,
                self.log_tail().await
            ),
        }
    }

    /// `GET path` (relative to [`base_url`](Self::base_url)); the JSON body of a 2xx
    /// answer, else an error with the status and the body.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        crate::promql::get_json(&self.http, &format!("{}{path}", self.base_url())).await
    }
}

/// A native engine's log file, or why it cannot be read.
pub(super) fn read_log(path: &Path) -> String {
    match File::open(path).and_then(|mut f| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes)?;
        Ok(bytes)
    }) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            let mut out = String::new();
            let _ = write!(out, "<could not read {}: {e}>", path.display());
            out
        }
    }
}
