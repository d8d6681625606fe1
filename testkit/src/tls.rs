//! A scrape with credentials over TLS, as a test sets it up: a certificate
//! authority and a server certificate made by [rcgen](https://docs.rs/rcgen) for
//! each test (no private key is ever committed), a `web.yml` for the server, and
//! the files Prometheus reads.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// The name the server's certificate is for, and that Prometheus checks
/// (`tls_config.server_name` in `deploy/secure/prometheus.yml`): the same
/// whether Prometheus reaches the server as `127.0.0.1` or as
/// `host.docker.internal`.
pub const SERVER_NAME: &str = "login-server";

/// The user Prometheus scrapes as (`basic_auth.username` in
/// `deploy/secure/prometheus.yml`).
pub const SCRAPE_USER: &str = "prometheus";

/// A certificate authority, a server certificate and key it signed, and a
/// `web.yml` naming them with one bcrypt user; all in a temporary folder,
/// removed when dropped.
pub struct SecureScrape {
    folder: TempDir,
    ca_pem: String,
    password: String,
}

impl SecureScrape {
    /// Makes the certificates, a random password for [`SCRAPE_USER`], and the
    /// `web.yml` (bcrypt of cost 10, as `htpasswd -nBC 10` makes).
    pub fn generate() -> anyhow::Result<Self> {
        let folder = tempfile::tempdir()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "login-metrics test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        let certificate = server.signed_by(&key, &ca)?;
        let write = |name: &str, text: &str| {
            std::fs::write(folder.path().join(name), text)
                .with_context(|| format!("writing {name}"))
        };
        write("login-server.pem", &certificate.pem())?;
        write("login-server-key.pem", &key.serialize_pem())?;
        let password = random_password()?;
        let hash = bcrypt::hash(&password, 10)?;
        write(
            "web.yml",
            &format!(
                "tls_server_config:\n  cert_file: login-server.pem\n  key_file: login-server-key.pem\n\
                 basic_auth_users:\n  {SCRAPE_USER}: '{hash}'\n"
            ),
        )?;
        Ok(Self {
            folder,
            ca_pem: ca.pem(),
            password,
        })
    }

    /// The server's `web.yml`.
    #[must_use]
    pub fn web_yml(&self) -> PathBuf {
        self.folder.path().join("web.yml")
    }

    /// The certificate authority, PEM: Prometheus's `tls_config.ca_file`.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The password of [`SCRAPE_USER`]: Prometheus's `basic_auth.password_file`.
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The folder holding the files.
    #[must_use]
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// An HTTPS client that trusts only this authority and reaches
    /// [`SERVER_NAME`] at `metrics`.
    pub fn client(&self, metrics: SocketAddr) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?)
            .resolve(SERVER_NAME, metrics)
            .build()?)
    }
}

/// 24 random bytes from the system, hex: a password no test writes down.
fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no random bytes: {error}"))?;
    Ok(bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}
