//! Renders the book's panel figures (`book/src/figures/*.svg`) from real data.
//!
//! It starts the login server in-process and a real Prometheus (the test harness:
//! Docker, or a `prometheus` binary with `LOGIN_METRICS_PROMETHEUS=native`), measures
//! how many logins a second the machine can check, sends half a minute of traffic in
//! three phases sized from that capacity — normal use, password guessing, overload —
//! then asks Prometheus for the dashboard's queries over that time, the way Grafana
//! would, and draws them. Sizing the phases from the machine's own capacity is what
//! keeps the shapes the same on a fast machine and a slow one. Besides Step 5's
//! charts, it draws the whole dashboard as the quick start shows it
//! (`dashboard.svg`, see `lab::dashboard_figure`).
//!
//! ```sh
//! LOGIN_METRICS_PROMETHEUS=native cargo run -p lab --bin render_figures
//! LOGIN_METRICS_PROMETHEUS=native cargo run -p lab --bin render_figures -- dashboard.svg
//! ```
//!
//! With file names as arguments, only those figures are written.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use lab::chart::{self, Chart, Line, SIZE};
use lab::dashboard_figure;
use login_metrics_testkit::dashboard::{
    DATASOURCE_UID, QueryContext, Variables, dashboard_file, load_dashboard,
};
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::logins::Login;
use login_metrics_testkit::server::TestServer;
use plotters::prelude::*;

/// The whole-dashboard figure of the quick start.
const DASHBOARD_FIGURE: &str = "dashboard.svg";

/// The harness' Prometheus scrapes every second; Grafana would be told the same.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const PHASE: Duration = Duration::from_secs(10);

/// The traffic phases, in order: (label, background color).
const PHASES: [(&str, RGBColor); 3] = [
    ("normal use", RGBColor(232, 245, 233)),
    ("password guessing", RGBColor(255, 243, 224)),
    ("overload", RGBColor(255, 235, 238)),
];

/// One figure: file name, title, y-axis label, unit scale and the series drawn.
struct Figure {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    scale: f64,
    series: Vec<Series>,
}

/// One line: legend, color, and the dashboard panel/query it comes from.
struct Series {
    legend: &'static str,
    color: RGBColor,
    panel: &'static str,
    ref_id: &'static str,
}

