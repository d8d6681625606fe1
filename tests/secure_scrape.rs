//! The scrape with credentials over TLS: the claims of the book's "Who may
//! scrape" (`book/src/hardening/scrape-auth.md`).
//!
//! Each test makes its own certificate authority, server certificate and
//! password (`login_metrics_testkit::tls`), starts the login server on
//! `0.0.0.0` with the `web.yml` that names them, and, for the live claims, a
//! real Prometheus running `deploy/secure/prometheus.yml` with the CA and the
//! password file placed next to it. Without a Prometheus those tests print one
//! `skipped:` line; without promtool, the promtool checks do.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use login_metrics::AppState;
use login_metrics::auth::UserStore;
use login_metrics::metrics::HandshakeFailed;
use login_metrics::metrics_listener::MetricsListener;
use login_metrics::throttle::Throttle;
use login_metrics::web_config::WebConfig;
use login_metrics_testkit::book::TUTORIAL_QUERIES;
use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::exposition::Scrape;
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::logins::send_logins;
use login_metrics_testkit::server::TestServer;
use login_metrics_testkit::tls::{SCRAPE_USER, SERVER_NAME, SecureScrape};
use login_metrics_testkit::tools::promtool;
use login_metrics_testkit::wait::eventually;
use serde_yaml_ng::Value;

const ANY_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const WAIT: Duration = Duration::from_secs(45);
const CONFIG: &str = "deploy/secure/prometheus.yml";

/// A server whose metrics listener reads `secure`'s `web.yml`.
async fn secure_server(secure: &SecureScrape) -> TestServer {
    server_with(WebConfig::from_file(&secure.web_yml()).unwrap()).await
}

/// A server whose metrics listener has the web configuration `web`.
async fn server_with(web: WebConfig) -> TestServer {
    server_with_listener(MetricsListener {
        web: Some(Arc::new(web)),
        ..MetricsListener::default()
    })
    .await
}

/// A server whose metrics listener is `scrapers`.
async fn server_with_listener(scrapers: MetricsListener) -> TestServer {
    let state = AppState::new(UserStore::with_demo_user())
        .with_throttle(Throttle::off())
        .with_metrics_listener(scrapers);
    TestServer::start_with(ANY_ADDRESS, state).await.unwrap()
}

/// What Prometheus sends: the password `password`, or no credentials at all.
enum Sends<'a> {
    Password(&'a str),
    Nothing,
}

/// A Prometheus running `deploy/secure/prometheus.yml` against `server`, with
/// the CA of `secure` and the credentials `sends`; `None` (already explained)
/// when no Prometheus can run here.
async fn prometheus(
    server: &TestServer,
    secure: &SecureScrape,
    sends: Sends<'_>,
) -> Option<Prometheus> {
    let builder = Prometheus::builder()
        .config(CONFIG)
        .scrape_server(server.metrics_addr.port())
        .file("ca.pem", secure.ca_pem());
    let builder = match sends {
        Sends::Password(password) => builder.file("scrape-password", format!("{password}\n")),
        Sends::Nothing => builder.edit_config(|root, _| {
            for job in root["scrape_configs"].as_sequence_mut().unwrap() {
                job.as_mapping_mut().unwrap().remove("basic_auth");
            }
            Ok(())
        }),
    };
    let prometheus = builder.start().await.unwrap()?;
    eprintln!(
        "Prometheus ({:?}) at {} scrapes https://{}",
        prometheus.backend(),
        prometheus.base_url(),
        prometheus.target()
    );
    Some(prometheus)
}

/// The target's `lastError` once it is down.
async fn last_error_when_down(prometheus: &Prometheus) -> String {
    prometheus
        .wait_for_target_health("down", WAIT)
        .await
        .unwrap();
    let targets = prometheus.active_targets().await.unwrap();
    let ours = targets
        .iter()
        .find(|t| t["labels"]["job"] == prometheus.job())
        .expect("the login server's target");
    ours["lastError"].as_str().unwrap_or_default().to_owned()
}

