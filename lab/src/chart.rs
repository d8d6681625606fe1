//! One line chart of the book's figures: lines over time, on background bands
//! that mark the traffic phases. Shared by `render_figures` and
//! `render_scale_figures`.

use std::path::Path;

use plotters::prelude::*;

/// The size of every figure, in pixels.
pub const SIZE: (u32, u32) = (760, 320);

/// What one chart shows besides its lines.
pub struct Chart<'a> {
    /// Printed above the chart.
    pub title: &'a str,
    /// The y axis' description.
    pub y_label: &'a str,
    /// The traffic phases in order, each `phase_secs` long: (label, background).
    pub phases: &'static [(&'static str, RGBColor)],
    /// How long each phase lasted, in seconds.
    pub phase_secs: f64,
    /// Seconds on the x axis.
    pub duration: f64,
    /// The top of the y axis over the largest value (room for the legend).
    pub headroom: f64,
    /// Whole numbers on the y axis even when it stays under 10.
    pub whole_y_labels: bool,
}

/// One line: (legend, color, points as (seconds, value)).
pub type Line<'a> = (&'a str, RGBColor, &'a [(f64, f64)]);

/// Draws `lines` on `chart` as an SVG file at `path`.
pub fn draw(path: &Path, chart: &Chart<'_>, lines: &[Line<'_>]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let y_max = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        * chart.headroom;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };

    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..chart.duration, 0.0..y_max)?;

    // The phases as background bands, labelled at the top.
    for (i, (label, color)) in chart.phases.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)] // a handful of phases
        let from = i as f64 * chart.phase_secs;
        let to = (from + chart.phase_secs).min(chart.duration);
        plot.draw_series(std::iter::once(Rectangle::new(
            [(from, 0.0), (to, y_max)],
            color.filled(),
        )))?;
        plot.draw_series(std::iter::once(Text::new(
            *label,
            (from + 0.3, y_max * 0.97),
            ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
        )))?;
    }

    let whole = chart.whole_y_labels || y_max >= 10.0;
    plot.configure_mesh()
        .x_desc("seconds since the traffic started")
        .y_desc(chart.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if whole {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    for &(legend, color, points) in lines {
        plot.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(legend)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
