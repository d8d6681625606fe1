//! The defences of Step 8, over real sockets from distinct client addresses (the
//! loopback range 127.0.0.0/8 gives each client its own): one address guessing
//! passwords is throttled while another logs in; a flood from many addresses is
//! shed with fast 503s while the logins that are answered never waited past the
//! bound; every 429 and 503 is counted once; one address cannot hold every
//! connection. Every loop here is bounded in count and time.
//!
//! The two floods are load tests: they run under CI and with
//! `LOGIN_METRICS_LOAD_TESTS=1`, and check their machine assumption (a flood this
//! machine cannot answer in time) before they start.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::limits::Limits;
use login_metrics::metrics::Closed;
use login_metrics::throttle::{LoginRate, Throttle};
use login_metrics_testkit::clients::{HALF_A_HEADER, connect_from};
use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, Expect, QueryContext, Variables, dashboard_file, expect_under_ordinary_traffic,
    load_dashboard,
};
use login_metrics_testkit::exposition::{ScrapeMetrics as _, sample};
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::logins::Login;
use login_metrics_testkit::server::{TestServer, hashing_capacity};
use login_metrics_testkit::wait::eventually;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A server on loopback with `limits` and `throttle`.
async fn server(limits: Limits, throttle: Throttle) -> TestServer {
    let state = AppState::new(UserStore::with_demo_user())
        .with_limits(limits)
        .with_throttle(throttle);
    TestServer::start_with(IpAddr::V4(Ipv4Addr::LOCALHOST), state)
        .await
        .unwrap()
}

/// `burst` attempts, then one a minute: nothing refills during a test.
fn strict(burst: u32) -> Throttle {
    Throttle::new(
        Some(LoginRate {
            burst: NonZeroU32::new(burst).unwrap(),
            interval: Duration::from_secs(60),
        }),
        Vec::new(),
    )
}

/// An HTTP client whose connections come from `127.a.b.c`.
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(address))
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Status, `Retry-After` and JSON body of one login.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

async fn login(client: &reqwest::Client, url: &str, body: &str) -> Answer {
    login_with(client, url, body, None).await
}

async fn login_with(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(forwarded) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

const UNKNOWN_USER: &str = r#"{"username":"nobody","password":"guess"}"#;

/// What the two floods below ask of the hashing threads: their clients keep about
/// a thousand logins a second waiting at once for a bound of 100 or 200 ms.
const FLOOD_DEMAND: f64 = 1000.0;

/// The machine assumption of the floods: that they ask for at least twice what this
/// machine's hashing threads answer, so that some logins wait past the bound and are
/// shed. A machine with many cores answers such a flood in time and sheds nothing;
/// there the test says so in one line instead of failing.
async fn flood_outruns_hashing() -> bool {
    let capacity = hashing_capacity().await;
    if capacity * 2.0 < FLOOD_DEMAND {
        return true;
    }
    login_metrics_testkit::env::skip(&format!(
        "this machine verifies {capacity:.0} logins/s, too many for a flood of \
         {FLOOD_DEMAND:.0}/s to be shed"
    ));
    false
}

#[tokio::test]
async fn a_guessing_address_is_throttled_while_another_address_logs_in() {
    let server = server(Limits::default(), strict(5)).await;
    let url = server.login_url();
    let guesser = client_from([127, 0, 0, 2]);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = login(&guesser, &url, Login::WrongPassword.body()).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(answer.retry_after.is_some_and(|s| s >= 1), "Retry-After");
            assert_eq!(answer.body["error"], "too_many_attempts", "{}", answer.body);
        }
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(statuses, [[401; 5].as_slice(), &[429; 7]].concat());

    let user = client_from([127, 0, 0, 3]);
    let answer = login(&user, &url, Login::Good.body()).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "another address is not throttled"
    );

    let counted = server.state.metrics.scrape();
    assert_eq!(counted.requests(StatusCode::UNAUTHORIZED), 5);
    assert_eq!(counted.requests(StatusCode::TOO_MANY_REQUESTS), 7);
    assert_eq!(counted.requests(StatusCode::OK), 1);
    // A throttled attempt is refused before any hashing.
    assert_eq!(server.state.users.verifications(), 6);
}