/// Waits until the server has counted at least one 401 scrape for `reason`
/// (it counts before it answers, so once the target is down it has).
async fn refusals_counted(server: &TestServer, reason: &str) {
    let series = format!("login_metrics_scrapes_unauthorized_total{{reason=\"{reason}\"}}");
    eventually(&format!("{series} > 0"), || {
        Scrape::of(&server.state.metrics)
            .value(&series)
            .is_some_and(|v| v > 0.0)
    })
    .await;
}

#[tokio::test]
async fn with_the_right_password_over_tls_the_target_is_up_and_the_seeds_queries_return_data() {
    let secure = SecureScrape::generate().unwrap();
    let server = secure_server(&secure).await;
    let Some(prometheus) = prometheus(&server, &secure, Sends::Password(secure.password())).await
    else {
        return;
    };
    prometheus.wait_for_target_health("up", WAIT).await.unwrap();
    send_logins(&server.login_url(), 20, 10, 5).await.unwrap();
    for query in TUTORIAL_QUERIES {
        prometheus
            .wait_for_nonzero(query, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e:#}"));
    }
    let refused = Scrape::of(&server.state.metrics);
    for reason in ["missing", "wrong"] {
        let series = format!("login_metrics_scrapes_unauthorized_total{{reason=\"{reason}\"}}");
        assert_eq!(refused.value(&series), Some(0.0), "{series}");
    }
}

#[tokio::test]
async fn without_credentials_the_target_is_down_with_the_401_and_the_server_counts_it() {
    let secure = SecureScrape::generate().unwrap();
    let server = secure_server(&secure).await;
    let Some(prometheus) = prometheus(&server, &secure, Sends::Nothing).await else {
        return;
    };
    let error = last_error_when_down(&prometheus).await;
    assert!(error.contains("401"), "lastError: {error}");
    refusals_counted(&server, "missing").await;
    prometheus
        .wait_for_value(&format!("up{{job=\"{}\"}}", prometheus.job()), 0.0, WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn with_a_wrong_password_the_target_is_down_with_the_401_and_the_server_counts_it() {
    let secure = SecureScrape::generate().unwrap();
    let server = secure_server(&secure).await;
    let Some(prometheus) = prometheus(&server, &secure, Sends::Password("not-the-password")).await
    else {
        return;
    };
    let error = last_error_when_down(&prometheus).await;
    assert!(error.contains("401"), "lastError: {error}");
    check_output("troubleshooting/unauthorized", &error, &Masks::none());
    refusals_counted(&server, "wrong").await;
    let logs = prometheus.logs().await;
    assert!(
        !logs.contains(secure.password()),
        "the password in Prometheus' log"
    );
}

#[tokio::test]
async fn the_login_port_answers_as_ever_while_scrapes_are_refused() {
    let secure = SecureScrape::generate().unwrap();
    let server = secure_server(&secure).await;
    let Some(prometheus) = prometheus(&server, &secure, Sends::Password("not-the-password")).await
    else {
        return;
    };
    last_error_when_down(&prometheus).await;
    let (good, bad, malformed) = (7, 5, 3);
    send_logins(&server.login_url(), good, bad, malformed)
        .await
        .unwrap();
    let scrape = Scrape::of(&server.state.metrics);
    assert_eq!(scrape.requests(StatusCode::OK), good as u64);
    assert_eq!(scrape.requests(StatusCode::UNAUTHORIZED), bad as u64);
    assert_eq!(scrape.requests(StatusCode::BAD_REQUEST), malformed as u64);
}

#[tokio::test]
async fn a_scrape_without_credentials_gets_401_with_a_basic_challenge_and_no_metrics() {
    let secure = SecureScrape::generate().unwrap();
    let server = secure_server(&secure).await;
    let url = format!(
        "https://{SERVER_NAME}:{}/metrics",
        server.metrics_addr.port()
    );
    let client = secure.client(server.metrics_addr).unwrap();
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.headers()["www-authenticate"],
        r#"Basic realm="metrics""#
    );
    let body = refused.text().await.unwrap();
    assert!(!body.contains("login_requests_total"), "{body}");
    let wrong = client
        .get(&url)
        .basic_auth(SCRAPE_USER, Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = client
        .get(&url)
        .basic_auth(SCRAPE_USER, Some(secure.password()))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    let page = right.text().await.unwrap();
    assert!(
        page.contains("login_metrics_scrapes_unauthorized_total{reason=\"missing\"} 1"),
        "{page}"
    );
    assert!(
        page.contains("login_metrics_scrapes_unauthorized_total{reason=\"wrong\"} 1"),
        "{page}"
    );
    assert!(!page.contains(SCRAPE_USER), "a user name in the metrics");
}

/// Waits until the server has counted `times` failed TLS handshakes for `reason`,
/// and none for the other.
async fn failed_handshakes_counted(server: &TestServer, reason: HandshakeFailed, times: u32) {
    let count = |reason: HandshakeFailed| {
        Scrape::of(&server.state.metrics).value(&format!(
            "login_metrics_tls_handshakes_failed_total{{reason=\"{}\"}}",
            reason.as_str()
        ))
    };
    eventually(
        &format!("{times} failed handshakes counted as {reason:?}"),
        || count(reason) == Some(f64::from(times)),
    )
    .await;
    for other in HandshakeFailed::ALL.into_iter().filter(|r| *r != reason) {
        assert_eq!(count(other), Some(0.0), "{other:?}");
    }
}

#[tokio::test]
async fn plain_http_and_an_untrusted_certificate_get_no_metrics_and_count_failed_handshakes() {
    let secure = SecureScrape::generate().unwrap();
    let server = secure_server(&secure).await;
    let plain = reqwest::Client::new()
        .get(server.metrics_url())
        .basic_auth(SCRAPE_USER, Some(secure.password()))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP was answered"
    );
    // A scraper whose authority did not sign the server's certificate hangs up.
    let stranger = SecureScrape::generate().unwrap();
    let untrusting = stranger
        .client(server.metrics_addr)
        .unwrap()
        .get(format!(
            "https://{SERVER_NAME}:{}/metrics",
            server.metrics_addr.port()
        ))
        .basic_auth(SCRAPE_USER, Some(secure.password()))
        .send()
        .await;
    assert!(untrusting.is_err(), "a certificate it does not trust");
    failed_handshakes_counted(&server, HandshakeFailed::Error, 2).await;
}

#[tokio::test]
async fn a_client_that_stalls_the_tls_handshake_is_cut_off_at_the_idle_timeout_and_counted() {
    let secure = SecureScrape::generate().unwrap();
    let server = server_with_listener(MetricsListener {
        web: Some(Arc::new(WebConfig::from_file(&secure.web_yml()).unwrap())),
        idle_timeout: Duration::from_millis(300),
        ..MetricsListener::default()
    })
    .await;
    // Connects and sends nothing: no ClientHello ever comes.
    let mut stalled = tokio::net::TcpStream::connect(server.metrics_addr)
        .await
        .unwrap();
    let answer = login_metrics_testkit::clients::until_closed(&mut stalled).await;
    assert_eq!(answer, "", "the server closes it without a word");
    failed_handshakes_counted(&server, HandshakeFailed::Timeout, 1).await;
}

/// `deploy/secure/prometheus.yml` in a folder with the two files it names,
/// as a reader lays it out.
fn secure_config_in_place(secure: &SecureScrape) -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::copy(
        format!("{root}/{CONFIG}"),
        folder.path().join("prometheus.yml"),
    )
    .unwrap();
    std::fs::write(folder.path().join("ca.pem"), secure.ca_pem()).unwrap();
    std::fs::write(folder.path().join("scrape-password"), secure.password()).unwrap();
    folder
}

fn assert_promtool_accepts(args: &[&str]) {
    let Some(output) = promtool(args, b"") else {
        return;
    };
    assert!(
        output.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_the_secure_prometheus_configuration_with_its_files_in_place() {
    let secure = SecureScrape::generate().unwrap();
    let folder = secure_config_in_place(&secure);
    let config = folder.path().join("prometheus.yml");
    assert_promtool_accepts(&["check", "config", config.to_str().unwrap()]);
}

#[test]
fn the_shipped_web_yml_is_read_by_promtool_and_by_the_server_alike() {
    let secure = SecureScrape::generate().unwrap();
    let shipped = format!("{}/deploy/secure/web.yml", env!("CARGO_MANIFEST_DIR"));
    let web_yml = secure.folder().join("shipped-web.yml");
    std::fs::copy(&shipped, &web_yml).unwrap();
    let web = WebConfig::from_file(&web_yml).unwrap();
    assert!(web.asks_for_credentials() && web.tls().is_some(), "{web:?}");
    assert_promtool_accepts(&["check", "web-config", web_yml.to_str().unwrap()]);
    // The test's own web.yml, bcrypt of cost 10 with TLS, too.
    assert_promtool_accepts(&["check", "web-config", secure.web_yml().to_str().unwrap()]);
}

#[test]
fn the_secure_configuration_scrapes_over_https_with_a_password_file_and_a_ca() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/{CONFIG}")).unwrap();
    let config: Value = serde_yaml_ng::from_str(&text).unwrap();
    let job = &config["scrape_configs"][0];
    assert_eq!(job["scheme"], "https");
    assert_eq!(job["basic_auth"]["username"], SCRAPE_USER);
    assert!(
        job["basic_auth"]["password"].is_null(),
        "a password written in the file"
    );
    assert_eq!(job["basic_auth"]["password_file"], "scrape-password");
    assert_eq!(job["tls_config"]["ca_file"], "ca.pem");
    assert_eq!(job["tls_config"]["server_name"], SERVER_NAME);
    assert!(job["tls_config"]["insecure_skip_verify"].is_null());
}

/// A server reading `web_yml`, written into `secure`'s folder beside its certificates.
async fn server_with_web_yml(secure: &SecureScrape, web_yml: &str) -> TestServer {
    let path = secure.folder().join("other-web.yml");
    std::fs::write(&path, web_yml).unwrap();
    server_with(WebConfig::from_file(&path).unwrap()).await
}

const CERTIFICATE: &str =
    "tls_server_config:\n  cert_file: login-server.pem\n  key_file: login-server-key.pem\n";

#[tokio::test]
async fn tls_1_2_is_the_oldest_version_served_and_min_version_tls13_refuses_it() {
    let secure = SecureScrape::generate().unwrap();
    let tls12_only = |server: &TestServer| {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(secure.ca_pem().as_bytes()).unwrap(),
            )
            .resolve(SERVER_NAME, server.metrics_addr)
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .build()
            .unwrap()
    };
    let url = |server: &TestServer| {
        format!(
            "https://{SERVER_NAME}:{}/metrics",
            server.metrics_addr.port()
        )
    };
    let default = server_with_web_yml(&secure, CERTIFICATE).await;
    let answer = tls12_only(&default)
        .get(url(&default))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::OK,
        "TLS 1.2 with the default min_version"
    );
    let strict =
        server_with_web_yml(&secure, &format!("{CERTIFICATE}  min_version: TLS13\n")).await;
    let refused = tls12_only(&strict).get(url(&strict)).send().await;
    assert!(
        refused.is_err(),
        "TLS 1.2 with min_version TLS13: {refused:?}"
    );
    let client = secure.client(strict.metrics_addr).unwrap();
    let answer = client.get(url(&strict)).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "TLS 1.3");
}

