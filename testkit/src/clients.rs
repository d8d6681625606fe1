//! Clients at the socket level, as an attacker or a broken client behaves: each
//! from a loopback address of its own (the whole 127.0.0.0/8 range answers on
//! Linux, so every client can have one, as in the wild), sending raw bytes that
//! an HTTP library would never send.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::server::TestServer;
use crate::wait::{PATIENCE, eventually};

/// Half of a request header: what a slowloris client sends before going silent.
pub const HALF_A_HEADER: &[u8] = b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: appl";

/// A login whose headers promise 100 bytes of body and whose body stops after 11:
/// the server waits for the rest, with the request in flight.
pub const HALF_A_LOGIN: &[u8] = b"POST /login HTTP/1.1\r\nHost: test\r\n\
    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\"";

/// A complete `POST /login` with `body`, as raw HTTP/1.1.
#[must_use]
pub fn login_request(body: &str) -> String {
    format!(
        "POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A connection to `to` from the loopback address `from` (such as `[127, 0, 0, 2]`),
/// to pose as a client of its own.
pub async fn connect_from(from: impl Into<IpAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    let from = from.into();
    let socket = match from {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Reads until the server closes the connection (end of file or reset) and
/// returns what it sent; panics if it is still open after [`PATIENCE`].
pub async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

/// A client from `from` that sends [`HALF_A_LOGIN`] to `server`, waits until the
/// server has the request in flight, and hangs up: an abandoned login.
pub async fn hang_up_mid_body(server: &TestServer, from: impl Into<IpAddr>) {
    use crate::exposition::ScrapeMetrics as _;

    let metrics = &server.state.metrics;
    let before = metrics.scrape().requests_in_flight();
    let mut client = connect_from(from, server.app_addr)
        .await
        .expect("connecting to the server under test");
    client
        .write_all(HALF_A_LOGIN)
        .await
        .expect("sending half a login");
    eventually("the request is in flight", || {
        metrics.scrape().requests_in_flight() == before + 1
    })
    .await;
    drop(client);
}
