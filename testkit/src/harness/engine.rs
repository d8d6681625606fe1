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

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use testcontainers::core::client::docker_client_instance;
use testcontainers::core::{AccessMode, Host, IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, CopyTargetOptions, GenericImage, ImageExt};
use tokio::sync::OnceCell;

use super::docker;
use crate::env;
use crate::promql::POLL_EVERY;
use crate::wait::{Check, poll};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
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

/// Where [`Engine::placement`] decided to run the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// In Docker, from this image reference.
    Container {
        /// `name:tag`.
        image: String,
    },
    /// As a process of this binary.
    Native {
        /// An executable file.
        binary: PathBuf,
    },
}

impl Placement {
    /// The backend of this placement.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Placement::Container { .. } => Backend::Container,
            Placement::Native { .. } => Backend::Native,
        }
    }

    /// The host name under which the engine reaches this machine (the login server
    /// under test, a webhook): the Docker host gateway, or loopback.
    #[must_use]
    pub fn host_seen_from_engine(&self) -> &'static str {
        match self {
            Placement::Container { .. } => docker::HOST_GATEWAY_NAME,
            Placement::Native { .. } => "127.0.0.1",
        }
    }
}

#[derive(Debug, Clone)]
enum Decision {
    Run {
        placement: Placement,
        note: Option<String>,
    },
    Skip(String),
    Fail(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Auto,
    Only(Backend),
}

/// What the launch closure learns about where the engine will run.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    /// Container or native.
    pub backend: Backend,
    /// How the engine reaches this machine: `host.docker.internal` or `127.0.0.1`.
    pub host: String,
    /// The directory the launch's files land in, as the engine sees it.
    pub config_dir: String,
    /// A writable, empty data directory, as the engine sees it.
    pub data_dir: String,
    /// The listen address to give the engine: `:9090` in a container, `IP:PORT` natively.
    pub listen: String,
}

/// What to run: files to place in the configuration directory, arguments, environment,
/// and directories of this machine to share with a container.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// `(path relative to the configuration directory, contents)`.
    pub files: Vec<(String, Vec<u8>)>,
    /// Command-line arguments (the image's entrypoint or the binary comes first).
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Directories of this machine bind-mounted read-only into a container, for files
    /// a test changes while the engine runs (`file_sd` targets). A native engine
    /// reads the host path itself, so the launch closure names the host path there
    /// and leaves this empty (it is ignored natively).
    pub mounts: Vec<BindMount>,
}

/// A directory of this machine seen read-only inside a container.
///
/// The image's user must be able to read it: official images run as an
/// unprivileged user (`nobody`), so the directory needs mode 0755 and its files 0644
/// (a `tempfile` directory is 0700: [`BindMount::new`] does not change modes; the
/// owner of the directory must).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// An absolute path on this machine.
    pub host: PathBuf,
    /// An absolute path inside the container.
    pub container: String,
}

impl BindMount {
    /// `host` seen at `container`.
    #[must_use]
    pub fn new(host: impl Into<PathBuf>, container: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            container: container.into(),
        }
    }
}

/// How the engine must be reachable.
#[derive(Debug, Default, Clone)]
pub struct Reach {
    /// Join this Docker network as this container name (`(network, name)`), so other
    /// containers reach it by name. Needs the container backend: a native placement
    /// skips (or fails, when the container backend was asked for explicitly).
    pub network: Option<(String, String)>,
    /// A native engine listens on all interfaces, so that containers reach it through
    /// the host gateway; otherwise on loopback only.
    pub from_containers: bool,
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

