//! Docker helpers shared by the Prometheus and Grafana harnesses.
//!
//! Everything here goes through testcontainers (and its bollard client), so it honours
//! `DOCKER_HOST` and `~/.testcontainers.properties` exactly like starting a container does.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testcontainers::core::client::docker_client_instance;
use testcontainers::{ContainerAsync, GenericImage, Image};

/// The name containers use to reach the host (mapped with `Host::HostGateway`).
pub const HOST_GATEWAY_NAME: &str = "host.docker.internal";

/// How long a ping may take before the daemon counts as unavailable.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a Docker daemon that testcontainers can talk to answers.
///
/// `Err` carries a one-line reason, for example that nothing listens on the socket or
/// that the engine's API version is older than the one testcontainers speaks.
pub async fn available() -> Result<(), String> {
    let host = docker_host();
    let client = docker_client_instance()
        .await
        .map_err(|e| format!("no usable Docker client for {host}: {e}"))?;
    match tokio::time::timeout(PING_TIMEOUT, client.ping()).await {
        Err(_) => Err(format!(
            "the Docker daemon at {host} did not answer within {PING_TIMEOUT:?}"
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let message = one_line(&e.to_string());
            if is_api_version_error(&message) {
                Err(format!(
                    "the Docker engine at {host} is too old for testcontainers \
                     (API version mismatch: {message})"
                ))
            } else {
                Err(format!("no Docker daemon answers at {host}: {message}"))
            }
        }
    }
}

/// The Docker endpoint in use, for messages: `DOCKER_HOST` or the default socket.
#[must_use]
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// Splits an image reference such as `prom/prometheus:v3.13.4`,
/// `localhost:5000/team/prometheus:dev`, `prom/prometheus` or
/// `prom/prometheus@sha256:...` into the `(name, tag)` pair [`GenericImage::new`] takes.
///
/// testcontainers joins them back as `name:tag`, so digests survive the round trip.
#[must_use]
pub fn split_image_reference(reference: &str) -> (String, String) {
    let reference = reference.trim();
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference.rfind(':') {
        Some(colon) if colon >= last_slash => (
            reference[..colon].to_owned(),
            reference[colon + 1..].to_owned(),
        ),
        _ => (reference.to_owned(), "latest".to_owned()),
    }
}

/// A [`GenericImage`] for the reference in environment variable `var`, or `default`.
pub fn image_from_env(var: &str, default: &str) -> GenericImage {
    let reference = std::env::var(var)
        .ok()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| default.to_owned());
    let (name, tag) = split_image_reference(&reference);
    GenericImage::new(name, tag)
}

/// A name no other test in this or a concurrent test process uses, for containers and
/// networks: `prefix-<pid>-<counter>-<time>`.
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// A container's stdout and stderr, for failure messages. Never fails: a read error is
/// reported inside the returned text.
pub async fn container_logs<I: Image>(container: &ContainerAsync<I>) -> String {
    let stdout = container.stdout_to_vec().await;
    let stderr = container.stderr_to_vec().await;
    let mut out = String::new();
    for (stream, bytes) in [("stdout", stdout), ("stderr", stderr)] {
        match bytes {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => out.push_str(&String::from_utf8_lossy(&bytes)),
            Err(e) => {
                let _ = writeln!(out, "<could not read container {stream}: {e}>");
            }
        }
    }
    out
}

/// The last `n` lines of `text`, for keeping failure messages readable.
#[must_use]
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skipped = lines.len().saturating_sub(n);
    let mut out = String::new();
    if skipped > 0 {
        let _ = writeln!(out, "[... {skipped} earlier lines]");
    }
    for line in &lines[skipped..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_api_version_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("is too new")
        || m.contains("maximum supported api version")
        || m.contains("client version")
        || m.contains("api version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_name_and_tag() {
        let cases = [
            ("prom/prometheus:v3.13.4", ("prom/prometheus", "v3.13.4")),
            ("prom/prometheus", ("prom/prometheus", "latest")),
            (
                "localhost:5000/team/prometheus:dev",
                ("localhost:5000/team/prometheus", "dev"),
            ),
            (
                "localhost:5000/team/prometheus",
                ("localhost:5000/team/prometheus", "latest"),
            ),
            (
                "login-metrics/prometheus:2.42-debian-local",
                ("login-metrics/prometheus", "2.42-debian-local"),
            ),
        ];
        for (reference, (name, tag)) in cases {
            let (n, t) = split_image_reference(reference);
            assert_eq!((n.as_str(), t.as_str()), (name, tag), "{reference}");
            assert_eq!(
                format!("{n}:{t}").replace(":latest", ""),
                reference.replace(":latest", "")
            );
        }
        let digest = "prom/prometheus@sha256:0123abcd";
        let (n, t) = split_image_reference(digest);
        assert_eq!(format!("{n}:{t}"), digest);
    }

    #[test]
    fn version_errors_are_recognised() {
        assert!(is_api_version_error(
            "Docker responded with status code 400: client version 1.53 is too new. \
             Maximum supported API version is 1.41"
        ));
        assert!(!is_api_version_error(
            "error trying to connect: No such file or directory (os error 2)"
        ));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "[... 1 earlier lines]\nb\nc\n");
        assert_eq!(tail("a\n", 5), "a\n");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("x"), unique_name("x"));
    }
}
