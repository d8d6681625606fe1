//! Who may read `/metrics`, with what credentials, and over what: the metrics
//! listener's web configuration.
//!
//! The file is the Prometheus exporter-toolkit's `web.yml`, the one
//! `node_exporter` and Prometheus's other exporters read with
//! `--web.config.file`, so a team keeps one file for all of them:
//!
//! - `basic_auth_users`: user names and their password hashes, bcrypt (what
//!   `htpasswd -nBC 10` writes) or argon2 (a PHC string, as `--users-file`
//!   holds for logins);
//! - `tls_server_config`: a certificate and its key, PEM files, relative paths
//!   read from the file's own folder; `min_version` `TLS12` (the default) or
//!   `TLS13`. TLS is rustls's, never older than 1.2.
//!
//! A setting the toolkit knows and this server does not implement (client
//! certificates, cipher suites, `http_server_config`) is refused when the file
//! is read rather than ignored: a file that asks for more protection than the
//! server gives must not start it. A bearer token, which the toolkit's file has
//! no place for, comes from a file of its own (`--metrics-bearer-token-file`).
//!
//! No credential leaves this module: [`WebConfig`]'s `Debug` shows how many
//! users there are and whether a token is set, errors name files and settings,
//! and a refusal is only [`Unauthorized::Missing`] or [`Unauthorized::Wrong`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::http::HeaderValue;
use base64::Engine as _;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::metrics::Unauthorized;

// ANCHOR: file
/// The exporter-toolkit's `web.yml`, the parts this server implements.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebYml {
    tls_server_config: Option<TlsServerConfig>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

/// `tls_server_config`: a certificate chain and its key, and the oldest TLS
/// version accepted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    min_version: Option<String>,
    /// Only `NoClientCert`, the toolkit's default, is implemented.
    #[serde(default)]
    client_auth_type: Option<String>,
}
// ANCHOR_END: file

/// A password hash from `basic_auth_users`, checked when the file is read.
enum Hash {
    Bcrypt(String),
    Argon2(String),
}

impl Hash {
    fn parse(text: &str) -> Result<Self, WebConfigError> {
        if text.starts_with("$argon2") {
            PasswordHash::new(text).map_err(|_| WebConfigError::Hash)?;
            Ok(Self::Argon2(text.to_owned()))
        } else {
            text.parse::<bcrypt::HashParts>()
                .map_err(|_| WebConfigError::Hash)?;
            Ok(Self::Bcrypt(text.to_owned()))
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Self::Argon2(hash) => PasswordHash::new(hash)
                .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok()),
        }
    }
}

/// Why a web configuration cannot be used. None of the messages holds a
/// credential: they name the file and the setting.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is not a web configuration this server implements. The
    /// parser's message quotes the value it could not take, which may be a
    /// password pasted in the wrong place: quoted text is left out.
    #[error("in the web configuration: {0}")]
    Yaml(String),
    /// A hash in `basic_auth_users` is neither bcrypt nor an argon2 PHC string.
    #[error(
        "a hash in basic_auth_users is neither bcrypt (`$2b$...`, as `htpasswd -nBC 10 \"\"` \
         writes) nor argon2 (`$argon2id$...`)"
    )]
    Hash,
    /// A `tls_server_config` setting this server does not implement.
    #[error("tls_server_config: {0}")]
    Tls(String),
    /// The certificate or the key cannot be used.
    #[error("tls_server_config: {0}")]
    Certificate(#[from] rustls::Error),
    /// The bearer token file is empty.
    #[error("the bearer token file {} is empty", .0.display())]
    EmptyToken(PathBuf),
}

// ANCHOR: web_config
/// Who may read `/metrics`: users with passwords, a bearer token, or both; and
/// the TLS the listener speaks, if any. With no credential configured, anyone
/// the allow-list admits may scrape.
pub struct WebConfig {
    users: BTreeMap<String, Hash>,
    bearer_token: Option<Vec<u8>>,
    tls: Option<Arc<ServerConfig>>,
}

/// Verified in place of a user that does not exist, so that a wrong name takes
/// as long as a wrong password and names cannot be told apart by timing: a
/// bcrypt hash of cost 10, the cost `htpasswd -B` uses by default, of a
/// password nobody sends.
static UNKNOWN_USER_HASH: LazyLock<String> = LazyLock::new(|| {
    bcrypt::hash("no user has this password", 10).expect("cost 10 is in bcrypt's range")
});

impl WebConfig {
    /// Reads the exporter-toolkit `web.yml` at `path`; paths in it are relative
    /// to its folder.
    pub fn from_file(path: &Path) -> Result<Self, WebConfigError> {
        let text = read(path)?;
        let folder = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_yaml(&text, folder)
    }

