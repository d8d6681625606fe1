//! The whole dashboard as one SVG figure: every panel of `login.json` where its
//! `gridPos` puts it on Grafana's 24-column grid, with the values a real
//! Prometheus returned for the panel's queries. Used by
//! the `render_figures` tool for the book's quick start, where Grafana itself
//! cannot run: stat panels show their last value with the panel's thresholds and
//! value mappings, time series their lines (stacked where the panel stacks), the
//! table its rows or "No data", each series in the colour the panel gives it.

use std::collections::BTreeMap;
use std::path::Path;

use login_metrics_testkit::dashboard::{Dashboard, Panel};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// The figure's width; the height follows from the grid.
const WIDTH: u32 = 1200;
/// One grid row of Grafana, in pixels of the figure (Grafana: 30 px and a margin).
const ROW: u32 = 26;
/// The dashboard's title bar.
const HEADER: u32 = 36;
const GAP: u32 = 4;

/// One line of a panel: its legend and `(seconds since the start, value)`.
pub struct Series {
    /// The legend, from the target's `legendFormat`.
    pub legend: String,
    /// `(seconds since the start of the run, value)`.
    pub points: Vec<(f64, f64)>,
}

/// The series each query of a panel returned, in the panel's query order.
pub struct PanelData<'a> {
    /// The panel, as `login.json` defines it.
    pub panel: &'a Panel,
    /// The panel's fixed colour (`fieldConfig.defaults.color.fixedColor`), if any.
    pub fixed_color: Option<String>,
    /// What its queries returned.
    pub series: Vec<Series>,
}

/// The series of a range query's `result`, named by the target's legend template
/// (`{{status_code}}` becomes each series' label value), times relative to `start`.
#[must_use]
pub fn series_of(result: &Value, legend_format: Option<&str>, start: f64) -> Vec<Series> {
    let mut all = Vec::new();
    for series in result.as_array().into_iter().flatten() {
        let labels = &series["metric"];
        let mut legend = legend_format.unwrap_or_default().to_owned();
        while let Some(open) = legend.find("{{") {
            let Some(close) = legend[open..].find("}}") else {
                break;
            };
            let name = legend[open + 2..open + close].trim().to_owned();
            let value = labels[&name].as_str().unwrap_or_default().to_owned();
            legend.replace_range(open..open + close + 2, &value);
        }
        let points = series["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|sample| {
                let t = sample[0].as_f64()?;
                let v = sample[1].as_str()?.parse::<f64>().ok()?;
                v.is_finite().then_some((t - start, v))
            })
            .collect();
        all.push(Series { legend, points });
    }
    all
}

/// Grafana's named colours, as its default theme draws them.
fn named_color(name: &str) -> RGBColor {
    match name {
        "green" => RGBColor(0x73, 0xbf, 0x69),
        "yellow" => RGBColor(0xfa, 0xde, 0x2a),
        "orange" => RGBColor(0xff, 0x98, 0x30),
        "red" => RGBColor(0xf2, 0x49, 0x5c),
        "purple" => RGBColor(0xb8, 0x77, 0xd9),
        "blue" => RGBColor(0x57, 0x94, 0xf2),
        _ => RGBColor(0x46, 0x46, 0x46),
    }
}

/// Grafana's classic palette, for series without a colour of their own.
const PALETTE: [&str; 6] = ["green", "yellow", "blue", "orange", "red", "purple"];

/// The colour of series `index`, named `legend`, in `data`'s panel: an override
/// by name, else the panel's fixed colour, else the palette.
fn series_color(data: &PanelData<'_>, legend: &str, index: usize) -> RGBColor {
    for rule in &data.panel.field_config.overrides {
        if rule["matcher"]["id"] == "byName" && rule["matcher"]["options"] == legend {
            for property in rule["properties"].as_array().into_iter().flatten() {
                if property["id"] == "color"
                    && let Some(fixed) = property["value"]["fixedColor"].as_str()
                {
                    return named_color(fixed);
                }
            }
        }
    }
    match &data.fixed_color {
        Some(fixed) => named_color(fixed),
        None => named_color(PALETTE[index % PALETTE.len()]),
    }
}

/// `value` in the panel's unit, as Grafana would print it.
fn format_value(panel: &Panel, value: f64) -> String {
    let defaults = &panel.field_config.defaults;
    for mapping in &defaults.mappings {
        #[allow(clippy::cast_possible_truncation)] // mappings are for whole values
        let key = format!("{}", value.round() as i64);
        if let Some(text) = mapping["options"][&key]["text"].as_str() {
            return text.to_owned();
        }
    }
    match defaults.unit.as_deref() {
        Some("percentunit") => format!("{:.1}%", value * 100.0),
        Some("reqps") => format!("{value:.1} req/s"),
        Some("s") if value < 1.0 => format!("{:.0} ms", value * 1000.0),
        Some("s") => format!("{value:.2} s"),
        _ => format!("{value:.0}"),
    }
}

