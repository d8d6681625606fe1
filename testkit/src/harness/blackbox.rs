//! A real blackbox exporter for end-to-end tests, running the repository's
//! `blackbox.yml` with the probe account's password filled in, as a reader fills it in.
//!
//! `blackbox.yml` is a template: its `login` module posts
//! `{"username": "probe", "password": "${LOGIN_PROBE_PASSWORD}"}`, and the password is
//! never in the repository. A reader makes one, adds the account to the server's users
//! file and renders the template with `envsubst`; a test does the same with a
//! [`ProbeAccount`]: a fresh random password, its users file line made by the server's
//! own [`hash_password`](login_metrics::auth::hash_password), and [`render_config`],
//! which substitutes exactly as `envsubst '$LOGIN_PROBE_PASSWORD'` does
//! (`tests/probe.rs` checks the two agree where `envsubst` is installed).
//!
//! [`BlackboxExporter::start`] runs the exporter where the [`engine`](super::engine)
//! launcher decides, once per test binary: the image `BLACKBOX_EXPORTER_IMAGE`
//! (default [`DEFAULT_IMAGE`]) in Docker, or the binary (`blackbox_exporter`, which
//! Debian calls `prometheus-blackbox-exporter`). Prometheus reaches it through
//! [`PrometheusBuilder::probe`](super::prometheus::PrometheusBuilder::probe), which
//! points the configuration's `login_probe` job at it.

use std::fmt;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::Context;

use super::engine::{Engine, EngineSpec, Launch, Placement, Reach, Running, find_binary};
use super::prometheus;

/// The image used when `BLACKBOX_EXPORTER_IMAGE` is not set: the official one, pinned
/// (why this tag: [the test kit's docs](crate#pinned-images)).
pub const DEFAULT_IMAGE: &str = "prom/blackbox-exporter:v0.28.0";
/// Environment variable naming the exporter's image (`name:tag`).
pub const IMAGE_ENV: &str = "BLACKBOX_EXPORTER_IMAGE";
/// Environment variable choosing the backend: `container`, `native` or `auto`.
pub const BACKEND_ENV: &str = "LOGIN_METRICS_BLACKBOX";
/// The configuration template users render, which the harness renders too.
pub const CONFIG_FILE: &str = "blackbox.yml";
/// The environment variable the template's body names, which `envsubst` fills in.
pub const PASSWORD_VARIABLE: &str = "LOGIN_PROBE_PASSWORD";
/// The probe account's name, as the template's body names it.
pub const PROBE_USERNAME: &str = "probe";
/// The module of `blackbox.yml` that logs in.
pub const MODULE: &str = "login";

/// The exporter as the [`engine`](super::engine) launcher runs it.
pub static ENGINE: Engine = Engine::new(EngineSpec {
    name: "Blackbox exporter",
    backend_env: BACKEND_ENV,
    image_env: IMAGE_ENV,
    default_image: DEFAULT_IMAGE,
    binaries: &["blackbox_exporter", "prometheus-blackbox-exporter"],
    container_port: 9115,
    ready_path: "/-/healthy",
    container_config_dir: "/etc/blackbox_exporter",
    // It keeps no data; a writable directory all the same.
    container_data_dir: "/tmp",
    install_hint: "install Docker with access to the image, or the exporter itself \
        (`apt install prometheus-blackbox-exporter`, \
        https://github.com/prometheus/blackbox_exporter/releases)",
    skip_allowed_in_ci: false,
});

/// The dedicated account the probe logs in as: its name, and a password made for
/// this test only.
#[derive(Clone)]
pub struct ProbeAccount {
    password: String,
}

impl fmt::Debug for ProbeAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeAccount")
            .field("username", &PROBE_USERNAME)
            .finish_non_exhaustive()
    }
}

impl ProbeAccount {
    /// A fresh account: 24 random bytes as 48 hex digits, what the book's
    /// `openssl rand -hex 24` makes.
    pub fn generate() -> anyhow::Result<Self> {
        use std::io::Read as _;
        let mut bytes = [0_u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut bytes))
            .context("reading /dev/urandom")?;
        let password = bytes.iter().fold(String::new(), |mut hex, b| {
            let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
            hex
        });
        Ok(Self { password })
    }

    /// The password, to render the template with.
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The account's line of the server's users file, `probe:$argon2id$...`, hashed
    /// as the `hash_password` example hashes it.
    #[must_use]
    pub fn users_file_line(&self) -> String {
        format!(
            "{PROBE_USERNAME}:{}",
            login_metrics::auth::hash_password(&self.password)
        )
    }
}

/// `template` with the password filled in: every `${LOGIN_PROBE_PASSWORD}` and
/// `$LOGIN_PROBE_PASSWORD` replaced, and nothing else, as
/// `envsubst '$LOGIN_PROBE_PASSWORD'` replaces them.
#[must_use]
pub fn render_config(template: &str, password: &str) -> String {
    template
        .replace(&format!("${{{PASSWORD_VARIABLE}}}"), password)
        .replace(&format!("${PASSWORD_VARIABLE}"), password)
}

/// The repository's `blackbox.yml`, rendered with `account`'s password.
pub fn rendered_repository_config(account: &ProbeAccount) -> anyhow::Result<String> {
    let path = crate::repo_root().join(CONFIG_FILE);
    let template =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(render_config(&template, account.password()))
}

