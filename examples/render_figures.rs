//! Renders the book's panel figures (`book/src/figures/*.svg`) from real data.
//!
//! It starts the login server in-process and a real Prometheus (the test harness:
//! Docker, or a `prometheus` binary with `LOGIN_METRICS_PROMETHEUS=native`), sends
//! about half a minute of traffic in three phases — normal use, password guessing,
//! overload — then asks Prometheus for the dashboard's queries over that time, the
//! way Grafana would, and draws them.
//!
//! ```sh
//! LOGIN_METRICS_PROMETHEUS=native cargo run --example render_figures
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use login_metrics_testkit::dashboard::{QueryContext, dashboard_file, load_dashboard};
use login_metrics_testkit::harness::prometheus::Prometheus;
use login_metrics_testkit::testing::{Login, TestServer};
use plotters::prelude::*;

/// The harness' Prometheus scrapes every second; Grafana would be told the same.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const PHASE: Duration = Duration::from_secs(10);
const SIZE: (u32, u32) = (760, 320);

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
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/figures");
    std::fs::create_dir_all(&out_dir)?;

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

    let start = unix_now();
    run_traffic(&server.login_url()).await?;
    // Let the last scrapes land.
    tokio::time::sleep(3 * SCRAPE_INTERVAL).await;
    let end = unix_now();

    let dashboard = load_dashboard(&dashboard_file())?;
    let range = Duration::from_secs_f64(end - start);
    // A panel about as wide as the figure, like Grafana would send it.
    let ctx = QueryContext::for_panel(range, SIZE.0, SCRAPE_INTERVAL);
    for figure in figures() {
        let mut lines = Vec::new();
        for series in &figure.series {
            let target = dashboard
                .panel(series.panel)
                .and_then(|p| p.targets.iter().find(|t| t.ref_id == series.ref_id))
                .with_context(|| format!("panel {:?} query {}", series.panel, series.ref_id))?;
            let promql = ctx.expand(&target.expr);
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
    server.stop().await?;
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Three phases of [`PHASE`] each: a steady trickle of logins with the odd typo;
/// then someone guessing passwords and sending garbage; then many clients at once,
/// more than the CPU can hash, so logins queue and latency climbs.
async fn run_traffic(login_url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (good, wrong, malformed) = (
        Login::Good.body(),
        Login::WrongPassword.body(),
        Login::Malformed.body(),
    );

    // (phase, body, pause between requests, concurrent clients)
    let plan: [(usize, &'static str, Duration, usize); 6] = [
        (0, good, Duration::from_millis(100), 1),
        (0, wrong, Duration::from_millis(700), 1),
        (1, good, Duration::from_millis(100), 1),
        (1, wrong, Duration::from_millis(25), 2),
        (1, malformed, Duration::from_millis(150), 1),
        (2, good, Duration::ZERO, 8),
    ];
    for (phase, (label, _)) in PHASES.iter().enumerate() {
        eprintln!("phase {}: {label}", phase + 1);
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for (_, body, pause, count) in plan.iter().filter(|p| p.0 == phase) {
            for _ in 0..*count {
                let (http, url, stop) = (http.clone(), login_url.to_owned(), Arc::clone(&stop));
                let (body, pause) = (*body, *pause);
                clients.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        http.post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await?;
                        tokio::time::sleep(pause).await;
                    }
                    anyhow::Ok(())
                }));
            }
        }
        tokio::time::sleep(PHASE).await;
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await??;
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
    path: &PathBuf,
    figure: &Figure,
    lines: &[(&Series, Vec<(f64, f64)>)],
    duration: f64,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let y_max = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        * 1.3;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };

    let mut chart = ChartBuilder::on(&root)
        .caption(figure.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..duration, 0.0..y_max)?;

    // The phases as background bands, labelled at the top.
    let phase_secs = PHASE.as_secs_f64();
    for (i, (label, color)) in PHASES.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)] // i < 3
        let from = i as f64 * phase_secs;
        let to = (from + phase_secs).min(duration);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(from, 0.0), (to, y_max)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            *label,
            (from + 0.3, y_max * 0.97),
            ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
        )))?;
    }

    chart
        .configure_mesh()
        .x_desc("seconds since the traffic started")
        .y_desc(figure.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if y_max >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    for (series, points) in lines {
        let color = series.color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(series.legend)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
