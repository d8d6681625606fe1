//! Clients that send and never read: the answers pile up in the socket's
//! buffers, and without a write timeout the connection is held for as long as
//! the client likes. Both listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use login_metrics::limits::Limits;
use login_metrics::metrics::Closed;
use login_metrics_testkit::clients::{connect_from, until_closed};
use login_metrics_testkit::exposition::ScrapeMetrics as _;
use login_metrics_testkit::wait::{PATIENCE, eventually};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::{server, short_limits};

/// A connection from `from` with a receive buffer as small as the kernel
/// allows, so that the server's answers fill it at once.
async fn with_a_tiny_receive_buffer(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `request` over and over, pipelined, and never reads an answer, until
/// the server closes the connection; at most `most` requests, for 30 s at
/// most. Ends with how many it sent.
fn pipeline_without_reading(
    mut stream: TcpStream,
    request: &'static [u8],
    most: usize,
) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let batch: Vec<u8> = request.repeat(100);
        let mut sent = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while sent < most {
            // A write blocks once the server stops reading: it does while its
            // answers cannot be sent. It fails once the server closes.
            match tokio::time::timeout_at(deadline, stream.write_all(&batch)).await {
                Ok(Ok(())) => sent += 100,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        sent
    })
}

/// Requests a client that never reads sends at most: more than the kernel's
/// buffers hold, so that its writes block once the server stops reading.
const PIPELINED: usize = 1_000_000;

/// Limits with a short write timeout, and no cap on requests per connection
/// in the way of the pipelining client.
fn never_reading_limits() -> Limits {
    Limits {
        write_timeout: Duration::from_millis(500),
        max_requests_per_connection: usize::MAX,
        ..short_limits()
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_by_the_write_timeout() {
    let server = server(never_reading_limits()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let stream = with_a_tiny_receive_buffer([127, 0, 0, 120], server.app_addr).await;
    // A million requests (37 MB) for 405 answers of about 200 bytes: far
    // more than the socket buffers on both sides hold, either way.
    let client = pipeline_without_reading(
        stream,
        b"GET /login HTTP/1.1\r\nHost: test\r\n\r\n",
        PIPELINED,
    );
    eventually("the connection is closed for its write timeout", || {
        metrics.scrape().connections_closed(Closed::WriteTimeout) == 1
    })
    .await;
    assert_eq!(metrics.scrape().connections_open(), 0);
    let sent = client.await.unwrap();
    assert!(sent < PIPELINED, "the server read every request: {sent}");
    // What it answered before giving up was counted, each a 405.
    assert!(
        metrics
            .scrape()
            .requests(reqwest::StatusCode::METHOD_NOT_ALLOWED)
            > 0
    );
}

#[tokio::test]
async fn the_metrics_listener_cuts_off_a_client_that_never_reads_its_scrapes() {
    let server = server(never_reading_limits()).await;
    let stream = with_a_tiny_receive_buffer([127, 0, 0, 121], server.metrics_addr).await;
    // Each answer is the whole exposition, several KiB.
    let client = pipeline_without_reading(
        stream,
        b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n",
        PIPELINED,
    );
    // The client's writes fail once the server has closed the connection.
    let sent = tokio::time::timeout(PATIENCE, client)
        .await
        .expect("the metrics listener closed the connection")
        .unwrap();
    assert!(sent < PIPELINED, "the server read every request: {sent}");
    // And it still answers a scrape.
    super::scrape(server.metrics_addr).await;
}

#[tokio::test]
async fn a_connection_is_closed_after_its_most_requests_on_either_listener() {
    let server = server(Limits {
        max_requests_per_connection: 5,
        ..short_limits()
    })
    .await;
    for (to, path, status) in [
        (server.app_addr, "/login", "HTTP/1.1 405"),
        (server.metrics_addr, "/metrics", "HTTP/1.1 200"),
    ] {
        let mut client = connect_from([127, 0, 0, 122], to).await.unwrap();
        // Twenty requests at once, pipelined.
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        client
            .write_all(request.repeat(20).as_bytes())
            .await
            .unwrap();
        let answers = until_closed(&mut client).await;
        assert_eq!(answers.matches(status).count(), 5, "{path}: {answers}");
        assert_eq!(
            answers.matches("connection: close").count(),
            1,
            "{path}: the last answer says so"
        );
    }
    eventually("the login connection is counted as completed", || {
        server
            .state
            .metrics
            .scrape()
            .connections_closed(Closed::Completed)
            == 1
    })
    .await;
}
