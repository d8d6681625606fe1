//! Per-client limits on login attempts: the defence against password guessing.
//!
//! Every login attempt costs the server a full Argon2 verification, and a client
//! allowed to send them as fast as the CPU answers makes about ten million
//! guesses a day. The throttle gives each client address a bucket of attempts
//! (a burst, refilled at a steady pace, the GCRA algorithm of the [`governor`]
//! crate): a person logging in never notices it, a guesser is slowed to the
//! refill pace and answered `429 Too Many Requests` with `Retry-After` for
//! everything above it, before any hashing.
//!
//! Three details decide whether such a limit helps or hurts:
//!
//! * **Which address is the client's.** Behind a reverse proxy every request
//!   comes from the proxy, so the client's address is in `X-Forwarded-For`. That
//!   header is written by whoever sends the request, so it is believed only when
//!   the peer is a proxy the operator named (`--trusted-proxy`), and then read
//!   from the right, skipping the named proxies: the first other address is the
//!   one the nearest trusted proxy saw. An entry that is not an address stops
//!   the walk, and the proxy that passed it on is taken for the client: what
//!   lies to its left was written by someone the server cannot vouch for.
//!   Never by default.
//! * **What an address is.** One IPv6 host commonly holds a whole /64, so an IPv6
//!   client is keyed by its /64: otherwise one machine could be a billion clients.
//! * **Memory.** The limiter remembers each address it has seen. Addresses whose
//!   bucket is full again are indistinguishable from new ones and are forgotten
//!   by [`Throttle::forget_idle`], which the server runs every few seconds, so
//!   memory follows the number of *recent* clients, not of all time.
//!
//! A per-address limit has a known cost: many people behind one NAT address (an
//! office, a mobile carrier) share one bucket. The burst and pace are flags for
//! that reason, and the book discusses the trade-off.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

// ANCHOR: login_rate
/// How many login attempts one client address may make: `burst` at once, then
/// one more every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRate {
    /// Attempts allowed at once, after a quiet period.
    pub burst: NonZeroU32,
    /// Time for one more attempt to be allowed.
    pub interval: Duration,
}

impl Default for LoginRate {
    /// Ten attempts at once, then one a second: a person who mistypes a password
    /// five times never sees a 429; a guesser is cut from about 120 guesses a
    /// second (what this server can hash) to one.
    fn default() -> Self {
        Self {
            burst: NonZeroU32::new(10).expect("10 is not zero"),
            interval: Duration::from_secs(1),
        }
    }
}
// ANCHOR_END: login_rate

/// The per-client throttle on login attempts.
#[derive(Debug)]
pub struct Throttle {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<IpNet>,
}

impl Default for Throttle {
    /// The default rate, no trusted proxy.
    fn default() -> Self {
        Self::new(Some(LoginRate::default()), Vec::new())
    }
}

impl Throttle {
    /// A throttle at `rate` (`None`: no limit), believing `X-Forwarded-For` only
    /// from `trusted_proxies`.
    #[must_use]
    pub fn new(rate: Option<LoginRate>, trusted_proxies: Vec<IpNet>) -> Self {
        let limiter = rate.map(|rate| {
            let quota = Quota::with_period(rate.interval)
                .expect("the interval is not zero")
                .allow_burst(rate.burst);
            DefaultKeyedRateLimiter::keyed(quota)
        });
        Self {
            limiter,
            trusted_proxies,
        }
    }

    /// No limit at all: for load tests that send everything from one address.
    #[must_use]
    pub fn off() -> Self {
        Self::new(None, Vec::new())
    }

    // ANCHOR: client
    /// The address a request is from: the peer, or, when the peer is a trusted
    /// proxy, the last address in `X-Forwarded-For` that is not one; IPv6 cut
    /// to its /64. An entry that is not a bare address (`ip:port`, `unknown`,
    /// empty, garbage) ends the walk at the trusted proxy that passed it on.
    #[must_use]
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        let mut client = peer.ip().to_canonical();
        if trusted(&client) {
            // Every entry, in order; `None` for one that is not an address.
            let hops: Vec<Option<IpAddr>> = headers
                .get_all("x-forwarded-for")
                .iter()
                .flat_map(|value| match value.to_str() {
                    Ok(value) => value
                        .split(',')
                        .map(|hop| hop.trim().parse().ok())
                        .collect(),
                    Err(_) => vec![None],
                })
                .collect();
            // Right to left: each trusted proxy appended the address it saw.
            for hop in hops.into_iter().rev() {
                // Unreadable: the last trusted hop is as far as the walk can
                // vouch for, and so the client.
                let Some(hop) = hop.map(|ip: IpAddr| ip.to_canonical()) else {
                    break;
                };
                client = hop;
                if !trusted(&hop) {
                    break;
                }
            }
        }
        key(client)
    }
    // ANCHOR_END: client

    // ANCHOR: check
    /// Takes one attempt from `client`'s bucket; `Err` with how long until the
    /// next one is allowed when it is empty.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // The limiter's own clock: building a new one probes the CPU (quanta's
        // CPUID checks), which in a virtual machine cost microseconds per refusal.
        limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
    // ANCHOR_END: check

    /// Whether `ip` is one of the trusted proxies: many clients share its
    /// connections, so per-address limits on connections do not apply to it.
    #[must_use]
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Forgets the addresses whose bucket has filled up again: they would be
    /// treated exactly like new ones anyway.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many client addresses the throttle remembers now.
    #[must_use]
    pub fn clients(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(0, DefaultKeyedRateLimiter::len)
    }

    /// Whether there is a limit at all.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.limiter.is_some()
    }
}

