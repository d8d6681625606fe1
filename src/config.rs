//! Command-line and environment configuration.
//!
//! Every setting can come from a flag or from an environment variable, so the
//! same binary runs on a laptop (flags) and in a container (environment). The
//! defaults bind to loopback: nothing is reachable from other machines until
//! you say so. Prometheus running in Docker on Linux reaches the host through
//! the docker bridge, which is *not* loopback, so that setup needs
//! `--metrics-addr 0.0.0.0:8000` (see the book's Step 2).
//!
//! The defaults are written once, where they are explained: the limits in
//! [`Limits`], the metrics listener's settings in [`MetricsListener`], the login
//! rate in [`LoginRate`]. A switch read from the
//! environment (`LOGIN_NO_LIMIT`) takes what people write: `1`, `true`, `yes`,
//! `on`, and `0`, `false`, `no`, `off`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{BoolishValueParser, RangedU64ValueParser};
use clap::{ArgAction, Parser};

use crate::limits::{self, Limits};
use crate::metrics_listener::MetricsListener;
use crate::throttle::{LoginRate, Throttle};
use crate::web_config::{WebConfig, WebConfigError};

// ANCHOR: config
/// Settings for the login server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "login_server",
    about = "A login endpoint instrumented for Prometheus"
)]
pub struct Config {
    /// Address of the application listener that serves `POST /login`.
    #[arg(long, env = "LOGIN_ADDR", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,

    /// Address of the metrics listener that serves `GET /metrics`.
    #[arg(long, env = "LOGIN_METRICS_ADDR", default_value = "127.0.0.1:8000")]
    pub metrics_addr: SocketAddr,

    /// File of `username:argon2-phc-hash` lines with extra users.
    #[arg(long, env = "LOGIN_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Do not create the demo user `user` (password `pass`).
    #[arg(long, env = "LOGIN_NO_DEMO_USER", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub no_demo_user: bool,

