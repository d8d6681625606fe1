//! Where an engine runs, decided once per test binary from what this machine has:
//! the variables, Docker and its images, the binaries on `PATH`. Kept apart from
//! the launching so that every branch of the decision is a unit test, without
//! Docker or a binary.

use std::path::{Path, PathBuf};

use testcontainers::GenericImage;
use testcontainers::core::client::docker_client_instance;
use testcontainers::runners::AsyncRunner as _;

use super::{Backend, Engine, EngineSpec, PULL_TIMEOUT};
use crate::harness::docker;

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

/// What [`Engine::placement`] decided, once.
#[derive(Debug, Clone)]
pub(super) enum Decision {
    Run {
        placement: Placement,
        note: Option<String>,
    },
    Skip(String),
    Fail(String),
}

/// What the backend variable asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Choice {
    Auto,
    Only(Backend),
}

impl Engine {
    pub(super) async fn decide(&self) -> Decision {
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

pub(super) fn explicit_image(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
}

pub(super) fn backend_choice(var: &str) -> Result<Choice, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