    /// Parses a `web.yml`, reading its certificate and key from `folder` when
    /// their paths are relative.
    pub fn from_yaml(text: &str, folder: &Path) -> Result<Self, WebConfigError> {
        // An empty file is an empty configuration, as for the toolkit.
        let file: Option<WebYml> = serde_yaml_ng::from_str(text)
            .map_err(|error| WebConfigError::Yaml(unquoted(&error.to_string())))?;
        let Some(file) = file else {
            return Ok(Self::open());
        };
        let users = file
            .basic_auth_users
            .unwrap_or_default()
            .into_iter()
            .map(|(name, hash)| Ok((name, Hash::parse(&hash)?)))
            .collect::<Result<_, WebConfigError>>()?;
        let tls = file
            .tls_server_config
            .map(|tls| tls.server_config(folder))
            .transpose()?;
        Ok(Self {
            users,
            bearer_token: None,
            tls,
        })
    }

    /// No credentials and no TLS: what the listener does without a file.
    #[must_use]
    pub fn open() -> Self {
        Self {
            users: BTreeMap::new(),
            bearer_token: None,
            tls: None,
        }
    }

    /// Also accepts `Authorization: Bearer TOKEN`, with the token read from
    /// `path` (surrounding whitespace, such as a final newline, left out).
    pub fn with_bearer_token_file(self, path: &Path) -> Result<Self, WebConfigError> {
        let token = read(path)?.trim().as_bytes().to_vec();
        if token.is_empty() {
            return Err(WebConfigError::EmptyToken(path.to_owned()));
        }
        Ok(Self {
            bearer_token: Some(token),
            ..self
        })
    }

    /// The TLS configuration the listener serves with, if any.
    #[must_use]
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }

    /// Whether a scrape must carry credentials.
    #[must_use]
    pub fn asks_for_credentials(&self) -> bool {
        !self.users.is_empty() || self.bearer_token.is_some()
    }

    /// The `WWW-Authenticate` challenges a refused scrape is answered with.
    #[must_use]
    pub fn challenges(&self) -> Vec<HeaderValue> {
        let mut challenges = Vec::new();
        if !self.users.is_empty() {
            challenges.push(HeaderValue::from_static(r#"Basic realm="metrics""#));
        }
        if self.bearer_token.is_some() {
            challenges.push(HeaderValue::from_static(r#"Bearer realm="metrics""#));
        }
        challenges
    }

    /// Checks a request's `Authorization` header. A password is verified
    /// against its hash, which is slow by design (a bcrypt hash of cost 10
    /// takes about a tenth of a second): call
    /// this off the async threads.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), Unauthorized> {
        if !self.asks_for_credentials() {
            return Ok(());
        }
        let Some(authorization) = authorization else {
            return Err(Unauthorized::Missing);
        };
        let value = authorization.as_bytes();
        let accepted = if let Some(token) = scheme(value, "Bearer") {
            self.bearer_token
                .as_deref()
                .is_some_and(|expected| bool::from(token.ct_eq(expected)))
        } else if let Some(encoded) = scheme(value, "Basic") {
            self.verify_basic(encoded)
        } else {
            false
        };
        if accepted {
            Ok(())
        } else {
            Err(Unauthorized::Wrong)
        }
    }

    /// Whether `user:password`, base64-encoded, names a user whose hash the
    /// password matches.
    fn verify_basic(&self, encoded: &[u8]) -> bool {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&byte| byte == b':') else {
            return false;
        };
        let (name, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let user = std::str::from_utf8(name)
            .ok()
            .and_then(|name| self.users.get(name));
        if let Some(hash) = user {
            hash.verify(password)
        } else {
            let _ = bcrypt::verify(password, &UNKNOWN_USER_HASH);
            false
        }
    }
}
// ANCHOR_END: web_config

/// The credentials after `SCHEME ` in an `Authorization` value; the scheme's
/// name is case-insensitive.
fn scheme<'a>(value: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let (given, rest) = value.split_at_checked(name.len())?;
    let rest = rest.strip_prefix(b" ")?;
    given
        .eq_ignore_ascii_case(name.as_bytes())
        .then(|| rest.trim_ascii())
}

/// `text` with whatever stands between double quotes replaced by `...`.
fn unquoted(text: &str) -> String {
    text.split('"')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "..." } else { part })
        .collect::<Vec<_>>()
        .join("\"")
}

impl fmt::Debug for WebConfig {
    /// Counts, never credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("basic_auth_users", &self.users.len())
            .field("bearer_token", &self.bearer_token.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl TlsServerConfig {
    // ANCHOR: tls
    /// rustls's server configuration: the certificate chain and key from their
    /// PEM files, TLS 1.2 and 1.3 (or 1.3 only), no client certificates.
    fn server_config(self, folder: &Path) -> Result<Arc<ServerConfig>, WebConfigError> {
        if let Some(kind) = self.client_auth_type.filter(|kind| kind != "NoClientCert") {
            return Err(WebConfigError::Tls(format!(
                "client_auth_type {kind} is not implemented: only NoClientCert"
            )));
        }
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version.as_deref() {
            None | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
            Some("TLS13") => &[&rustls::version::TLS13],
            Some(other) => {
                return Err(WebConfigError::Tls(format!(
                    "min_version {other}: only TLS12 and TLS13"
                )));
            }
        };
        let cert_file = folder.join(self.cert_file);
        let key_file = folder.join(self.key_file);
        let pem = |path: &Path, error: rustls_pki_types::pem::Error| {
            WebConfigError::Tls(format!("{}: {error}", path.display()))
        };
        let chain = CertificateDer::pem_file_iter(&cert_file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| pem(&cert_file, error))?;
        let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|error| pem(&key_file, error))?;
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)?
                .with_no_client_auth()
                .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }
    // ANCHOR_END: tls
}