    /// Longest a client may take to send a request's headers; also how long
    /// an idle keep-alive connection stays open.
    #[arg(long, env = "LOGIN_HEADER_TIMEOUT", value_parser = duration,
          default_value = shown(Limits::default().header_timeout))]
    pub header_timeout: Duration,

    /// Longest a client may take to send a login's body (408 past it).
    #[arg(long, env = "LOGIN_BODY_TIMEOUT", value_parser = duration,
          default_value = shown(Limits::default().body_timeout))]
    pub body_timeout: Duration,

    /// Most login connections open at once [default: half the open files
    /// limit, at most 4096].
    #[arg(long, env = "LOGIN_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// How long requests in flight may take to finish after SIGTERM.
    #[arg(long, env = "LOGIN_SHUTDOWN_GRACE", value_parser = duration,
          default_value = shown(Limits::default().shutdown_grace))]
    pub shutdown_grace: Duration,

    /// Most login connections one client address may hold open.
    #[arg(long, env = "LOGIN_MAX_CONNECTIONS_PER_CLIENT",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..),
          default_value_t = Limits::default().max_connections_per_client)]
    pub max_connections_per_client: usize,

    /// Longest a login may wait for a hashing thread; 503 at once past it.
    #[arg(long, env = "LOGIN_MAX_HASH_WAIT", value_parser = duration,
          default_value = shown(Limits::default().max_hash_wait))]
    pub max_hash_wait: Duration,

    /// Login attempts a client address may make at once.
    #[arg(long, env = "LOGIN_BURST", default_value_t = LoginRate::default().burst)]
    pub login_burst: NonZeroU32,

    /// Time for a client address to earn one more login attempt.
    #[arg(long, env = "LOGIN_INTERVAL", value_parser = duration,
          default_value = shown(LoginRate::default().interval))]
    pub login_interval: Duration,

    /// No per-client limit on login attempts (for load tests from one machine).
    #[arg(long, env = "LOGIN_NO_LIMIT", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub no_login_limit: bool,

    /// A reverse proxy (address or CIDR) whose `X-Forwarded-For` is believed;
    /// repeat the flag, or separate with commas in the variable. None by default.
    #[arg(long = "trusted-proxy", env = "LOGIN_TRUSTED_PROXIES", value_delimiter = ',', value_parser = network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Longest an answer may wait for a client that stopped reading, on
    /// either listener; the connection is closed past it.
    #[arg(long, env = "LOGIN_WRITE_TIMEOUT", value_parser = duration,
          default_value = shown(Limits::default().write_timeout))]
    pub write_timeout: Duration,

    /// Most requests one connection may make, on either listener; the last
    /// answer says `Connection: close`.
    #[arg(long, env = "LOGIN_MAX_REQUESTS_PER_CONNECTION",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..),
          default_value_t = Limits::default().max_requests_per_connection)]
    pub max_requests_per_connection: usize,

    /// The only addresses or networks (CIDR) that may connect to the metrics
    /// listener: your Prometheus servers. Comma-separated. Anyone by default.
    #[arg(long, env = "LOGIN_METRICS_ALLOW", value_delimiter = ',', value_parser = network)]
    pub metrics_allow: Vec<ipnet::IpNet>,

    /// Most connections one client address may hold on the metrics listener.
    #[arg(long, env = "LOGIN_METRICS_MAX_CONNECTIONS_PER_CLIENT",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..),
          default_value_t = MetricsListener::default().max_connections_per_client)]
    pub metrics_max_connections_per_client: usize,

    /// Longest a connection to the metrics listener may stay without sending
    /// a request's headers.
    #[arg(long, env = "LOGIN_METRICS_IDLE_TIMEOUT", value_parser = duration,
          default_value = shown(MetricsListener::default().idle_timeout))]
    pub metrics_idle_timeout: Duration,

    /// A Prometheus exporter-toolkit `web.yml` for the metrics listener:
    /// `basic_auth_users` (bcrypt or argon2 hashes) and `tls_server_config`.
    #[arg(long, env = "LOGIN_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,

    /// A file holding a token that a scrape may send as `Authorization:
    /// Bearer TOKEN`, with or without `--web-config-file`.
    #[arg(long, env = "LOGIN_METRICS_BEARER_TOKEN_FILE")]
    pub metrics_bearer_token_file: Option<PathBuf>,
}
// ANCHOR_END: config

/// A default duration as a flag takes it (`10s`, `500ms`): the defaults are the
/// ones of [`Limits`] and [`LoginRate`], written once, there.
fn shown(default: Duration) -> String {
    humantime::format_duration(default).to_string()
}

/// A duration such as `10s` or `500ms`; zero would disable nothing and break
/// everything, so it is refused.
fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be more than zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!("{error} (write for example 10s or 500ms)")),
    }
}

/// An address (`10.0.0.5`, one host) or a network (`10.0.0.0/8`).
fn network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is neither an IP address nor a CIDR network"))
}

/// The settings asked for do not fit the process.
#[derive(Debug, thiserror::Error)]
#[error(
    "--max-connections {max_connections} leaves too few of the {fd_limit} open files \
     the process may have for the metrics listener; lower it, or raise `ulimit -n`"
)]
pub struct BudgetTooLarge {
    max_connections: usize,
    fd_limit: u64,
}

