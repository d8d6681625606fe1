//! One keep-alive HTTP/1.1 connection that posts logins and checks each answer's
//! status: the client of the instruction counts (`count_instructions`, `peers`).
//! It does the same work whatever the server, so a difference in a count is the
//! server's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Sends each `(body, expected status line prefix)` as a `POST /login` over one
/// connection, in order, and reads each whole answer before the next request;
/// opens a new connection after an answer that says `Connection: close` (the
/// server closes a connection after `LOGIN_MAX_REQUESTS_PER_CONNECTION`).
pub fn post_logins<'a>(
    addr: SocketAddr,
    logins: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<()> {
    let connect = || -> anyhow::Result<_> {
        let stream = TcpStream::connect(addr)?;
        Ok((BufReader::new(stream.try_clone()?), stream))
    };
    let (mut reader, mut writer) = connect()?;
    for (body, expected) in logins {
        let request = format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        writer.write_all(request.as_bytes())?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        anyhow::ensure!(status.starts_with(expected), "unexpected answer: {status}");
        let (mut length, mut close) = (0, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" {
                break;
            }
            let line = line.to_ascii_lowercase();
            if let Some(value) = line.strip_prefix("content-length:") {
                length = value.trim().parse()?;
            }
            close |= line.starts_with("connection:") && line.contains("close");
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if close {
            (reader, writer) = connect()?;
        }
    }
    Ok(())
}
