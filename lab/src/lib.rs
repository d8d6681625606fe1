//! # The login-metrics lab
//!
//! The tools behind the book's measured figures, apart from the server they
//! measure and from the tests that prove the book's claims. Each tool is a binary
//! (`cargo run -p lab --release --bin NAME`, see `README.md`); what several of
//! them share is here:
//!
//! - [`server_process`]: the real `login_server` binary as a child process,
//!   measured from outside (CPU time, memory, scrapes, a legitimate login).
//! - [`chart`]: the book's line charts, drawn from a real Prometheus run.
//! - [`dashboard_figure`]: the whole dashboard as one figure, for the quick start.
//! - [`stats`]: medians and percentiles for the tables.
//! - [`keep_alive`]: the client of the instruction counts, one keep-alive connection.

pub mod chart;
pub mod dashboard_figure;
pub mod keep_alive;
#[cfg(target_os = "linux")]
pub mod server_process;
pub mod stats;