fn figures() -> Vec<Figure> {
    let green = RGBColor(56, 142, 60);
    let orange = RGBColor(239, 108, 0);
    let purple = RGBColor(123, 31, 162);
    let red = RGBColor(211, 47, 47);
    vec![
        Figure {
            file: "requests-200.svg",
            title: "Successful logins (200) per second",
            y_label: "requests/s",
            scale: 1.0,
            series: vec![Series {
                legend: "200 OK",
                color: green,
                panel: "Successful logins (200) per second",
                ref_id: "A",
            }],
        },
        Figure {
            file: "requests-4xx.svg",
            title: "Client errors (4xx) per second",
            y_label: "requests/s",
            scale: 1.0,
            series: vec![Series {
                legend: "4xx",
                color: orange,
                panel: "Client errors (4xx) per second",
                ref_id: "A",
            }],
        },
        Figure {
            file: "latency-average.svg",
            title: "Average latency",
            y_label: "milliseconds",
            scale: 1000.0,
            series: vec![Series {
                legend: "average",
                color: purple,
                panel: "Average latency",
                ref_id: "A",
            }],
        },
        Figure {
            file: "latency-p95.svg",
            title: "95th percentile latency, next to the average",
            y_label: "milliseconds",
            scale: 1000.0,
            series: vec![
                Series {
                    legend: "p95",
                    color: red,
                    panel: "Latency percentiles (p50, p95, p99)",
                    ref_id: "B",
                },
                Series {
                    legend: "average",
                    color: purple,
                    panel: "Average latency",
                    ref_id: "A",
                },
            ],
        },
    ]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out_dir = login_metrics_testkit::repo_root().join("book/src/figures");
    std::fs::create_dir_all(&out_dir)?;
    // File names on the command line choose the figures; none means all of them.
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |file: &str| chosen.is_empty() || chosen.iter().any(|c| c == file);
    let known: Vec<&str> = figures()
        .iter()
        .map(|f| f.file)
        .chain([DASHBOARD_FIGURE])
        .collect();
    if let Some(unknown) = chosen.iter().find(|c| !known.contains(&c.as_str())) {
        bail!("no figure {unknown:?}; the figures are {known:?}");
    }

    let server = TestServer::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await?;
    let Some(prometheus) = Prometheus::start(server.metrics_addr.port()).await? else {
        bail!("no Prometheus to run (see the line above)");
    };
    prometheus
        .wait_for_target_health("up", Duration::from_secs(30))
        .await?;
    eprintln!(
        "Prometheus ({}) at {}",
        prometheus.backend(),
        prometheus.base_url()
    );

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let c = capacity(&http, &server.login_url()).await?;
    eprintln!("capacity: {c:.0} logins/s");
    // Let the capacity run leave the rate windows before the phases start.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let start = unix_now();
    run_traffic(&http, &server.login_url(), c).await?;
    // Let the last scrapes land.
    tokio::time::sleep(3 * SCRAPE_INTERVAL).await;
    let end = unix_now();

    let dashboard = load_dashboard(&dashboard_file())?;
    // The dashboard's variables ($job, $instance) as Grafana resolves them: All.
    let variables = Variables::resolve(&dashboard, DATASOURCE_UID, prometheus.api()).await?;
    let range = Duration::from_secs_f64(end - start);
    // A panel about as wide as the figure, like Grafana would send it.
    let ctx = QueryContext::for_panel(range, SIZE.0, SCRAPE_INTERVAL);
    for figure in figures().into_iter().filter(|f| wanted(f.file)) {
        let mut lines = Vec::new();
        for series in &figure.series {
            let target = dashboard
                .panel(series.panel)
                .and_then(|p| p.targets.iter().find(|t| t.ref_id == series.ref_id))
                .with_context(|| format!("panel {:?} query {}", series.panel, series.ref_id))?;
            let promql = ctx.expand(&variables.expand(&target.expr));
            let points = query_range(&prometheus, &promql, start, end, ctx.interval).await?;
            if points.is_empty() {
                bail!("no data for `{promql}`");
            }
            let points = points
                .into_iter()
                .map(|(t, v)| (t - start, v * figure.scale))
                .collect();
            lines.push((series, points));
        }
        let path = out_dir.join(figure.file);
        draw(&path, &figure, &lines, end - start)?;
        eprintln!("wrote {}", path.display());
    }
    if wanted(DASHBOARD_FIGURE) {
        let path = out_dir.join(DASHBOARD_FIGURE);
        draw_dashboard(&path, &prometheus, &variables, &ctx, (start, end)).await?;
        eprintln!("wrote {}", path.display());
    }
    server.stop().await?;
    Ok(())
}