#[tokio::test]
async fn a_bearer_token_from_its_file_is_accepted_as_the_password_is() {
    let secure = SecureScrape::generate().unwrap();
    let token_file = secure.folder().join("scrape-token");
    std::fs::write(&token_file, "a-token-for-scrapes\n").unwrap();
    let web = WebConfig::from_file(&secure.web_yml())
        .unwrap()
        .with_bearer_token_file(&token_file)
        .unwrap();
    let server = server_with(web).await;
    let url = format!(
        "https://{SERVER_NAME}:{}/metrics",
        server.metrics_addr.port()
    );
    let client = secure.client(server.metrics_addr).unwrap();
    let refused = client.get(&url).send().await.unwrap();
    let challenges: Vec<_> = refused
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        challenges,
        [r#"Basic realm="metrics""#, r#"Bearer realm="metrics""#]
    );
    let with_token = client
        .get(&url)
        .bearer_auth("a-token-for-scrapes")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);
    let wrong_token = client
        .get(&url)
        .bearer_auth("a-token-for-scrape")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), StatusCode::UNAUTHORIZED);
    let with_password = client
        .get(&url)
        .basic_auth(SCRAPE_USER, Some(secure.password()))
        .send()
        .await
        .unwrap();
    assert_eq!(with_password.status(), StatusCode::OK);
}