/// An IPv4 address as it is; an IPv6 address cut to its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let throttle = Throttle::default();
        let client = throttle.client(peer("203.0.113.7"), &forwarded("198.51.100.1"));
        assert_eq!(client, "203.0.113.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_address_from_the_right_is_the_client() {
        let throttle = Throttle::new(
            Some(LoginRate::default()),
            vec!["10.0.0.0/8".parse().unwrap()],
        );
        // The client wrote a fake first hop; the edge proxy appended the real address,
        // an inner proxy appended the edge proxy's.
        let headers = forwarded("192.0.2.99, 198.51.100.1, 10.1.2.3");
        let client = throttle.client(peer("10.9.9.9"), &headers);
        assert_eq!(client, "198.51.100.1".parse::<IpAddr>().unwrap());
        // Without the header, the proxy itself is the client.
        let client = throttle.client(peer("10.9.9.9"), &HeaderMap::new());
        assert_eq!(client, "10.9.9.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_entry_that_is_not_an_address_stops_the_walk_at_the_proxy_that_passed_it() {
        let throttle = Throttle::new(
            Some(LoginRate::default()),
            vec!["10.0.0.0/8".parse().unwrap()],
        );
        for malformed in [
            "127.0.15.2:4444",
            "[2001:db8::1]:4444",
            "unknown",
            "not an address",
            "",
        ] {
            // The client wrote the first entry; whatever it is, it never counts.
            let headers = forwarded(&format!("192.0.2.99, {malformed}"));
            let client = throttle.client(peer("10.9.9.9"), &headers);
            assert_eq!(
                client,
                "10.9.9.9".parse::<IpAddr>().unwrap(),
                "{malformed:?}"
            );
            // Behind an inner trusted proxy, the walk stops at that proxy.
            let headers = forwarded(&format!("192.0.2.99, {malformed}, 10.1.2.3"));
            let client = throttle.client(peer("10.9.9.9"), &headers);
            assert_eq!(
                client,
                "10.1.2.3".parse::<IpAddr>().unwrap(),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let throttle = Throttle::default();
        let a = throttle.client(peer("2001:db8:1:2:aaaa::1"), &HeaderMap::new());
        let b = throttle.client(peer("2001:db8:1:2:bbbb::2"), &HeaderMap::new());
        let other = throttle.client(peer("2001:db8:1:3::1"), &HeaderMap::new());
        assert_eq!(a, b);
        assert_ne!(a, other);
        let mapped = throttle.client(peer("::ffff:192.0.2.1"), &HeaderMap::new());
        assert_eq!(mapped, "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_interval() {
        let rate = LoginRate {
            burst: NonZeroU32::new(3).unwrap(),
            interval: Duration::from_secs(60),
        };
        let throttle = Throttle::new(Some(rate), Vec::new());
        let guesser: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check(guesser).is_ok());
        }
        let wait = throttle.check(guesser).unwrap_err();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(
            throttle.check(other).is_ok(),
            "another address has its own bucket"
        );
        assert_eq!(throttle.clients(), 2);
    }

    #[test]
    fn clients_whose_bucket_is_full_again_are_forgotten() {
        let rate = LoginRate {
            burst: NonZeroU32::new(2).unwrap(),
            interval: Duration::from_millis(10),
        };
        let throttle = Throttle::new(Some(rate), Vec::new());
        for n in 0..100_u8 {
            throttle.check(IpAddr::from([192, 0, 2, n])).unwrap();
        }
        assert_eq!(throttle.clients(), 100);
        std::thread::sleep(Duration::from_millis(50));
        throttle.forget_idle();
        assert_eq!(throttle.clients(), 0);
    }

    #[test]
    fn off_means_no_limit_and_no_memory() {
        let throttle = Throttle::off();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1000 {
            assert!(throttle.check(client).is_ok());
        }
        assert_eq!(throttle.clients(), 0);
        assert!(!throttle.is_on());
    }
}
