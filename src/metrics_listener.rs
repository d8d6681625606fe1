//! Who may use the metrics listener, and what each of its clients may hold.
//!
//! `/metrics` is the port an attacker most wants closed: a dashboard that goes
//! dark hides whatever else is going on. Its budget is small (Prometheus needs
//! one connection per server scraping it), so a few idle sockets could take it
//! all. Three settings keep it for the scrapers, each counted in
//! `login_metrics_connections_refused_total` when it refuses a connection:
//!
//! - **an allow-list** of the addresses and networks Prometheus scrapes from:
//!   anyone else is closed at once, before taking any of the budget;
//! - **a per-address share** of the budget, as on the login listener, so that
//!   one address cannot hold it all;
//! - **a short idle timeout**: a connection that sends nothing is closed within
//!   seconds, so held sockets cost an attacker a reconnection each time.
//!
//! Past those, a [`WebConfig`] may ask every scrape for credentials and the
//! listener to speak TLS; a scrape without the right ones is answered 401 and
//! counted in `login_metrics_scrapes_unauthorized_total`.
//!
//! These are the listener's settings apart from its address and its budget
//! ([`METRICS_CONNECTIONS`](crate::limits::METRICS_CONNECTIONS)); whatever else
//! decides who may read the metrics belongs here too.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::web_config::WebConfig;

// ANCHOR: metrics_listener
/// The metrics listener's settings: who may connect, and what each client may hold.
#[derive(Debug, Clone)]
pub struct MetricsListener {
    /// The addresses and networks allowed to connect; any address when empty.
    pub allow: Vec<IpNet>,
    /// Most connections one client address may hold open at once.
    pub max_connections_per_client: usize,
    /// Longest a client may take to send a request's headers, counted from when
    /// it connects or was last answered: also how long an idle connection stays.
    pub idle_timeout: Duration,
    /// Credentials asked of every scrape, and TLS (`--web-config-file`); none
    /// when absent.
    pub web: Option<Arc<WebConfig>>,
}

impl Default for MetricsListener {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            // Prometheus holds one connection per target; an HA pair, two
            // addresses. Eight leaves room for a scrape that overlaps a slow
            // one, and for `curl`; four addresses cannot fill the budget of 32
            // while a fifth is scraping, and the allow-list closes the rest.
            max_connections_per_client: 8,
            // Prometheus sends its request as soon as it connects, and scrapes
            // every 15 s or so: a connection idle for 5 s is not one of its own
            // in use, and reconnecting costs it a millisecond.
            idle_timeout: Duration::from_secs(5),
            web: None,
        }
    }
}

impl MetricsListener {
    /// Whether `ip` may connect: the list is empty, or `ip` is in it (an
    /// IPv4-mapped IPv6 address counts as the IPv4 address it carries).
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}
// ANCHOR_END: metrics_listener

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_allow_list_allows_anyone_and_a_list_only_its_members() {
        let anyone = MetricsListener::default();
        assert!(anyone.allows("203.0.113.7".parse().unwrap()));
        let scrapers = MetricsListener {
            allow: vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            ..MetricsListener::default()
        };
        assert!(scrapers.allows("10.1.2.3".parse().unwrap()));
        assert!(scrapers.allows("127.0.0.1".parse().unwrap()));
        assert!(scrapers.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!scrapers.allows("127.0.0.2".parse().unwrap()));
        assert!(!scrapers.allows("2001:db8::1".parse().unwrap()));
    }
}