    async fn decide(&self) -> Decision {
        let spec = &self.spec;
        let choice = match backend_choice(spec.backend_env) {
            Ok(choice) => choice,
            Err(error) => return Decision::Fail(error),
        };
        let image = self.image();
        let container = match choice {
            Choice::Only(Backend::Native) => None,
            _ => Some(container_ready(&image).await),
        };
        let binary = match choice {
            Choice::Only(Backend::Container) => None,
            _ => find_binary(spec.binaries),
        };
        let explicit = explicit_image(spec.image_env).is_some();
        conclude(spec, choice, image, explicit, container, binary)
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

    async fn start_container(
        &'static self,
        image: &str,
        reach: Reach,
        launch: impl Fn(&LaunchContext) -> anyhow::Result<Launch>,
    ) -> anyhow::Result<Option<Running>> {
        let spec = &self.spec;
        let context = LaunchContext {
            backend: Backend::Container,
            host: docker::HOST_GATEWAY_NAME.to_owned(),
            config_dir: spec.container_config_dir.to_owned(),
            data_dir: spec.container_data_dir.to_owned(),
            listen: format!(":{}", spec.container_port),
        };
        let Launch {
            files,
            args,
            env,
            mounts,
        } = launch(&context)?;
        let (name, tag) = docker::split_image_reference(image);
        let mut request = GenericImage::new(name, tag)
            .with_exposed_port(spec.container_port.tcp())
            .with_cmd(args)
            .with_host(docker::HOST_GATEWAY_NAME, Host::HostGateway)
            .with_startup_timeout(STARTUP_TIMEOUT);
        for (path, bytes) in files {
            // World-readable: official images run as an unprivileged user.
            let target = format!("{}/{path}", spec.container_config_dir);
            request = request.with_copy_to(CopyTargetOptions::new(target).with_mode(0o644), bytes);
        }
        for (key, value) in env {
            request = request.with_env_var(key, value);
        }
        for mount in mounts {
            let host = mount.host.to_str().with_context(|| {
                format!("bind mount source {} is not UTF-8", mount.host.display())
            })?;
            request = request.with_mount(
                Mount::bind_mount(host, mount.container).with_access_mode(AccessMode::ReadOnly),
            );
        }
        let mut network_url = None;
        if let Some((network, name)) = reach.network {
            network_url = Some(format!("http://{name}:{}", spec.container_port));
            request = request.with_network(network).with_container_name(name);
        }
        let container = request.start().await.with_context(|| {
            format!(
                "starting {} from image {image} via {}",
                spec.name,
                docker::docker_host()
            )
        })?;
        let port = container
            .get_host_port_ipv4(spec.container_port.tcp())
            .await?;
        let running = Running {
            engine: self,
            backend: Backend::Container,
            port,
            network_url,
            http: http_client()?,
            runtime: Runtime::Container(Box::new(container)),
        };
        running.wait_until_ready().await?;
        Ok(Some(running))
    }

    async fn start_native(
        &'static self,
        binary: &Path,
        reach: &Reach,
        launch: impl Fn(&LaunchContext) -> anyhow::Result<Launch>,
    ) -> anyhow::Result<Option<Running>> {
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "login-metrics-{}-",
                self.spec.name.to_ascii_lowercase()
            ))
            .tempdir()
            .context("creating a temporary directory")?;
        let config_dir = dir.path().join("config");
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("engine.log");
        std::fs::create_dir(&config_dir)?;
        std::fs::create_dir(&data_dir)?;
        let ip = if reach.from_containers {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };

        // The free port can be taken between our probe and the engine binding it.
        for attempt in 1..=3 {
            let port = free_port()?;
            let context = LaunchContext {
                backend: Backend::Native,
                host: "127.0.0.1".to_owned(),
                config_dir: config_dir.display().to_string(),
                data_dir: data_dir.display().to_string(),
                listen: format!("{ip}:{port}"),
            };
            // Bind mounts are for containers: natively the closure names host paths.
            let Launch {
                files, args, env, ..
            } = launch(&context)?;
            for (path, bytes) in &files {
                let target = config_dir.join(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&target, bytes)
                    .with_context(|| format!("writing {}", target.display()))?;
            }
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)?;
            let child = Command::new(binary)
                .args(&args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(&config_dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("running {}", binary.display()))?;
            let mut child = ChildGuard(child);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let exited = child.0.try_wait()?.is_some();
            if exited && attempt < 3 && read_log(&log_path).contains("address already in use") {
                continue;
            }
            let running = Running {
                engine: self,
                backend: Backend::Native,
                port,
                network_url: None,
                http: http_client()?,
                runtime: Runtime::Native(NativeProcess {
                    child: Mutex::new(child),
                    log_path,
                    dir,
                }),
            };
            running.wait_until_ready().await?;
            return Ok(Some(running));
        }
        unreachable!("the last attempt returns")
    }
}

/// A running engine. Dropping it stops the engine.
#[derive(Debug)]
pub struct Running {
    engine: &'static Engine,
    backend: Backend,
    port: u16,
    network_url: Option<String>,
    http: reqwest::Client,
    runtime: Runtime,
}

#[derive(Debug)]
enum Runtime {
    Container(Box<ContainerAsync<GenericImage>>),
    Native(NativeProcess),
}

/// Fields drop in order: the process dies before its directory is removed.
#[derive(Debug)]
struct NativeProcess {
    child: Mutex<ChildGuard>,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct ChildGuard(Child);

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
    /// native engine must have been started with [`Reach::from_containers`]), over
    /// loopback from a native process.
    #[must_use]
    pub fn address_for(&self, peer: Backend) -> String {
        match peer {
            Backend::Container => format!("{}:{}", docker::HOST_GATEWAY_NAME, self.port),
            Backend::Native => format!("127.0.0.1:{}", self.port),
        }
    }

