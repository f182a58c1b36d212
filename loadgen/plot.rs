//! Percentile plots (SVG, plotters): value against percentile on the usual HdrHistogram
//! log axis, 1/(1-percentile), from 0 % to 99.999 %.

use std::io;
use std::path::Path;

use plotters::prelude::*;

use crate::report::Metric;

/// Writes `<metric>.svg`: the metric's percentile curve.
pub fn percentile_svg(path: &Path, m: &Metric) -> io::Result<()> {
    let h = &m.total;
    // (log10(1/(1-q)), value) points; q = 1 is cut at 99.999 %.
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to().min(0.99999);
            ((1.0 / (1.0 - q)).log10(), v.value_iterated_to() as f64)
        })
        .collect();
    pts.dedup_by(|a, b| a.0 == b.0);
    let ymax = (h.max() as f64 * 1.1).max(1.0);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| io::Error::other(format!("plot: {e:?}"));
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} ({}), n = {}", m.name, m.unit, h.len()),
            ("sans-serif", 22),
        )
        .margin(15)
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
    chart
        .draw_series(LineSeries::new(pts, &BLUE))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
