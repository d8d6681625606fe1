//! Renders Step 9's figures (`book/src/figures/scale-*.svg`) from a real run with
//! three replicas.
//!
//! It starts four login servers in-process, lists three of them in a `file_sd` targets
//! directory and starts a real Prometheus running `deploy/prometheus.file_sd.yml` on it
//! (the test harness: Docker, or a `prometheus` binary with
//! `LOGIN_METRICS_PROMETHEUS=native`). A small load balancer spreads logins over the
//! replicas it is given, for three phases of [`PHASE`] each:
//!
//! 1. three replicas;
//! 2. replica 3 stopped (the balancer stops sending to it, Prometheus keeps trying);
//! 3. replica 4 written into the targets file and given to the balancer.
//!
//! It then asks Prometheus for the dashboard's "Requests per instance" and "Targets up
//! of expected" panels over that time, the way Grafana would, and draws them.
//!
//! ```sh
//! LOGIN_METRICS_PROMETHEUS=native cargo run -p lab --bin render_scale_figures
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use lab::chart::{self, Chart, Line, SIZE};
use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, QueryContext, Variables, dashboard_file, load_dashboard,
};
use login_metrics_testkit::harness::prometheus::{Prometheus, TargetGroup, TargetsDir};
use login_metrics_testkit::logins::Login;
use login_metrics_testkit::server::TestServer;
use plotters::prelude::*;

const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const PHASE: Duration = Duration::from_secs(15);
/// Clients of the load balancer, each sending one login after another.
const CLIENTS: usize = 2;
/// A pause after each login, per client: about 2 × 1 / 40 ms = 50 logins a second.
const PAUSE: Duration = Duration::from_millis(40);

const PHASES: [(&str, RGBColor); 3] = [
    ("three replicas", RGBColor(232, 245, 233)),
    ("replica 3 stopped", RGBColor(255, 235, 238)),
    ("replica 4 added", RGBColor(227, 242, 253)),
];
const COLORS: [RGBColor; 4] = [
    RGBColor(25, 118, 210),
    RGBColor(56, 142, 60),
    RGBColor(211, 47, 47),
    RGBColor(123, 31, 162),
];

/// The replicas the load balancer sends to: login URLs.
type Pool = Arc<Mutex<Vec<String>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out_dir = login_metrics_testkit::repo_root().join("book/src/figures");
    std::fs::create_dir_all(&out_dir)?;

    let Some(placement) = Prometheus::placement().await? else {
        bail!("no Prometheus to run (see the line above)");
    };
    let host = placement.host_seen_from_engine();
    let mut servers = Vec::new();
    for _ in 0..4 {
        servers.push(TestServer::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await?);
    }
    let ports: Vec<u16> = servers.iter().map(|s| s.metrics_addr.port()).collect();
    let names: BTreeMap<String, String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| (format!("{host}:{port}"), format!("replica {}", i + 1)))
        .collect();
    let targets = TargetsDir::new()?;
    targets.write("login_server.yml", &[TargetGroup::ports(host, &ports[..3])])?;
    let Some(prometheus) = Prometheus::builder()
        .config("deploy/prometheus.file_sd.yml")
        .file_sd(&targets)
        .start()
        .await?
    else {
        bail!("no Prometheus to run (see the line above)");
    };
    prometheus
        .wait_for_targets_up(3, 3, Duration::from_secs(30))
        .await?;
    eprintln!(
        "Prometheus ({}) at {} discovers {}",
        prometheus.backend(),
        prometheus.base_url(),
        targets.path().display()
    );

    let (start, end) = run_traffic(&mut servers, &targets, host, &ports).await?;
    render(&prometheus, &names, start, end, &out_dir).await?;
    drop(prometheus);
    for server in servers {
        server.stop().await?;
    }
    Ok(())
}

/// The three phases; returns when the traffic started and ended (Unix seconds).
async fn run_traffic(
    servers: &mut Vec<TestServer>,
    targets: &TargetsDir,
    host: &str,
    ports: &[u16],
) -> anyhow::Result<(f64, f64)> {
    let pool: Pool = Arc::new(Mutex::new(
        servers[..3].iter().map(TestServer::login_url).collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                n,
                Arc::clone(&pool),
                Arc::clone(&stop),
                Arc::clone(&sent),
            ))
        })
        .collect();

    let start = unix_now();
    eprintln!("phase 1: {}", PHASES[0].0);
    tokio::time::sleep(PHASE).await;

    eprintln!("phase 2: {}", PHASES[1].0);
    let stopped = servers.remove(2);
    pool.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|url| *url != stopped.login_url());
    stopped.stop().await?;
    tokio::time::sleep(PHASE).await;

    eprintln!("phase 3: {}", PHASES[2].0);
    targets.write("login_server.yml", &[TargetGroup::ports(host, ports)])?;
    pool.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(servers[2].login_url());
    tokio::time::sleep(PHASE).await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await??;
    }
    tokio::time::sleep(3 * SCRAPE_INTERVAL).await;
    eprintln!("{} logins sent", sent.load(Ordering::Relaxed));
    Ok((start, unix_now()))
}