impl Config {
    /// The limits these settings ask for, in a process allowed `fd_limit`
    /// open files (see [`limits::raise_fd_limit`]).
    pub fn limits(&self, fd_limit: Option<u64>) -> Result<Limits, BudgetTooLarge> {
        let max_connections = self.max_connections.map_or_else(
            || limits::default_max_connections(fd_limit),
            |max| usize::try_from(max).unwrap_or(usize::MAX),
        );
        if !limits::fits(max_connections, fd_limit) {
            return Err(BudgetTooLarge {
                max_connections,
                // `fits` is true when there is no limit.
                fd_limit: fd_limit.unwrap_or_default(),
            });
        }
        Ok(Limits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            max_connections,
            shutdown_grace: self.shutdown_grace,
            max_hash_wait: self.max_hash_wait,
            max_connections_per_client: self.max_connections_per_client,
            write_timeout: self.write_timeout,
            max_requests_per_connection: self.max_requests_per_connection,
        })
    }

    /// The metrics listener's settings, its web configuration read from the
    /// files named.
    pub fn metrics_listener(&self) -> Result<MetricsListener, WebConfigError> {
        let web = match (&self.web_config_file, &self.metrics_bearer_token_file) {
            (None, None) => None,
            (file, token) => {
                let web = match file {
                    Some(file) => WebConfig::from_file(file)?,
                    None => WebConfig::open(),
                };
                let web = match token {
                    Some(token) => web.with_bearer_token_file(token)?,
                    None => web,
                };
                Some(Arc::new(web))
            }
        };
        Ok(MetricsListener {
            allow: self.metrics_allow.clone(),
            max_connections_per_client: self.metrics_max_connections_per_client,
            idle_timeout: self.metrics_idle_timeout,
            web,
        })
    }

    /// The per-client throttle these settings ask for.
    #[must_use]
    pub fn throttle(&self) -> Throttle {
        let rate = (!self.no_login_limit).then_some(LoginRate {
            burst: self.login_burst,
            interval: self.login_interval,
        });
        Throttle::new(rate, self.trusted_proxies.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// What a switch's environment variable parses to. The flag itself takes no
    /// value, so the switch is given one here, parsed by the same value parser
    /// that reads its variable.
    fn switch(id: &str, value: &str) -> Result<bool, clap::Error> {
        let command = Config::command().mut_arg(id, |arg| arg.action(ArgAction::Set).num_args(1));
        let long = command
            .get_arguments()
            .find(|arg| arg.get_id() == id)
            .and_then(clap::Arg::get_long)
            .expect("the switch has a flag")
            .to_owned();
        let matches =
            command.try_get_matches_from(["login_server", &format!("--{long}"), value])?;
        Ok(*matches.get_one::<bool>(id).expect("a bool"))
    }

    #[test]
    fn switches_from_the_environment_take_what_people_write() {
        for id in ["no_login_limit", "no_demo_user"] {
            for yes in ["1", "true", "TRUE", "yes", "y", "on"] {
                assert!(switch(id, yes).unwrap(), "{id}={yes}");
            }
            for no in ["0", "false", "no", "n", "off"] {
                assert!(!switch(id, no).unwrap(), "{id}={no}");
            }
            assert!(switch(id, "maybe").is_err(), "{id}=maybe");
        }
    }

    #[test]
    fn the_metrics_allow_list_takes_addresses_and_networks_separated_by_commas() {
        let config = Config::parse_from([
            "login_server",
            "--metrics-allow",
            "10.0.0.0/8, 127.0.0.1,::1",
        ]);
        let allowed = config.metrics_listener().unwrap().allow;
        let shown: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
        assert!(
            Config::try_parse_from(["login_server", "--metrics-allow", "10.0.0.0/33"]).is_err()
        );
    }

    #[test]
    fn the_defaults_are_those_of_limits_and_login_rate() {
        let config = Config::parse_from(["login_server"]);
        let limits = config.limits(Some(20_000)).unwrap();
        assert_eq!(
            Limits {
                max_connections: limits::MAX_DEFAULT_CONNECTIONS,
                ..Limits::default()
            },
            limits
        );
        assert_eq!(
            format!("{:?}", config.metrics_listener().unwrap()),
            format!("{:?}", MetricsListener::default())
        );
        assert_eq!(config.login_burst, LoginRate::default().burst);
        assert_eq!(config.login_interval, LoginRate::default().interval);
        assert!(config.throttle().is_on());
        let help = Config::command().render_help().to_string();
        for shown in [
            "[default: 10s]",
            "[default: 8s]",
            "[default: 500ms]",
            "[default: 64]",
            "[default: 100]",
            "[default: 5s]",
            "[default: 8]",
        ] {
            assert!(help.contains(shown), "{shown} in:\n{help}");
        }
    }
}