#[tokio::test]
async fn a_throttled_unknown_user_gets_exactly_the_answer_a_throttled_known_one_gets() {
    let server = server(Limits::default(), strict(1)).await;
    let url = server.login_url();
    let guesser = client_from([127, 0, 0, 4]);
    assert_eq!(
        login(&guesser, &url, UNKNOWN_USER).await.status,
        StatusCode::UNAUTHORIZED
    );
    let unknown = login(&guesser, &url, UNKNOWN_USER).await;
    let known = login(&guesser, &url, Login::WrongPassword.body()).await;
    assert_eq!(unknown.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        (unknown.status, unknown.retry_after.is_some(), &unknown.body),
        (known.status, known.retry_after.is_some(), &known.body)
    );
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_a_named_proxy() {
    let proxy: IpAddr = "127.0.0.9".parse().unwrap();
    let throttle = Throttle::new(
        Some(LoginRate {
            burst: NonZeroU32::new(2).unwrap(),
            interval: Duration::from_secs(60),
        }),
        vec![proxy.into()],
    );
    let server = server(Limits::default(), throttle).await;
    let url = server.login_url();
    let wrong = Login::WrongPassword.body();

    // Through the trusted proxy, each forwarded client has its own bucket.
    let through_proxy = client_from([127, 0, 0, 9]);
    let alice = Some("198.51.100.1");
    for expected in [401, 401, 429] {
        let answer = login_with(&through_proxy, &url, wrong, alice).await;
        assert_eq!(answer.status.as_u16(), expected);
    }
    let bob = login_with(&through_proxy, &url, wrong, Some("198.51.100.2")).await;
    assert_eq!(
        bob.status,
        StatusCode::UNAUTHORIZED,
        "bob has his own bucket"
    );

    // Anyone else's header is ignored: changing it does not buy a new bucket.
    let spoofer = client_from([127, 0, 0, 10]);
    let mut statuses = Vec::new();
    for n in 0..4 {
        let fake = format!("203.0.113.{n}");
        statuses.push(
            login_with(&spoofer, &url, wrong, Some(&fake))
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_addresses_is_shed_and_answered_logins_never_waited_past_the_bound() {
    if !login_metrics_testkit::env::load_tests_on() || !flood_outruns_hashing().await {
        return;
    }
    let bound = Duration::from_millis(200);
    let limits = Limits {
        max_hash_wait: bound,
        ..Limits::default()
    };
    // The default throttle: ten attempts at once per address, then one a second.
    let server = server(limits, Throttle::default()).await;
    let url = Arc::new(server.login_url());
    let pool = &server.state.users;
    let threads = pool.hashing().threads();

    // 200 addresses, one connection each, good logins back to back for 3 s:
    // far more than the threads can hash.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (1..=200_u8)
        .map(|n| {
            let url = Arc::clone(&url);
            tokio::spawn(async move {
                let client = client_from([127, 0, 1, n]);
                let mut seen = BTreeMap::<u16, u64>::new();
                while tokio::time::Instant::now() < deadline {
                    let answer = login(&client, &url, Login::Good.body()).await;
                    if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                        assert!(answer.retry_after.is_some_and(|s| s >= 1), "Retry-After");
                        assert_eq!(answer.body["error"], "busy", "{}", answer.body);
                    }
                    *seen.entry(answer.status.as_u16()).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    let mut seen = BTreeMap::<u16, u64>::new();
    for client in clients {
        for (status, count) in client.await.unwrap() {
            *seen.entry(status).or_default() += count;
        }
    }

    // Only the three answers a flood may get, and both defences did work.
    assert!(
        seen.keys().all(|status| [200, 429, 503].contains(status)),
        "{seen:?}"
    );
    assert!(seen.get(&200).is_some_and(|n| *n > 0), "{seen:?}");
    assert!(
        seen.get(&503).is_some_and(|n| *n > 0),
        "no login was shed: {seen:?}"
    );
    // Every answer counted once, each under its own status.
    let counted = server.state.metrics.scrape();
    for (status, count) in &seen {
        let status = StatusCode::from_u16(*status).unwrap();
        assert_eq!(counted.requests(status), *count, "{status}");
    }
    // The logins that got a thread never waited past the bound. The wait is
    // measured when the waiting task runs again, so the runtime's own delay,
    // here with 200 clients in the same process, adds to it: half the bound
    // is allowed for that. And at most one hash per thread ever ran.
    eprintln!(
        "flood answers: {seen:?}; longest wait {:?}",
        pool.hashing().longest_wait()
    );
    assert!(
        pool.hashing().longest_wait() <= bound + bound / 2,
        "a login waited {:?} for a thread, past the bound {bound:?}",
        pool.hashing().longest_wait()
    );
    assert!(pool.hashing().peak_jobs() <= threads);
    assert_eq!(
        counted.value("login_hashing_queued"),
        Some(0.0),
        "nothing is left waiting"
    );
}

/// A connection from `127.0.0.<last>` that sends half a request header and
/// stays silent.
async fn stalled_from(last: u8, to: SocketAddr) -> TcpStream {
    let mut stream = connect_from([127, 0, 0, last], to).await.unwrap();
    stream.write_all(HALF_A_HEADER).await.unwrap();
    stream
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let limits = Limits {
        max_connections: 32,
        max_connections_per_client: 8,
        ..Limits::default()
    };
    let server = server(limits, Throttle::off()).await;
    let metrics = Arc::clone(&server.state.metrics);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(stalled_from(20, server.app_addr).await);
    }
    // The server closes the twelve over the address's share as it accepts them.
    eventually("the twelve over the share are closed", || {
        metrics
            .scrape()
            .connections_closed(Closed::ClientOverBudget)
            >= 12
    })
    .await;
    let counted = metrics.scrape();
    assert_eq!(counted.connections_closed(Closed::ClientOverBudget), 12);
    assert_eq!(counted.connections_open(), 8);
    // Another address is served at once.
    let user = client_from([127, 0, 0, 21]);
    assert_eq!(
        login(&user, &server.login_url(), Login::Good.body())
            .await
            .status,
        StatusCode::OK
    );
    drop(held);
}

#[tokio::test]
async fn the_throttle_remembers_recent_clients_only() {
    let throttle = Throttle::new(
        Some(LoginRate {
            burst: NonZeroU32::new(1).unwrap(),
            interval: Duration::from_millis(100),
        }),
        Vec::new(),
    );
    let server = server(Limits::default(), throttle).await;
    for n in 1..=30_u8 {
        let client = client_from([127, 0, 2, n]);
        let answer = login(&client, &server.login_url(), Login::Malformed.body()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let answer = login(&client, &server.login_url(), Login::WrongPassword.body()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let gauge = |text: &str| sample(text, "login_throttle_clients");
    let scrape = || async {
        reqwest::get(server.metrics_url())
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Malformed bodies cost no hash and are not counted against the address.
    assert_eq!(gauge(&scrape().await), Some(30.0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.state.throttle.forget_idle();
    assert_eq!(gauge(&scrape().await), Some(0.0));
}

#[tokio::test]
async fn the_defence_series_exist_at_zero_from_start() {
    let server = server(Limits::default(), Throttle::default()).await;
    let text = reqwest::get(server.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        r#"login_requests_total{status_code="429"}"#,
        r#"login_requests_total{status_code="503"}"#,
        r#"login_connections_closed_total{reason="client_over_budget"}"#,
        "login_hashing_queued",
        "login_hashing_busy",
        "login_throttle_clients",
    ] {
        assert_eq!(sample(&text, series), Some(0.0), "{series}");
    }
    let threads = server.state.users.hashing().threads();
    assert_eq!(
        sample(&text, "login_hashing_threads"),
        Some(f64::from(u32::try_from(threads).unwrap()))
    );
}

/// The dashboard's defence panels, as Grafana would send them to Prometheus,
/// `(title, refId, PromQL)`.
async fn defence_panel_queries(prometheus: &Prometheus) -> Vec<(String, String, String)> {
    let dashboard = load_dashboard(&dashboard_file()).unwrap();
    let ctx = QueryContext::for_panel(Duration::from_secs(300), 300, Duration::from_secs(1));
    let variables = Variables::resolve_within(
        &dashboard,
        DATASOURCE_UID,
        prometheus.api(),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    dashboard
        .queries()
        .filter(|(panel, target)| {
            expect_under_ordinary_traffic(&panel.title, &target.ref_id) == Some(Expect::Zero)
        })
        .map(|(panel, target)| {
            (
                panel.title.clone(),
                target.ref_id.clone(),
                ctx.expand(&variables.expand(&target.expr)),
            )
        })
        .collect()
}

/// What ordinary traffic never shows, an attack does: the panels that stay at zero
/// in the dashboard's own test show throttling, shedding and a queue here, from a
/// real Prometheus scraping a server under a guesser and a flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defence_panels_show_an_attack_to_a_real_prometheus() {
    if !login_metrics_testkit::env::load_tests_on() || !flood_outruns_hashing().await {
        return;
    }
    let limits = Limits {
        max_hash_wait: Duration::from_millis(100),
        ..Limits::default()
    };
    // Ten attempts a second per address: the guesser, one address on eight
    // connections, goes over it and is throttled; the flood, a hundred addresses
    // each under it, is more than the threads can hash, and is shed.
    let throttle = Throttle::new(
        Some(LoginRate {
            burst: NonZeroU32::new(3).unwrap(),
            interval: Duration::from_millis(100),
        }),
        Vec::new(),
    );
    let state = AppState::new(UserStore::with_demo_user())
        .with_limits(limits)
        .with_throttle(throttle);
    let server = TestServer::start_with(IpAddr::V4(Ipv4Addr::UNSPECIFIED), state)
        .await
        .unwrap();
    let Some(prometheus) = Prometheus::start(server.metrics_addr.port()).await.unwrap() else {
        return; // the harness printed why
    };
    prometheus
        .wait_for_target_health("up", Duration::from_secs(30))
        .await
        .unwrap();

    let url = Arc::new(server.login_url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let attackers: Vec<_> = (0..108_u8)
        .map(|n| {
            let url = Arc::clone(&url);
            tokio::spawn(async move {
                // 127.0.5.200 guesses passwords on eight connections; 127.0.5.1-100
                // flood with good logins, one connection each.
                let (client, body) = if n >= 100 {
                    (client_from([127, 0, 5, 200]), Login::WrongPassword.body())
                } else {
                    (client_from([127, 0, 5, n + 1]), Login::Good.body())
                };
                while tokio::time::Instant::now() < deadline {
                    // Any answer, or none: the server's own counters tell.
                    let _ = client
                        .post(url.as_str())
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                }
            })
        })
        .collect();

    for (title, ref_id, promql) in defence_panel_queries(&prometheus).await {
        prometheus
            .wait_for_nonzero(&promql, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{title:?} {ref_id}: {e:#}"));
    }
    for attacker in attackers {
        attacker.abort();
    }
}
