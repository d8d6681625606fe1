//! The defences of the book's Step 8, measured: each attack is played against
//! the real `login_server` binary twice in one run, once as shipped (the
//! defences on) and once with them off, and printed side by side.
//!
//! ```sh
//! cargo build --release --example login_server
//! cargo run -p lab --release --bin under_attack                  # about four minutes
//! cargo run -p lab --release --bin under_attack -- --only flood   # or guessing, cheap-path
//! ```
//!
//! "Defences off" is the same binary with
//! `--no-login-limit --max-hash-wait 3600s --max-connections-per-client 2048`
//! (2048 is the whole connection budget under `ulimit -n 4096`).
//!
//! - **guessing**: one address, 127.0.0.2, sends wrong passwords on 64
//!   connections, back to back, for 10 s; a legitimate user on 127.0.0.3 logs
//!   in once a second meanwhile.
//! - **flood**: the server's capacity is measured first (2 s of good logins on
//!   2 × cores connections, defences off); then good logins are sent at
//!   `--flood-factor` (10) times that rate for 15 s, each on a new connection,
//!   from 256 addresses in turn (127.1.0.1 upward), whatever the server
//!   answers; meanwhile a legitimate user logs in every 200 ms, from one of 20
//!   addresses of its own in turn (127.2.0.1-20, so each logs in every 4 s).
//!   Four servers: defences on and off, each with glibc's default allocator
//!   settings and with `MALLOC_MMAP_THRESHOLD_=1048576`.
//! - **cheap-path**: `wrk -t1 -c8` (needs `wrk` on PATH) on requests that cost
//!   no hash: malformed bodies (400) with the throttle on and off, and good
//!   logins from one address whose burst is spent (429) with the throttle on;
//!   in rounds, each run a fresh server with its default logging. Plus the
//!   throttle's own calls timed in this process.
//!
//! The load comes from this process, over loopback. On a machine with few
//! cores it competes with the server for them: the table shows both CPU times.
//! Linux only (it reads `/proc`).

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("under_attack reads /proc, so it runs on Linux only");
}

#[cfg(target_os = "linux")]
mod linux;
