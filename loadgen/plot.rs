//! Percentile plots (SVG, plotters): value against percentile on the usual HdrHistogram
//! log axis, 1/(1-percentile), from 0 % to 99.999 %. Each plot names its run (scenario, date,
//! server address), marks p50, p99 and p99.9, and shades the samples a metric counts as 0 with
//! the reason (`active_update`: the update arrived before the client had read its DHCPACK).

use std::io;
use std::path::Path;

use plotters::prelude::*;

use crate::metric::Metric;

/// The run a plot belongs to.
#[derive(Debug, Clone, Default)]
pub struct PlotContext {
    /// The scenario, e.g. `mixed`.
    pub scenario: String,
    /// When the report was written (UTC), e.g. `2026-01-01 12:00 UTC`.
    pub date: String,
    /// The server's addresses as the run used them.
    pub server: String,
    /// Samples recorded as 0 and why: drawn as a shaded band with this text.
    pub zeros: Option<(u64, String)>,
}

/// The x coordinate of quantile `q` (cut at 99.999 %).
fn x_of(q: f64) -> f64 {
    (1.0 / (1.0 - q.min(0.99999))).log10()
}

/// The marked percentiles: (label, quantile).
const MARKS: [(&str, f64); 3] = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)];

/// Writes `<metric>.svg`: the metric's percentile curve.
pub fn percentile_svg(path: &Path, m: &Metric, ctx: &PlotContext) -> io::Result<()> {
    let h = &m.total;
    // (log10(1/(1-q)), value) points; q = 1 is cut at 99.999 %.
    let mut pts: Vec<(f64, f64)> = crate::metric::percentile_rows(h, 5)
        .into_iter()
        .map(|(v, level, _)| (x_of(level / 100.0), v as f64))
        .collect();
    pts.dedup_by(|a, b| a.0 == b.0);
    let ymax = (h.max() as f64 * 1.15).max(1.0);
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| io::Error::other(format!("plot: {e:?}"));
    root.fill(&WHITE).map_err(err)?;
    let area = root
        .titled(
            &format!("{} ({}), n = {}", m.name, m.unit, h.len()),
            ("sans-serif", 22),
        )
        .map_err(err)?;
    let zeros = ctx
        .zeros
        .as_ref()
        .filter(|(z, _)| *z > 0 && !h.is_empty())
        .map(|(z, why)| (*z, why, *z as f64 / h.len() as f64));
    let (head, body) = area.split_vertically(if zeros.is_some() { 46 } else { 26 });
    let orange = RGBColor(170, 95, 0);
    if let Some((z, why, share)) = zeros {
        head.draw(&Text::new(
            format!(
                "the lowest {z} samples ({:.1}%, shaded) are recorded as 0: {why}",
                100.0 * share
            ),
            (15, 24),
            ("sans-serif", 14).into_font().color(&orange),
        ))
        .map_err(err)?;
    }
    head.draw(&Text::new(
        format!(
            "scenario {} | {} | server {}",
            ctx.scenario, ctx.date, ctx.server
        ),
        (15, 4),
        ("sans-serif", 15).into_font().color(&BLACK.mix(0.75)),
    ))
    .map_err(err)?;
    let mut chart = ChartBuilder::on(&body)
        .margin(15)
        // Room right of the last x tick, so its label ("99.999%") is not cut.
        .margin_right(45)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..5f64, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(m.unit)
        .x_labels(6)
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 10f64.powf(-*x));
            format!("{q:.3}%")
        })
        .draw()
        .map_err(err)?;
    if let Some((_, _, share)) = zeros {
        // The samples counted 0, on the percentile axis: a band from 0 % to their share, and
        // the curve's start drawn at 0 along it.
        let x = x_of(share).min(5.0);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (x, ymax)],
                RGBColor(255, 160, 0).mix(0.25).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (x, 0.0)],
                orange.stroke_width(4),
            ))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(pts, &BLUE))
        .map_err(err)?;
    // p50, p99, p99.9: a dashed vertical line each, the point and its value.
    let red = RGBColor(200, 30, 30);
    for (n, (label, q)) in MARKS.iter().enumerate() {
        if h.is_empty() {
            break;
        }
        let (x, v) = (x_of(*q), h.value_at_quantile(*q) as f64);
        chart
            .draw_series(DashedLineSeries::new(
                [(x, 0.0), (x, ymax)],
                6,
                4,
                red.mix(0.5).into(),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Circle::new((x, v), 4, red.filled())))
            .map_err(err)?;
        // The label where the curve is not (the curve rises to the right: below a high
        // mark, above a low one), stacked so that close marks do not overlap.
        let y = if v > ymax / 2.0 {
            ymax * (0.05 + 0.06 * n as f64)
        } else {
            ymax * (0.90 - 0.06 * n as f64)
        };
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{label} = {v} {}", m.unit),
                (x + 0.04, y),
                ("sans-serif", 14).into_font().color(&red),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_plot_names_its_run_marks_percentiles_and_explains_zeros() {
        let mut m = Metric::new("active_update", "us");
        for i in 0..1000u64 {
            // The first 30 came before their ACK (recorded as 0, kept as 1 by the histogram).
            m.record(Duration::from_millis(i), if i < 30 { 0 } else { 100 + i });
        }
        m.finish();
        let dir = std::env::temp_dir().join(format!("lg-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("active_update.svg");
        let ctx = PlotContext {
            scenario: "active".into(),
            date: "2026-01-01 12:00 UTC".into(),
            server: "DHCP4o6 [::1]:547".into(),
            zeros: Some((30, "the update came first".into())),
        };
        percentile_svg(&path, &m, &ctx).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        for want in [
            "active_update (us), n = 1000",
            "scenario active | 2026-01-01 12:00 UTC | server DHCP4o6 [::1]:547",
            "p50 = 599 us",
            "p99 = 1089 us",
            "p99.9 = 1098 us",
            "the lowest 30 samples (3.0%, shaded) are recorded as 0: the update came first",
            "99.999%",
        ] {
            assert!(svg.contains(want), "{want:?} missing");
        }
    }
}