/// Every panel of the dashboard, each query asked as Grafana asks it for a panel
/// as wide as its place on the grid, drawn where the grid puts it.
async fn draw_dashboard(
    path: &Path,
    prometheus: &Prometheus,
    variables: &Variables,
    ctx: &QueryContext,
    (start, end): (f64, f64),
) -> anyhow::Result<()> {
    let dashboard = load_dashboard(&dashboard_file())?;
    // The typed dashboard leaves out each panel's fixed colour; read it from the JSON.
    let raw: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dashboard_file())?)?;
    let fixed_colors: std::collections::BTreeMap<u64, String> = raw["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|panel| {
            let color = &panel["fieldConfig"]["defaults"]["color"];
            (color["mode"] == "fixed").then(|| {
                (
                    panel["id"].as_u64().unwrap_or_default(),
                    color["fixedColor"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect();
    let mut panels = Vec::new();
    for panel in &dashboard.panels {
        let mut series = Vec::new();
        for target in &panel.targets {
            let promql = ctx.expand(&variables.expand(&target.expr));
            let result = prometheus
                .query_range(&promql, start, end, ctx.interval)
                .await
                .with_context(|| format!("{:?}: `{promql}`", panel.title))?;
            series.extend(dashboard_figure::series_of(
                &result,
                target.legend_format.as_deref(),
                start,
            ));
        }
        panels.push(dashboard_figure::PanelData {
            panel,
            fixed_color: fixed_colors.get(&u64::from(panel.id)).cloned(),
            series,
        });
    }
    dashboard_figure::draw(path, &dashboard, &panels, end - start)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Logins per second this machine's server can check: good logins back to back
/// from two clients per core for two seconds.
async fn capacity(http: &reqwest::Client, login_url: &str) -> anyhow::Result<f64> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let started = std::time::Instant::now();
    let until = started + Duration::from_secs(2);
    let clients: Vec<_> = (0..2 * cores)
        .map(|_| {
            let (http, url) = (http.clone(), login_url.to_owned());
            tokio::spawn(async move {
                let mut done = 0_u32;
                while std::time::Instant::now() < until {
                    Login::Good.send(&http, &url).await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut done = 0;
    for client in clients {
        done += client.await??;
    }
    Ok(f64::from(done) / started.elapsed().as_secs_f64())
}

/// One kind of request sent at an average rate, each on its own task, whether or
/// not the previous ones have been answered: arrivals do not slow down because
/// the server does, which is what makes a queue visible. The gaps between
/// arrivals are random (exponentially distributed, as for independent users):
/// arrivals in lockstep would never queue below full load, and real ones do.
fn steady(
    http: &reqwest::Client,
    login_url: &str,
    login: Login,
    per_second: f64,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let (http, url, stop) = (http.clone(), login_url.to_owned(), Arc::clone(stop));
    tokio::spawn(async move {
        let mut next = tokio::time::Instant::now();
        let mut sent = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            // Inverse transform sampling: -ln(U) / rate, with U in (0, 1].
            let uniform: f64 = 1.0 - rand::random::<f64>();
            next += Duration::from_secs_f64(-uniform.ln() / per_second);
            tokio::time::sleep_until(next).await;
            let (http, url) = (http.clone(), url.clone());
            sent.push(tokio::spawn(async move { login.send(&http, &url).await }));
        }
        for request in sent {
            request.await??;
        }
        Ok(())
    })
}

/// Three phases of [`PHASE`] each, sized from the measured capacity `c` (logins
/// per second): normal use (good logins at 15 % of `c`, wrong passwords at 3 %);
/// someone guessing passwords and sending garbage (wrong passwords at 60 % of `c`
/// on top, and cheap malformed bodies at half of `c`), which keeps the cores 75 %
/// busy, so logins queue behind one another; then overload, more clients
/// sending logins back to back than there are cores (four per core), so every
/// login waits for about four others.
async fn run_traffic(http: &reqwest::Client, login_url: &str, c: f64) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);

    // (phase, login, share of capacity per second)
    let steady_plan: [(usize, Login, f64); 5] = [
        (0, Login::Good, 0.15),
        (0, Login::WrongPassword, 0.03),
        (1, Login::Good, 0.15),
        (1, Login::WrongPassword, 0.60),
        (1, Login::Malformed, 0.5),
    ];
    for (phase, (label, _)) in PHASES.iter().enumerate() {
        eprintln!("phase {}: {label}", phase + 1);
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders: Vec<_> = steady_plan
            .iter()
            .filter(|p| p.0 == phase)
            .map(|(_, login, share)| steady(http, login_url, *login, share * c, &stop))
            .collect();
        if phase == 2 {
            for _ in 0..4 * cores {
                let (http, url, stop) = (http.clone(), login_url.to_owned(), Arc::clone(&stop));
                senders.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        Login::Good.send(&http, &url).await?;
                    }
                    anyhow::Ok(())
                }));
            }
        }
        tokio::time::sleep(PHASE).await;
        stop.store(true, Ordering::Relaxed);
        for sender in senders {
            sender.await??;
        }
    }
    Ok(())
}

/// `(unix time, value)` of every series of a range query, NaN dropped.
async fn query_range(
    prometheus: &Prometheus,
    promql: &str,
    start: f64,
    end: f64,
    step: Duration,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let result = prometheus.query_range(promql, start, end, step).await?;
    let mut points = Vec::new();
    for series in result.as_array().into_iter().flatten() {
        for sample in series["values"].as_array().into_iter().flatten() {
            let t = sample[0].as_f64();
            let v = sample[1].as_str().and_then(|v| v.parse::<f64>().ok());
            if let (Some(t), Some(v)) = (t, v)
                && v.is_finite()
            {
                points.push((t, v));
            }
        }
    }
    Ok(points)
}

fn draw(
    path: &Path,
    figure: &Figure,
    lines: &[(&Series, Vec<(f64, f64)>)],
    duration: f64,
) -> anyhow::Result<()> {
    let chart = Chart {
        title: figure.title,
        y_label: figure.y_label,
        phases: &PHASES,
        phase_secs: PHASE.as_secs_f64(),
        duration,
        headroom: 1.3,
        whole_y_labels: false,
    };
    let lines: Vec<Line<'_>> = lines
        .iter()
        .map(|(series, points)| (series.legend, series.color, points.as_slice()))
        .collect();
    chart::draw(path, &chart, &lines)
}