/// Runs `--config.check` of the exporter's binary on `config`. `None` after one
/// `skipped:` line when no binary is installed (under CI, a failure).
#[must_use]
pub fn config_check(config: &Path) -> Option<Output> {
    let Some(binary) = find_binary(ENGINE.spec().binaries) else {
        crate::env::skip(&format!(
            "no blackbox exporter binary on PATH to check {}; install it \
             (`apt install prometheus-blackbox-exporter`, \
             https://github.com/prometheus/blackbox_exporter/releases)",
            config.display()
        ));
        return None;
    };
    let output = Command::new(&binary)
        .arg("--config.check")
        .arg(format!("--config.file={}", config.display()))
        .current_dir(crate::repo_root())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    Some(output)
}

/// A running blackbox exporter. Dropping it stops the exporter.
#[derive(Debug)]
pub struct BlackboxExporter {
    engine: Running,
}

impl BlackboxExporter {
    /// Starts the exporter with the repository's `blackbox.yml` rendered for
    /// `account`. `Ok(None)` after one `skipped:` line when none can run here and
    /// `auto` mode allows it.
    pub async fn start(account: &ProbeAccount) -> anyhow::Result<Option<BlackboxExporter>> {
        let config = rendered_repository_config(account)?;
        // A Prometheus in a container reaches a native exporter through the host
        // gateway, so it must listen beyond loopback in that one case.
        let prometheus_in_container = matches!(
            prometheus::ENGINE.placement().await?,
            Some(Placement::Container { .. })
        );
        let reach = Reach {
            network: None,
            from_containers: prometheus_in_container,
        };
        let engine = ENGINE
            .start(reach, |ctx| {
                Ok(Launch {
                    files: vec![(CONFIG_FILE.to_owned(), config.clone().into_bytes())],
                    args: vec![
                        format!("--config.file={}/{CONFIG_FILE}", ctx.config_dir),
                        format!("--web.listen-address={}", ctx.listen),
                    ],
                    ..Launch::default()
                })
            })
            .await?;
        Ok(engine.map(|engine| BlackboxExporter { engine }))
    }

    /// The engine underneath: addresses, logs.
    #[must_use]
    pub fn engine(&self) -> &Running {
        &self.engine
    }

    /// `http://HOST:PORT/login`: the login listener on `port` of this machine as the
    /// exporter reaches it (through the host gateway from a container, so the server
    /// must listen on `0.0.0.0` there).
    #[must_use]
    pub fn login_url(&self, port: u16) -> String {
        format!(
            "http://{}:{port}/login",
            self.engine.host_seen_from_engine()
        )
    }

    /// Runs the `login` module once against `target`, as Prometheus asks for it, and
    /// returns the metrics the exporter answers; with `debug`, the exporter's log of
    /// the probe instead.
    pub async fn probe(&self, target: &str, debug: bool) -> anyhow::Result<String> {
        let url = format!("{}/probe", self.engine.base_url());
        let mut query = vec![("module", MODULE), ("target", target)];
        if debug {
            query.push(("debug", "true"));
        }
        let response = self
            .engine
            .http()
            .get(&url)
            .query(&query)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(status.is_success(), "GET {url}: {status}: {body}");
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Value as Yaml;

    #[test]
    fn rendering_fills_in_the_password_and_nothing_else() {
        let template = "a: '${LOGIN_PROBE_PASSWORD}'\nb: $LOGIN_PROBE_PASSWORD\nc: $OTHER ${X}\n";
        assert_eq!(
            render_config(template, "0123abcd"),
            "a: '0123abcd'\nb: 0123abcd\nc: $OTHER ${X}\n"
        );
    }

    #[test]
    fn the_template_logs_in_as_the_probe_account_with_the_password_filled_in() {
        let account = ProbeAccount::generate().unwrap();
        let rendered = rendered_repository_config(&account).unwrap();
        assert_eq!(
            rendered.matches(account.password()).count(),
            1,
            "the password appears once, in the body"
        );
        let config: Yaml = serde_yaml_ng::from_str(&rendered).unwrap();
        let http = &config["modules"][MODULE]["http"];
        assert_eq!(http["method"], "POST");
        let body: serde_json::Value =
            serde_json::from_str(http["body"].as_str().expect("a body")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"username": PROBE_USERNAME, "password": account.password()})
        );
    }

    #[test]
    fn passwords_are_48_hex_digits_and_differ() {
        let (a, b) = (
            ProbeAccount::generate().unwrap(),
            ProbeAccount::generate().unwrap(),
        );
        for account in [&a, &b] {
            assert_eq!(account.password().len(), 48);
            assert!(account.password().chars().all(|c| c.is_ascii_hexdigit()));
        }
        assert_ne!(a.password(), b.password());
        assert!(!format!("{a:?}").contains(a.password()), "{a:?}");
    }

    #[test]
    fn the_users_file_line_holds_a_hash_not_the_password() {
        let account = ProbeAccount::generate().unwrap();
        let line = account.users_file_line();
        let (name, hash) = line.split_once(':').unwrap();
        assert_eq!(name, PROBE_USERNAME);
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!line.contains(account.password()));
    }
}
