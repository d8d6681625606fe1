//! Proves the Prometheus harness on its own: a real Prometheus (in Docker or the local
//! binary, whichever `LOGIN_METRICS_PROMETHEUS` selects) scrapes a tiny static
//! `/metrics` endpoint, reports the target up, then down once it stops.

use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use login_metrics_testkit::harness::docker;
use login_metrics_testkit::harness::engine::{Launch, Reach};
use login_metrics_testkit::harness::prometheus::{self, BACKEND_ENV, Backend, Prometheus};
use login_metrics_testkit::promql::POLL_EVERY;
use login_metrics_testkit::wait::{Check, poll};
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(30);

const EXPOSITION: &str = "\
# HELP harness_smoke_value A constant the smoke test looks for.
# TYPE harness_smoke_value gauge
harness_smoke_value 42
";

/// Serves `EXPOSITION` at `/metrics` on `0.0.0.0` (reachable from containers).
async fn serve_static_metrics() -> (u16, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                EXPOSITION,
            )
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, server)
}

fn expected_backend() -> Option<Backend> {
    match std::env::var(BACKEND_ENV).ok()?.as_str() {
        "container" => Some(Backend::Container),
        "native" => Some(Backend::Native),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_target_and_sees_it_go_down() {
    let (port, server) = serve_static_metrics().await;
    let Some(prometheus) = Prometheus::start(port).await.unwrap() else {
        return; // `start` printed what to install.
    };
    eprintln!(
        "Prometheus ({}) at {} scraping {}",
        prometheus.backend(),
        prometheus.base_url(),
        prometheus.target()
    );
    if let Some(expected) = expected_backend() {
        assert_eq!(prometheus.backend(), expected);
    }
    assert!(prometheus.base_url().starts_with("http://"));
    assert_eq!(prometheus.job(), "login_server");
    assert!(prometheus.target().ends_with(&format!(":{port}")));

    prometheus
        .wait_for_target_health("up", DEADLINE)
        .await
        .unwrap();
    let up = prometheus
        .wait_for_data(r#"up{job="login_server"}"#, DEADLINE)
        .await
        .unwrap();
    assert_eq!(up[0]["value"][1], "1", "{up}");
    assert_eq!(up[0]["metric"]["instance"], prometheus.target(), "{up}");

    let value = prometheus
        .wait_for_data("harness_smoke_value", DEADLINE)
        .await
        .unwrap();
    assert_eq!(value[0]["value"][1], "42", "{value}");
    let again = prometheus.query("harness_smoke_value").await.unwrap();
    assert_eq!(again[0]["metric"], value[0]["metric"]);
    assert_eq!(again[0]["value"][1], "42");

    // Bad PromQL is an error, not an empty answer.
    let err = prometheus.query("sum(").await.unwrap_err().to_string();
    assert!(err.contains("bad_data"), "{err}");

    // A query that never returns data fails with everything needed to debug it.
    let err = prometheus
        .wait_for_data("no_such_metric", Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    for needle in [
        "no data for `no_such_metric`",
        "last answer",
        "health=\"up\"",
        "lastError",
        "log",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!prometheus.logs().await.is_empty());

    // Stop the target: Prometheus notices.
    server.abort();
    prometheus
        .wait_for_target_health("down", DEADLINE)
        .await
        .unwrap();
    prometheus
        .wait_for_data(r#"up{job="login_server"} == 0"#, DEADLINE)
        .await
        .unwrap();
}

/// What Grafana relies on: Prometheus started on a Docker network is reachable by
/// other containers at `network_url()`. A second Prometheus container (same image) on
/// that network scrapes the first one by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_on_a_network_is_reachable_by_name() {
    let (port, _server) = serve_static_metrics().await;
    let network = docker::unique_name("login-metrics-smoke");
    let name = docker::unique_name("prometheus");
    let Some(prometheus) = Prometheus::start_on_network(port, &network, &name)
        .await
        .unwrap()
    else {
        return; // `start_on_network` printed why.
    };
    assert_eq!(prometheus.backend(), Backend::Container);
    let in_network = prometheus.network_url().unwrap().to_owned();
    assert_eq!(in_network, format!("http://{name}:9090"));
    prometheus
        .wait_for_target_health("up", DEADLINE)
        .await
        .unwrap();

    let peer_target = in_network.trim_start_matches("http://").to_owned();
    let peer_config = format!(
        "global: {{scrape_interval: 1s}}\n\
         scrape_configs:\n  - job_name: peer\n    static_configs: [{{targets: ['{peer_target}']}}]\n"
    );
    let reach = Reach {
        network: Some((network.clone(), docker::unique_name("prometheus-peer"))),
        from_containers: false,
    };
    let peer = prometheus::ENGINE
        .start(reach, |ctx| {
            Ok(Launch {
                files: vec![("prometheus.yml".into(), peer_config.clone().into_bytes())],
                args: vec![
                    format!("--config.file={}/prometheus.yml", ctx.config_dir),
                    format!("--storage.tsdb.path={}", ctx.data_dir),
                    format!("--web.listen-address={}", ctx.listen),
                ],
                ..Launch::default()
            })
        })
        .await
        .unwrap()
        .expect("the first Prometheus ran in a container, so the peer does too");
    let peer_url = format!(
        "{}/api/v1/query?query=up%7Bjob%3D%22peer%22%7D",
        peer.base_url()
    );

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let what = format!("the peer scraping {peer_target}");
    let scraped = poll(&what, DEADLINE, POLL_EVERY, || async {
        match client.get(&peer_url).send().await {
            Ok(response) => match response.json::<serde_json::Value>().await {
                Ok(body) if body["data"]["result"][0]["value"][1] == "1" => Check::Met(()),
                Ok(body) => Check::NotYet(body.to_string()),
                Err(e) => Check::NotYet(format!("{e}")),
            },
            Err(e) => Check::NotYet(format!("{e}")),
        }
    })
    .await;
    if let Err(timed_out) = scraped {
        panic!("{timed_out}; peer log:\n{}", peer.logs().await);
    }
}