    /// `http://NAME:PORT` on the Docker network of [`Reach::network`]; `None` otherwise.
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
    async fn wait_until_ready(&self) -> anyhow::Result<()> {
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

/// Whether `image` can run here: Docker answers, and the image is present locally or
/// can be pulled. `Err` is one short line saying why not.
async fn container_ready(image: &str) -> Result<(), String> {
    docker::available()
        .await
        .map_err(|reason| first_line(&reason))?;
    let client = docker_client_instance()
        .await
        .map_err(|e| format!("no Docker client: {}", first_line(&e.to_string())))?;
    if client.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    let (name, tag) = docker::split_image_reference(image);
    match tokio::time::timeout(PULL_TIMEOUT, GenericImage::new(name, tag).pull_image()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "no image {image} here, and {}",
            why_no_pull(&e.to_string())
        )),
        Err(_) => Err(format!(
            "no image {image} here, and pulling it took over {PULL_TIMEOUT:?}"
        )),
    }
}

/// A pull failure in a few words: the full Docker message is a paragraph.
fn why_no_pull(error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    let offline = [
        "no such host",
        "lookup ",
        "dial tcp",
        "connection refused",
        "i/o timeout",
        "tls handshake",
        "network is unreachable",
    ];
    if offline.iter().any(|needle| lower.contains(needle)) {
        "no registry answers".to_owned()
    } else if lower.contains("manifest unknown") || lower.contains("not found") {
        "the registry has no such image".to_owned()
    } else {
        format!("pulling it failed: {}", first_line(error))
    }
}

fn first_line(text: &str) -> String {
    const MAX: usize = 120;
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > MAX {
        let cut = (0..=MAX)
            .rev()
            .find(|i| line.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}…", &line[..cut])
    } else {
        line
    }
}

fn explicit_image(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
}

fn backend_choice(var: &str) -> Result<Choice, String> {
    let value = std::env::var(var).unwrap_or_default();
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(Choice::Auto),
        "container" | "docker" => Ok(Choice::Only(Backend::Container)),
        "native" => Ok(Choice::Only(Backend::Native)),
        other => Err(format!(
            "{var}={other:?}: expected `container`, `native` or `auto`"
        )),
    }
}

/// The decision itself, from what was found: whether the image can run (`None`: not
/// asked) and which binary is on `PATH`.
fn conclude(
    spec: &EngineSpec,
    choice: Choice,
    image: String,
    image_named_explicitly: bool,
    container: Option<Result<(), String>>,
    binary: Option<PathBuf>,
) -> Decision {
    let run = |placement| Decision::Run {
        placement,
        note: None,
    };
    match (choice, container, binary) {
        (Choice::Only(Backend::Container) | Choice::Auto, Some(Ok(())), _) => {
            run(Placement::Container { image })
        }
        (Choice::Only(Backend::Container), Some(Err(reason)), _) => {
            Decision::Fail(format!("{}=container, but {reason}", spec.backend_env))
        }
        (Choice::Only(Backend::Native), _, Some(binary)) => run(Placement::Native { binary }),
        (Choice::Only(Backend::Native), _, None) => Decision::Fail(format!(
            "{}=native, but {} is not on PATH",
            spec.backend_env,
            names(spec.binaries)
        )),
        (Choice::Auto, container, Some(binary)) => Decision::Run {
            note: Some(format!(
                "note: {} runs from {}: {}",
                spec.name,
                binary.display(),
                container.and_then(Result::err).unwrap_or_default()
            )),
            placement: Placement::Native { binary },
        },
        (Choice::Auto, container, None) => {
            let reason = container.and_then(Result::err).unwrap_or_default();
            if spec.binaries.is_empty() {
                if image_named_explicitly {
                    // Nothing to fall back to, and the user named this image on purpose:
                    // a typo must not silently turn the test off.
                    return Decision::Fail(format!(
                        "{}={image} was set, but {reason}",
                        spec.image_env
                    ));
                }
                return Decision::Skip(format!(
                    "no {} to test against: {reason}; {}",
                    spec.name, spec.install_hint
                ));
            }
            Decision::Skip(format!(
                "no {} to test against: {reason}, and {} is not on PATH; {}",
                spec.name,
                names(spec.binaries),
                spec.install_hint
            ))
        }
        (Choice::Only(Backend::Container), None, _) => {
            unreachable!("the container backend is always checked")
        }
    }
}