/// The threshold colour of `value` in `panel`.
fn threshold_color(panel: &Panel, value: f64) -> RGBColor {
    let Some(thresholds) = &panel.field_config.defaults.thresholds else {
        return named_color("green");
    };
    let mut color = "green";
    for step in &thresholds.steps {
        if step.value.is_none_or(|bound| value >= bound) {
            color = &step.color;
        }
    }
    named_color(color)
}

/// Draws the dashboard at `path`: `data` holds every panel's series, over a run of
/// `duration` seconds.
pub fn draw(
    path: &Path,
    dashboard: &Dashboard,
    data: &[PanelData<'_>],
    duration: f64,
) -> anyhow::Result<()> {
    let rows = dashboard
        .panels
        .iter()
        .map(|p| p.grid_pos.y + p.grid_pos.h)
        .max()
        .unwrap_or(1);
    let height = HEADER + rows * ROW;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&RGBColor(0xf4, 0xf5, 0xf5))?;
    root.draw(&Text::new(
        format!(
            "{}  (the last {:.0} seconds of a real run)",
            dashboard.title, duration
        ),
        (10, 10),
        ("sans-serif", 18).into_font().color(&BLACK),
    ))?;
    let column = f64::from(WIDTH) / 24.0;
    for panel_data in data {
        let grid = &panel_data.panel.grid_pos;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // pixels
        let (x, w) = (
            (f64::from(grid.x) * column) as u32,
            (f64::from(grid.w) * column) as u32,
        );
        let (y, h) = (HEADER + grid.y * ROW, grid.h * ROW);
        let area = root.clone().shrink(
            (x + GAP / 2, y + GAP / 2),
            (w.saturating_sub(GAP), h.saturating_sub(GAP)),
        );
        draw_panel(&area, panel_data, duration)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    data: &PanelData<'_>,
    duration: f64,
) -> anyhow::Result<()> {
    let panel = data.panel;
    area.fill(&WHITE)?;
    let (w, h) = area.dim_in_pixel();
    #[allow(clippy::cast_possible_wrap)] // pixels
    let (w, h) = (w as i32, h as i32);
    area.draw(&Rectangle::new(
        [(0, 0), (w - 1, h - 1)],
        RGBColor(0xdc, 0xdc, 0xdc).stroke_width(1),
    ))?;
    area.draw(&Text::new(
        panel.title.clone(),
        (8, 6),
        ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(0x20, 0x20, 0x20)),
    ))?;
    let body = area.margin(24, 4, 6, 6);
    match panel.kind.as_str() {
        "stat" => draw_stat(&body, data),
        "table" => draw_table(&body, data),
        _ => draw_time_series(&body, data, duration),
    }
}

fn draw_stat(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    data: &PanelData<'_>,
) -> anyhow::Result<()> {
    let panel = data.panel;
    let values: Vec<(&str, f64)> = data
        .series
        .iter()
        .filter_map(|s| s.points.last().map(|p| (s.legend.as_str(), p.1)))
        .collect();
    if values.is_empty() {
        return no_data(area);
    }
    let parts = area.split_evenly((1, values.len()));
    for (part, (legend, value)) in parts.iter().zip(&values) {
        let (w, h) = part.dim_in_pixel();
        #[allow(clippy::cast_possible_wrap)] // pixels
        let (w, h) = (w as i32, h as i32);
        let color = threshold_color(panel, *value);
        let text = format_value(panel, *value);
        let background = panel.options["colorMode"] == "background";
        if background {
            part.draw(&Rectangle::new([(0, 0), (w, h)], color.filled()))?;
        }
        let ink = if background { WHITE } else { color };
        let style = ("sans-serif", 30)
            .into_font()
            .color(&ink)
            .pos(Pos::new(HPos::Center, VPos::Center));
        part.draw(&Text::new(text, (w / 2, h / 2), style))?;
        if values.len() > 1 || panel.options["textMode"] == "value_and_name" {
            let style = ("sans-serif", 11)
                .into_font()
                .color(if background { &WHITE } else { &BLACK })
                .pos(Pos::new(HPos::Center, VPos::Top));
            part.draw(&Text::new((*legend).to_owned(), (w / 2, 2), style))?;
        }
    }
    Ok(())
}

