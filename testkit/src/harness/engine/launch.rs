//! Starting an engine where it was placed: a container from its image, with the
//! launch's files copied in, or a process of its binary in a temporary directory,
//! on a free port.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use testcontainers::core::{AccessMode, Host, IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{CopyTargetOptions, GenericImage, ImageExt};

use super::running::{ChildGuard, NativeProcess, Runtime, read_log};
use super::{Backend, Engine, REQUEST_TIMEOUT, Running, STARTUP_TIMEOUT};
use crate::harness::docker;

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
    pub(super) async fn start_container(
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

    pub(super) async fn start_native(
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
