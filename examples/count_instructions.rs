//! Counts what the metrics layer costs in CPU instructions rather than seconds,
//! for machines too noisy to time a 1 % difference (the appendix "What
//! monitoring costs"). Run it under callgrind, once per variant:
//!
//! ```sh
//! cargo build --release --example count_instructions
//! for variant in without with; do
//!   valgrind --tool=callgrind --separate-threads=yes \
//!     --callgrind-out-file=/tmp/cg-$variant target/release/examples/count_instructions $variant 5000
//! done
//! grep -h '^summary' /tmp/cg-without-01 /tmp/cg-with-01   # thread 1: the server
//! ```
//!
//! The server (the real `app()`, or `app_without_metrics()`) runs on the main
//! thread; a client on a second thread sends malformed logins (the cheap 400
//! path) over one keep-alive connection. Callgrind counts each thread apart,
//! so thread 1's total is the server's user-space work: the ratio of the two
//! totals is the throughput ratio per core, with the kernel's TCP work (the
//! same for both, and larger) left out, which makes it a pessimistic bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use login_metrics::auth::UserStore;
use login_metrics::routes::app_without_metrics;
use login_metrics::{AppState, app};

const BODY: &str = r#"{"username": "user", "password": "#;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let with_metrics = match args.next().as_deref() {
        Some("with") => true,
        Some("without") => false,
        _ => anyhow::bail!("usage: count_instructions with|without [REQUESTS]"),
    };
    let requests: usize = args.next().map_or(Ok(5000), |n| n.parse())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let state = AppState::new(UserStore::with_demo_user());
    let router = if with_metrics {
        app(state)
    } else {
        app_without_metrics(state)
    };
    let client = std::thread::spawn(move || send(addr, requests));
    runtime.block_on(async {
        let finished = async {
            while !client.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            served = axum::serve(listener, router) => served,
            () = finished => Ok(()),
        }
    })?;
    client
        .join()
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    println!("{requests} requests, metrics layer: {with_metrics}");
    Ok(())
}

/// Sends `requests` malformed logins over one keep-alive connection and
/// checks that each is answered 400.
fn send(addr: std::net::SocketAddr, requests: usize) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    for _ in 0..requests {
        writer.write_all(request.as_bytes())?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        anyhow::ensure!(
            status.starts_with("HTTP/1.1 400"),
            "unexpected answer: {status}"
        );
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
    }
    Ok(())
}
