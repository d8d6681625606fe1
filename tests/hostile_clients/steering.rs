//! Clients that try to steer the server: to choose the address the throttle
//! sees, to log in through a form of the API nobody wrote, or to be logged
//! under another form of their address.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::metrics_listener::MetricsListener;
use login_metrics::throttle::{LoginRate, Throttle};
use login_metrics_testkit::clients::{connect_from, until_closed};
use login_metrics_testkit::exposition::ScrapeMetrics as _;
use login_metrics_testkit::logs::Captured;
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::wait::eventually;
use reqwest::StatusCode;

use super::{server, server_with, short_limits};

/// A client bound to `127.0.0.<last>`.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, last]))
        .no_proxy()
        .build()
        .unwrap()
}

/// Three wrong passwords through the trusted proxy 127.0.0.150, each with an
/// `X-Forwarded-For` whose first entry changes and whose last is `malformed`;
/// the statuses they get, against a throttle of two attempts a minute.
async fn through_the_proxy_with(malformed: &str) -> Vec<u16> {
    let throttle = Throttle::new(
        Some(LoginRate {
            burst: NonZeroU32::new(2).unwrap(),
            interval: Duration::from_secs(60),
        }),
        vec!["127.0.0.150/32".parse().unwrap()],
    );
    let server = server_with(short_limits(), MetricsListener::default(), throttle).await;
    let proxy = client_from(150);
    let mut statuses = Vec::new();
    for n in 0..3 {
        let answer = proxy
            .post(server.login_url())
            .header("content-type", "application/json")
            .header("x-forwarded-for", format!("203.0.113.{n}, {malformed}"))
            .body(r#"{"username":"user","password":"wrong"}"#)
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    statuses
}

/// The attacker rotates the entry on the left, and a hop the server cannot
/// read sits between it and the proxy: the proxy is taken for the client, so
/// the rotation buys nothing and the third attempt is throttled.
const ONE_BUCKET: [u16; 3] = [401, 401, 429];

#[tokio::test]
async fn x_forwarded_for_with_an_ip_and_port_hop_keys_the_proxy_not_the_entry_to_its_left() {
    assert_eq!(through_the_proxy_with("127.0.15.2:4444").await, ONE_BUCKET);
}

#[tokio::test]
async fn x_forwarded_for_with_a_bracketed_ipv6_and_port_hop_keys_the_proxy() {
    assert_eq!(
        through_the_proxy_with("[2001:db8::1]:4444").await,
        ONE_BUCKET
    );
}

#[tokio::test]
async fn x_forwarded_for_with_an_unknown_hop_keys_the_proxy() {
    assert_eq!(through_the_proxy_with("unknown").await, ONE_BUCKET);
}

#[tokio::test]
async fn x_forwarded_for_with_a_garbage_hop_keys_the_proxy() {
    assert_eq!(through_the_proxy_with("x'; DROP TABLE--").await, ONE_BUCKET);
}

#[tokio::test]
async fn x_forwarded_for_with_an_empty_hop_keys_the_proxy() {
    assert_eq!(through_the_proxy_with("").await, ONE_BUCKET);
}

#[tokio::test]
async fn the_array_form_of_the_credentials_is_refused_with_a_400_and_counted() {
    let server = server(short_limits()).await;
    let answer = client_from(151)
        .post(server.login_url())
        .header("content-type", "application/json")
        .body(r#"["user","pass"]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "invalid_body", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("expected an object") && !message.contains("pass\""),
        "{message}"
    );
    let counted = server.state.metrics.scrape();
    assert_eq!(counted.requests(StatusCode::BAD_REQUEST), 1);
    assert_eq!(counted.requests(StatusCode::OK), 0);
    assert_eq!(server.state.users.verifications(), 0, "no password checked");
}

#[tokio::test]
async fn an_ipv4_client_of_a_dual_stack_listener_is_logged_as_ipv4_in_every_line() {
    let log = Captured::start();
    let throttle = Throttle::new(
        Some(LoginRate {
            burst: NonZeroU32::new(1).unwrap(),
            interval: Duration::from_secs(60),
        }),
        Vec::new(),
    );
    let state = AppState::new(UserStore::with_demo_user())
        .with_limits(short_limits())
        .with_metrics_listener(MetricsListener {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            ..MetricsListener::default()
        })
        .with_throttle(throttle);
    // `[::]`: IPv4 clients arrive as IPv4-mapped IPv6 addresses, ::ffff:127.0.0.152.
    let server = match TestServer::start_with(IpAddr::V6(Ipv6Addr::UNSPECIFIED), state).await {
        Ok(server) => server,
        Err(error) => {
            login_metrics_testkit::env::skip(&format!("no IPv6 listener here: {error}"));
            return;
        }
    };
    let client = client_from(152);
    // A request line, then a throttle line.
    for expected in [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS] {
        let answer = client
            .post(server.login_url())
            .header("content-type", "application/json")
            .body(r#"{"username":"user","password":"wrong"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), expected);
    }
    // A refusal of the metrics listener's allow-list.
    let mut stranger = connect_from([127, 0, 0, 152], server.metrics_addr)
        .await
        .unwrap();
    until_closed(&mut stranger).await;
    eventually("four lines name the client", || {
        log.lines()
            .iter()
            .filter(|line| line.contains("127.0.0.152"))
            .count()
            >= 4
    })
    .await;
    let lines = log.lines();
    let naming: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("127.0.0.152"))
        .collect();
    assert!(
        naming.iter().all(|line| !line.contains("::ffff:")),
        "{naming:#?}"
    );
    for (what, needle) in [
        ("request lines", "peer=127.0.0.152 "),
        ("the throttle's line", "client=127.0.0.152"),
        (
            "the metrics listener's refusal",
            "peer=127.0.0.152 reason=not_allowed",
        ),
    ] {
        assert!(
            naming.iter().any(|line| line.contains(needle)),
            "{what}: {naming:#?}"
        );
    }
}
