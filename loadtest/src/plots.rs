//! SVG plots of a run (`--plots DIR`, feature `plots`): round trips per second with open
//! connections, and p50/p99 latency per second. SVG needs no font files: the text is left to
//! the viewer, so the plots build and render anywhere.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;

/// A plot could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlotError(String);

fn err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError(e.to_string())
}

/// Writes `throughput.svg` and `latency.svg` into `dir`.
pub fn write(report: &Report, dir: &Path) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir).map_err(err)?;
    let points = &report.timeline;
    if points.is_empty() {
        return Err(PlotError("the run has no timeline to plot".into()));
    }
    let t_max = points.last().map_or(1.0, |p| p.t).max(1.0);

    let path = dir.join("throughput.svg");
    let root = SVGBackend::new(&path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let rt_max = points
        .iter()
        .map(|p| p.round_trips)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let open_max = points.iter().map(|p| p.open).max().unwrap_or(1).max(1) as f64;
    let y_max = rt_max.max(open_max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: round trips/s and open connections", report.scenario),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.t, p.round_trips as f64)),
            &BLUE,
        ))
        .map_err(err)?
        .label("round trips/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.t, p.open as f64)),
            &GREEN,
        ))
        .map_err(err)?
        .label("open connections")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;

    let path = dir.join("latency.svg");
    let root = SVGBackend::new(&path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let l_max = points.iter().map(|p| p.p99_ms).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: round-trip latency per second (ms)", report.scenario),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..l_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .draw()
        .map_err(err)?;
    for (label, color, value) in [
        (
            "p50",
            BLUE,
            (|p: &crate::report::Point| p.p50_ms) as fn(&crate::report::Point) -> f64,
        ),
        ("p99", RED, |p: &crate::report::Point| p.p99_ms),
    ] {
        chart
            .draw_series(LineSeries::new(
                points
                    .iter()
                    .filter(|p| p.round_trips > 0)
                    .map(|p| (p.t, value(p))),
                &color,
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Point;

    #[test]
    fn writes_both_svgs() {
        let report = Report {
            scenario: "t".into(),
            timeline: (0..10)
                .map(|i| Point {
                    t: f64::from(i),
                    open: 100,
                    round_trips: 1000 + u64::from(i as u32),
                    p50_ms: 0.5,
                    p99_ms: 2.0,
                })
                .collect(),
            ..Report::default()
        };
        let dir = std::env::temp_dir().join(format!("loadtest-plots-{}", std::process::id()));
        assert!(write(&report, &dir).is_ok());
        let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap_or_default();
        assert!(svg.contains("<svg") && svg.contains("p99"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