fn names(binaries: &[&str]) -> String {
    binaries
        .iter()
        .map(|b| format!("`{b}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The first executable among `binaries` on `PATH`.
#[must_use]
pub fn find_binary(binaries: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    binaries.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// A port that was free a moment ago on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// An HTTP client with a timeout, that ignores proxy settings.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

fn read_log(path: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!(Backend::Container.to_string(), "container");
        assert_eq!(Backend::Native.to_string(), "native");
    }

    #[test]
    fn long_errors_are_cut_to_one_short_line() {
        let long = format!("first\nsecond {}", "x".repeat(400));
        let line = first_line(&long);
        assert!(!line.contains('\n'));
        assert!(line.chars().count() <= 121, "{line}");
    }

    #[test]
    fn pull_failures_are_said_in_a_few_words() {
        let offline = "failed to pull the image 'prom/prometheus:v3.13.4', error: Docker responded \
            with status code 500: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup \
            registry-1.docker.io on 10.255.255.53:53: no such host";
        assert_eq!(why_no_pull(offline), "no registry answers");
        assert_eq!(
            why_no_pull("manifest unknown: manifest unknown"),
            "the registry has no such image"
        );
        assert!(why_no_pull("something else").starts_with("pulling it failed: something else"));
    }

    const SPEC: EngineSpec = EngineSpec {
        name: "Prometheus",
        backend_env: "LOGIN_METRICS_PROMETHEUS",
        image_env: "PROMETHEUS_IMAGE",
        default_image: "prom/prometheus:v3.13.4",
        binaries: &["prometheus"],
        container_port: 9090,
        ready_path: "/-/ready",
        container_config_dir: "/etc/prometheus",
        container_data_dir: "/prometheus",
        install_hint: "install it",
        skip_allowed_in_ci: false,
    };

    fn decide(
        spec: &EngineSpec,
        choice: Choice,
        explicit: bool,
        image_ok: Option<bool>,
        binary: bool,
    ) -> Decision {
        conclude(
            spec,
            choice,
            "repo/image:1".into(),
            explicit,
            image_ok.map(|ok| {
                if ok {
                    Ok(())
                } else {
                    Err("no image repo/image:1 here".into())
                }
            }),
            binary.then(|| PathBuf::from("/usr/bin/prometheus")),
        )
    }

    #[test]
    fn auto_prefers_an_image_that_can_run() {
        let decision = decide(&SPEC, Choice::Auto, false, Some(true), true);
        assert!(matches!(
            decision,
            Decision::Run {
                placement: Placement::Container { .. },
                note: None
            }
        ));
    }

    #[test]
    fn auto_without_the_image_falls_back_to_the_binary_with_one_short_note() {
        for explicit in [false, true] {
            let Decision::Run { placement, note } =
                decide(&SPEC, Choice::Auto, explicit, Some(false), true)
            else {
                panic!("expected the native fallback");
            };
            assert_eq!(placement.backend(), Backend::Native);
            let note = note.expect("a note");
            assert!(
                note.starts_with("note: Prometheus runs from /usr/bin/prometheus: no image"),
                "{note}"
            );
            assert!(!note.contains('\n') && note.len() < 200, "{note}");
        }
    }

    #[test]
    fn auto_with_neither_image_nor_binary_skips_even_for_a_named_image() {
        for explicit in [false, true] {
            let Decision::Skip(reason) = decide(&SPEC, Choice::Auto, explicit, Some(false), false)
            else {
                panic!("expected a skip");
            };
            assert!(reason.contains("`prometheus` is not on PATH"), "{reason}");
        }
    }

    #[test]
    fn an_explicit_backend_that_cannot_be_met_fails() {
        assert!(matches!(
            decide(&SPEC, Choice::Only(Backend::Container), false, Some(false), true),
            Decision::Fail(reason) if reason.starts_with("LOGIN_METRICS_PROMETHEUS=container, but no image")
        ));
        assert!(matches!(
            decide(&SPEC, Choice::Only(Backend::Native), false, None, false),
            Decision::Fail(reason) if reason == "LOGIN_METRICS_PROMETHEUS=native, but `prometheus` is not on PATH"
        ));
    }

    #[test]
    fn an_engine_without_binaries_skips_for_its_default_image_and_fails_for_a_named_one() {
        let grafana = EngineSpec {
            name: "Grafana",
            binaries: &[],
            skip_allowed_in_ci: true,
            ..SPEC
        };
        assert!(matches!(
            decide(&grafana, Choice::Auto, false, Some(false), false),
            Decision::Skip(_)
        ));
        assert!(matches!(
            decide(&grafana, Choice::Auto, true, Some(false), false),
            Decision::Fail(reason) if reason.starts_with("PROMETHEUS_IMAGE=repo/image:1 was set")
        ));
    }

    #[test]
    fn placements_say_how_the_engine_reaches_this_machine() {
        let container = Placement::Container {
            image: "prom/prometheus:v3.13.4".into(),
        };
        let native = Placement::Native {
            binary: "/usr/bin/prometheus".into(),
        };
        assert_eq!(container.host_seen_from_engine(), "host.docker.internal");
        assert_eq!(native.host_seen_from_engine(), "127.0.0.1");
        assert_eq!(container.backend(), Backend::Container);
        assert_eq!(native.backend(), Backend::Native);
    }
}