/// Both figures, from the dashboard's queries over `start..end`.
async fn render(
    prometheus: &Prometheus,
    names: &BTreeMap<String, String>,
    start: f64,
    end: f64,
    out_dir: &Path,
) -> anyhow::Result<()> {
    let dashboard = load_dashboard(&dashboard_file())?;
    let variables = Variables::resolve(&dashboard, DATASOURCE_UID, prometheus.api()).await?;
    let ctx = QueryContext::for_panel(
        Duration::from_secs_f64(end - start),
        SIZE.0,
        SCRAPE_INTERVAL,
    );
    let query = |panel: &str, ref_id: &str| -> anyhow::Result<String> {
        let target = dashboard
            .panel(panel)
            .and_then(|p| p.targets.iter().find(|t| t.ref_id == ref_id))
            .with_context(|| format!("panel {panel:?} query {ref_id}"))?;
        Ok(ctx.expand(&variables.expand(&target.expr)))
    };

    // Figure 1: requests per instance, and their sum.
    let per_instance = query("Requests per instance", "A")?;
    let mut lines = Vec::new();
    for (instance, points) in series_by(
        prometheus,
        &per_instance,
        start,
        end,
        ctx.interval,
        "instance",
    )
    .await?
    {
        let name = names.get(&instance).cloned().unwrap_or(instance);
        lines.push((name, points));
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let total = format!("sum({per_instance})");
    let total = series_by(prometheus, &total, start, end, ctx.interval, "").await?;
    lines.extend(
        total
            .into_iter()
            .map(|(_, p)| ("all replicas".to_owned(), p)),
    );
    let path = out_dir.join("scale-requests-per-instance.svg");
    draw(
        &path,
        "Requests per instance, and all of them",
        "requests/s",
        &lines,
        end - start,
    )?;
    eprintln!("wrote {}", path.display());

    // Figure 2: targets up out of expected.
    let mut lines = Vec::new();
    for (legend, ref_id) in [("up", "A"), ("expected", "B")] {
        let promql = query("Targets up of expected", ref_id)?;
        for (_, points) in series_by(prometheus, &promql, start, end, ctx.interval, "").await? {
            lines.push((legend.to_owned(), points));
        }
    }
    let path = out_dir.join("scale-targets-up.svg");
    draw(
        &path,
        "Targets up of expected",
        "targets",
        &lines,
        end - start,
    )?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// One client of the load balancer: logins (two good, one wrong password) to the
/// replicas of `pool` in turn, until `stop`. Every answer is checked.
async fn client(
    n: usize,
    pool: Pool,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let logins = [Login::Good, Login::Good, Login::WrongPassword];
    // Bounded: at most one request per PAUSE over three phases, with room to spare.
    let most = 4 * 3 * PHASE.as_millis() / PAUSE.as_millis();
    for i in 0..most {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let url = {
            let pool = pool
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let index = usize::try_from(i).unwrap_or(0).wrapping_add(n) % pool.len();
            pool[index].clone()
        };
        logins[usize::try_from(i % 3).unwrap_or(0)]
            .send(&http, &url)
            .await?;
        sent.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(PAUSE).await;
    }
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `(value of label, [(seconds since start, value)])` for every series of a range query.
async fn series_by(
    prometheus: &Prometheus,
    promql: &str,
    start: f64,
    end: f64,
    step: Duration,
    label: &str,
) -> anyhow::Result<Vec<(String, Vec<(f64, f64)>)>> {
    let result = prometheus.query_range(promql, start, end, step).await?;
    let mut out = Vec::new();
    for series in result.as_array().into_iter().flatten() {
        let name = series["metric"][label]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let points: Vec<(f64, f64)> = series["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|sample| {
                let t = sample[0].as_f64()?;
                let v = sample[1].as_str()?.parse::<f64>().ok()?;
                v.is_finite().then_some((t - start, v))
            })
            .collect();
        if points.is_empty() {
            bail!("no data for `{promql}`");
        }
        out.push((name, points));
    }
    if out.is_empty() {
        bail!("no series for `{promql}`");
    }
    Ok(out)
}

/// Prints each line's mean over each phase, for the captions.
fn summarize(lines: &[(String, Vec<(f64, f64)>)]) {
    let phase = PHASE.as_secs_f64();
    for (legend, points) in lines {
        let means: Vec<String> = (0..PHASES.len())
            .map(|i| {
                #[allow(clippy::cast_precision_loss)] // i < 3
                let (from, to) = (i as f64 * phase, (i + 1) as f64 * phase);
                let inside: Vec<f64> = points
                    .iter()
                    .filter(|(t, _)| *t >= from + 4.0 && *t < to)
                    .map(|p| p.1)
                    .collect();
                if inside.is_empty() {
                    "-".to_owned()
                } else {
                    #[allow(clippy::cast_precision_loss)] // a few dozen points
                    let mean = inside.iter().sum::<f64>() / inside.len() as f64;
                    format!("{mean:.1}")
                }
            })
            .collect();
        eprintln!(
            "  {legend}: mean per phase (after its first 4 s) {}",
            means.join(" / ")
        );
    }
}

fn draw(
    path: &Path,
    title: &str,
    y_label: &str,
    lines: &[(String, Vec<(f64, f64)>)],
    duration: f64,
) -> anyhow::Result<()> {
    let chart = Chart {
        title,
        y_label,
        phases: &PHASES,
        phase_secs: PHASE.as_secs_f64(),
        duration,
        headroom: 1.35,
        whole_y_labels: true,
    };
    let drawn: Vec<Line<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, (legend, points))| {
            let color = if legend == "all replicas" || legend == "expected" {
                BLACK
            } else {
                COLORS[i % COLORS.len()]
            };
            (legend.as_str(), color, points.as_slice())
        })
        .collect();
    chart::draw(path, &chart, &drawn)?;
    summarize(lines);
    Ok(())
}