fn read(path: &Path) -> Result<String, WebConfigError> {
    std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bcrypt hash of `s3cret-scrape` as `htpasswd -B` writes it (`$2y$`),
    /// of the lowest cost to keep the tests fast.
    fn bcrypt_user() -> String {
        let hash = bcrypt::hash("s3cret-scrape", 4).unwrap();
        let hash = hash.replacen("$2b$", "$2y$", 1);
        format!("basic_auth_users:\n  prometheus: '{hash}'\n")
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn users(yaml: &str) -> WebConfig {
        WebConfig::from_yaml(yaml, Path::new(".")).unwrap()
    }

    #[test]
    fn a_bcrypt_user_of_the_toolkits_file_is_let_in_with_its_password_only() {
        let config = users(&bcrypt_user());
        assert!(config.asks_for_credentials());
        assert_eq!(
            config.check(Some(&basic("prometheus", "s3cret-scrape"))),
            Ok(())
        );
        assert_eq!(
            config.check(Some(&basic("prometheus", "s3cret-scrapE"))),
            Err(Unauthorized::Wrong)
        );
        assert_eq!(
            config.check(Some(&basic("someone", "s3cret-scrape"))),
            Err(Unauthorized::Wrong)
        );
        assert_eq!(config.check(None), Err(Unauthorized::Missing));
    }

    #[test]
    fn an_argon2_user_is_let_in_with_its_password() {
        let hash = crate::auth::hash_password("argon-scrape");
        let config = users(&format!("basic_auth_users:\n  prometheus: '{hash}'\n"));
        assert_eq!(
            config.check(Some(&basic("prometheus", "argon-scrape"))),
            Ok(())
        );
        assert_eq!(
            config.check(Some(&basic("prometheus", "argon-scrapE"))),
            Err(Unauthorized::Wrong)
        );
    }

    #[test]
    fn a_bearer_token_is_compared_whole() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("token");
        std::fs::write(&path, "t0ken-for-scrapes\n").unwrap();
        let config = WebConfig::open().with_bearer_token_file(&path).unwrap();
        let bearer = |token: &str| HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        assert_eq!(config.check(Some(&bearer("t0ken-for-scrapes"))), Ok(()));
        assert_eq!(
            config.check(Some(&bearer("t0ken-for-scrape"))),
            Err(Unauthorized::Wrong)
        );
        assert_eq!(
            config.check(Some(&bearer("t0ken-for-scrapes!"))),
            Err(Unauthorized::Wrong)
        );
        assert_eq!(
            config.check(Some(&basic("t0ken-for-scrapes", ""))),
            Err(Unauthorized::Wrong)
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(WebConfig::open().with_bearer_token_file(&path).is_err());
    }

    #[test]
    fn malformed_authorization_is_wrong_not_a_crash() {
        let config = users(&bcrypt_user());
        for value in [
            "Basic",
            "Basic !!!",
            "Basic cHJvbWV0aGV1cw==",
            "Digest x",
            "",
        ] {
            let value = HeaderValue::from_static(value);
            assert_eq!(
                config.check(Some(&value)),
                Err(Unauthorized::Wrong),
                "{value:?}"
            );
        }
    }

    #[test]
    fn without_credentials_anyone_may_scrape() {
        assert_eq!(users("").check(None), Ok(()));
        assert_eq!(users("basic_auth_users:\n").check(None), Ok(()));
        assert!(users("").challenges().is_empty());
    }

    #[test]
    fn settings_the_server_does_not_implement_are_refused_not_ignored() {
        for yaml in [
            "http_server_config:\n  http2: false\n",
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS11\n",
            "basic_auth_users:\n  prometheus: plaintext\n",
            // An htpasswd line pasted whole, with a password rather than a hash.
            "basic_auth_users: prometheus:plaintext\n",
        ] {
            let error = WebConfig::from_yaml(yaml, Path::new(".")).unwrap_err();
            assert!(!error.to_string().contains("plaintext"), "{error}");
        }
    }

    #[test]
    fn debug_shows_counts_never_credentials() {
        let config = users(&bcrypt_user());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("prometheus") && !shown.contains("$2"),
            "{shown}"
        );
        assert!(shown.contains("basic_auth_users: 1"), "{shown}");
    }
}
