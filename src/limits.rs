//! What one client may cost the server.
//!
//! A server that waits politely for every client can be held by clients that
//! never finish: half a request header, a body sent a byte a second, a
//! connection opened and forgotten. Each costs a file descriptor and some
//! memory, and once the descriptors run out nothing is accepted any more, not
//! even a scrape. So every wait has a bound, and the number of connections has
//! one too, set well below the descriptor limit.

use std::time::Duration;

// ANCHOR: limits
/// The bounds the server puts on what clients can make it wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a client may take to send a request's line and headers,
    /// counted from when the connection opens or the previous answer was
    /// sent. hyper uses one timer for both, so this is also how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Longest a client may take to send a login's body once its headers
    /// have arrived; answered 408 past it.
    pub body_timeout: Duration,
    /// Most connections open on the login listener at once; more are closed
    /// as soon as they are accepted, and counted.
    pub max_connections: usize,
    /// How long requests in flight may take to finish after a shutdown
    /// signal; what is still open then is closed.
    pub shutdown_grace: Duration,
    /// Longest a login may wait for a password hashing thread; one that would
    /// wait longer is answered 503 at once (load shedding).
    pub max_hash_wait: Duration,
    /// Most login connections one client address may hold open at once, so that
    /// one address cannot take the whole budget. Trusted proxies are exempt.
    pub max_connections_per_client: usize,
    /// Longest a client may leave an answer waiting: when the socket's buffers
    /// are full because the client stopped reading, and nothing more can be
    /// written for this long, the connection is closed. Both listeners.
    pub write_timeout: Duration,
    /// Most requests one connection may make; the answer to the last one says
    /// `Connection: close`. It bounds what a client that pipelines requests
    /// without reading the answers can queue on one connection. Both listeners.
    pub max_requests_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: MAX_DEFAULT_CONNECTIONS,
            // Below `docker stop`'s 10 s and Kubernetes' 30 s before SIGKILL.
            shutdown_grace: Duration::from_secs(8),
            // Under a second, and above the 250 ms of the latency objective: a
            // busy server answers slowly before it starts refusing.
            max_hash_wait: Duration::from_millis(500),
            // A browser opens six connections to a host; an office behind one
            // address opens many more; a slowloris from one address, no more.
            max_connections_per_client: 64,
            // An answer of a few hundred bytes fits in the socket's buffer at
            // once: this only runs while a client leaves them full.
            write_timeout: Duration::from_secs(10),
            // Apache's default: a proxy reconnects every hundred logins, which
            // costs nothing, and a pipelining client gets a hundred answers.
            max_requests_per_connection: 100,
        }
    }
}
// ANCHOR_END: limits

// ANCHOR: header_limit
/// The largest request line and headers the server reads, on both listeners;
/// a larger block is answered 431 (414 for a long request line) and the
/// connection closed, counted as `too_large`.
///
/// A login sends a few hundred bytes of headers (curl about 150, a browser's
/// form under 1 KiB); cookies of the same site can add a few KiB. 8 KiB leaves
/// room for those, and is the limit nginx and Apache put on a header line by
/// default. hyper's own default is the size of its read buffer, about 400
/// KiB, which a slowloris client fills on every connection it holds.
pub const HEADER_BLOCK_LIMIT: usize = 8 * 1024;

/// The most of a connection's input and output hyper holds in memory at once:
/// a header block and a login's body, or pipelined requests waiting for their
/// turn. hyper's default is about 400 KiB per connection.
pub const CONNECTION_BUFFER: usize = 16 * 1024;
// ANCHOR_END: header_limit

// ANCHOR: budget
/// Connections the metrics listener accepts at once: Prometheus needs one per
/// server scraping it, so this leaves room for a few and for `curl`.
pub const METRICS_CONNECTIONS: usize = 32;

/// The default login connection budget, whatever the descriptor limit: a
/// 2-core login server answers a few hundred logins a second, and more open
/// connections than this only hold memory.
pub const MAX_DEFAULT_CONNECTIONS: usize = 4096;

/// Descriptors kept out of any budget: the metrics listener's connections,
/// the listeners themselves, files read under `/proc` for the process
/// metrics, the runtime's own.
pub const RESERVED_DESCRIPTORS: u64 = METRICS_CONNECTIONS as u64 + 96;

/// The default login connection budget for a process allowed `fd_limit`
/// open descriptors: half of them, at most [`MAX_DEFAULT_CONNECTIONS`].
#[must_use]
pub fn default_max_connections(fd_limit: Option<u64>) -> usize {
    fd_limit.map_or(MAX_DEFAULT_CONNECTIONS, |limit| {
        usize::try_from(limit / 2)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_DEFAULT_CONNECTIONS)
    })
}

/// Whether `max_connections` login connections fit in `fd_limit` descriptors
/// and still leave [`RESERVED_DESCRIPTORS`] for the rest of the process.
#[must_use]
pub fn fits(max_connections: usize, fd_limit: Option<u64>) -> bool {
    fd_limit.is_none_or(|limit| {
        u64::try_from(max_connections)
            .ok()
            .and_then(|wanted| wanted.checked_add(RESERVED_DESCRIPTORS))
            .is_some_and(|wanted| wanted <= limit)
    })
}
// ANCHOR_END: budget

// ANCHOR: fd_limit
/// Raises this process's soft limit on open files to its hard limit, and
/// returns the limit now in force (`None`: unlimited, or not known here).
///
/// The soft limit is often 1,024 for historical reasons (`select` cannot
/// handle more), while the hard limit a process may raise it to is far
/// higher. A server that uses `epoll`, as tokio does, has no reason to stay
/// at the soft one.
#[must_use]
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if let Err(error) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(%error, "cannot raise the open files limit");
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(target_os = "linux"))]
    None
}
// ANCHOR_END: fd_limit

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_half_the_descriptors_at_most_4096() {
        assert_eq!(default_max_connections(Some(1024)), 512);
        assert_eq!(default_max_connections(Some(20_000)), 4096);
        assert_eq!(default_max_connections(None), 4096);
        assert_eq!(default_max_connections(Some(1)), 1);
    }

    #[test]
    fn a_budget_must_leave_descriptors_for_the_rest() {
        assert!(fits(512, Some(1024)));
        assert!(!fits(1024, Some(1024)));
        assert!(fits(usize::MAX, None));
    }
}