fn draw_table(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    data: &PanelData<'_>,
) -> anyhow::Result<()> {
    let rows: Vec<String> = data
        .series
        .iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| s.legend.clone())
        .collect();
    if rows.is_empty() {
        return no_data(area);
    }
    for (i, row) in rows.iter().enumerate() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // a few rows
        let y = 4 + 16 * i as i32;
        area.draw(&Text::new(
            row.clone(),
            (6, y),
            ("sans-serif", 12).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

fn no_data(area: &DrawingArea<SVGBackend<'_>, Shift>) -> anyhow::Result<()> {
    let (w, h) = area.dim_in_pixel();
    #[allow(clippy::cast_possible_wrap)] // pixels
    let center = (w as i32 / 2, h as i32 / 2);
    let style = ("sans-serif", 14)
        .into_font()
        .color(&RGBColor(0x80, 0x80, 0x80))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new("No data", center, style))?;
    Ok(())
}

/// A series as drawn: legend, colour, points (stacked ones already summed).
type Drawn = (String, RGBColor, Vec<(f64, f64)>);

fn draw_time_series(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    data: &PanelData<'_>,
    duration: f64,
) -> anyhow::Result<()> {
    let panel = data.panel;
    let stacked = panel.field_config.defaults.custom["stacking"]["mode"] == "normal";
    // Stacked series are drawn as the running sum of the ones before them.
    let mut lines: Vec<Drawn> = Vec::new();
    let mut below: BTreeMap<u64, f64> = BTreeMap::new();
    for (index, series) in data.series.iter().enumerate() {
        let color = series_color(data, &series.legend, index);
        let points = series
            .points
            .iter()
            .map(|&(t, v)| {
                if stacked {
                    let key = t.to_bits();
                    let sum = below.entry(key).or_insert(0.0);
                    *sum += v;
                    (t, *sum)
                } else {
                    (t, v)
                }
            })
            .collect();
        lines.push((series.legend.clone(), color, points));
    }
    let y_max = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let legend_rows = lines.len().div_ceil(4);
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // a few rows
    let legend_height = 14 * legend_rows as i32 + 4;
    let (_, h) = area.dim_in_pixel();
    #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)] // pixels
    let (plot_area, legend_area) = area.split_vertically((h as i32 - legend_height) as u32);
    let unit = panel.field_config.defaults.unit.clone().unwrap_or_default();
    let mut chart = ChartBuilder::on(&plot_area)
        .x_label_area_size(16)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..duration, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(RGBColor(0xec, 0xec, 0xec))
        .x_labels(6)
        .y_labels(4)
        .x_label_formatter(&|x| format!("{x:.0}s"))
        .y_label_formatter(&|y| match unit.as_str() {
            "s" if y_max < 1.0 => format!("{:.0} ms", y * 1000.0),
            "s" => format!("{y:.1} s"),
            "reqps" if y_max < 10.0 => format!("{y:.1} req/s"),
            "reqps" => format!("{y:.0} req/s"),
            _ if y_max < 10.0 => format!("{y:.1}"),
            _ => format!("{y:.0}"),
        })
        .label_style(("sans-serif", 10))
        .draw()?;
    // Stacked bands are filled from the top one down, so that each covers the next.
    if stacked {
        for (_, color, points) in lines.iter().rev() {
            chart.draw_series(AreaSeries::new(
                points.iter().copied(),
                0.0,
                color.mix(0.6).filled(),
            ))?;
        }
    }
    // A stacked band of zeros would draw its line over the band below it.
    let visible = |points: &[(f64, f64)], index: usize| {
        !stacked || data.series[index].points.iter().any(|p| p.1 != 0.0) || points.is_empty()
    };
    for (index, (_, color, points)) in lines.iter().enumerate() {
        if !visible(points, index) {
            continue;
        }
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?;
    }
    let (legend_width, _) = legend_area.dim_in_pixel();
    #[allow(clippy::cast_possible_wrap)] // pixels
    let slot = legend_width as i32 / 4;
    for (i, (legend, color, _)) in lines.iter().enumerate() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // a few series
        let (col, row) = ((i % 4) as i32, (i / 4) as i32);
        let (x, y) = (6 + col * slot, 2 + row * 14);
        legend_area.draw(&Rectangle::new(
            [(x, y + 4), (x + 12, y + 7)],
            color.filled(),
        ))?;
        legend_area.draw(&Text::new(
            legend.clone(),
            (x + 16, y),
            ("sans-serif", 11).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}
