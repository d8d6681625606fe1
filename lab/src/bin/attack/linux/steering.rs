//! Clients that try to steer the server: a rotating address behind a hop the
//! server cannot read, the credentials as an array, a client logged under
//! another form of its address.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use lab::server_process::{Launch, Server};

use super::Report;

/// Through a trusted proxy (127.0.0.40), 50 wrong passwords at once whose
/// `X-Forwarded-For` names a new address each time, left of an `ip:port` hop.
/// Sent together, so that the answers do not depend on how fast the server
/// hashes: a throttle that keys them on one address lets its burst through.
pub(super) async fn forwarded_for(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    let server = Server::launch(
        binary,
        &Launch {
            args: vec!["--trusted-proxy".into(), "127.0.0.40".into()],
            ..Launch::default()
        },
    )?;
    let proxy = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from([127, 0, 0, 40]))
        .build()?;
    let guesses: Vec<_> = (0..50)
        .map(|n| {
            let guess = proxy
                .post(format!("http://{}/login", server.login))
                .header("content-type", "application/json")
                .header("x-forwarded-for", format!("10.9.9.{n}, 127.0.15.2:4444"))
                .body(r#"{"username":"user","password":"wrong"}"#)
                .send();
            tokio::spawn(guess)
        })
        .collect();
    let mut answers = BTreeMap::<String, usize>::new();
    for guess in guesses {
        let answer = guess.await?.map_or_else(
            |_| "no answer".to_owned(),
            |answer| answer.status().as_u16().to_string(),
        );
        *answers.entry(answer).or_default() += 1;
    }
    report.push((
        "X-Forwarded-For `10.9.9.N, 127.0.15.2:4444`, N rotating: 50 guesses at once".into(),
        format!("{answers:?}"),
    ));
    Ok(())
}

/// `["user","pass"]` as the body of a login.
pub(super) async fn array_login(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    let server = Server::start(binary)?;
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("http://{}/login", server.login))
        .header("content-type", "application/json")
        .body(r#"["user","pass"]"#)
        .send()
        .await?;
    report.push((
        "`[\"user\",\"pass\"]` as the body".into(),
        answer.status().to_string(),
    ));
    Ok(())
}

/// A login from 127.0.0.9 to a dual-stack login listener (`[::]`): the form
/// of its address in the request's log line.
pub(super) async fn mapped_peer(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    let server = Server::launch(
        binary,
        &Launch {
            login_addr: Some("[::]:0".into()),
            env: vec![("RUST_LOG".into(), Some("info".into()))],
            ..Launch::default()
        },
    )?;
    let to = SocketAddr::from(([127, 0, 0, 1], server.login.port()));
    let _ = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from([127, 0, 0, 9]))
        .build()?
        .get(format!("http://{to}/login"))
        .send()
        .await?;
    // The log writer writes within milliseconds; give it a second.
    let started = Instant::now();
    let form = loop {
        if server.log_lines_containing("peer=::ffff:127.0.0.9") > 0 {
            break "peer=::ffff:127.0.0.9";
        }
        if server.log_lines_containing("peer=127.0.0.9 ") > 0 {
            break "peer=127.0.0.9";
        }
        if started.elapsed() > Duration::from_secs(1) {
            break "no request line";
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    report.push((
        "an IPv4 client of a `[::]` listener, in the request line".into(),
        form.to_owned(),
    ));
    Ok(())
}
