//! The training curve as SVG (plotters, SVG backend only).

use super::History;
use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::invalid("History::plot_svg", e.to_string())
}

impl History {
    /// Draws test accuracy (left axis) and mean train loss (right axis, scaled to the first
    /// epoch's loss) per epoch into an 800x480 SVG at `path`.
    pub fn plot_svg(&self, path: &Path) -> Result<()> {
        let n = self.epochs.len().max(1) as f64;
        let max_loss = self
            .epochs
            .iter()
            .map(|e| e.train_loss)
            .fold(1e-9, f64::max);
        let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("training curve", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .right_y_label_area_size(48)
            .build_cartesian_2d(0.0..n, 0.0..1.0)
            .map_err(plot_error)?
            .set_secondary_coord(0.0..n, 0.0..max_loss * 1.05);
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("test accuracy")
            .draw()
            .map_err(plot_error)?;
        chart
            .configure_secondary_axes()
            .y_desc("train loss")
            .draw()
            .map_err(plot_error)?;
        let acc: Vec<(f64, f64)> = self
            .epochs
            .iter()
            .map(|e| (e.epoch as f64, e.test_accuracy))
            .collect();
        let loss: Vec<(f64, f64)> = self
            .epochs
            .iter()
            .map(|e| (e.epoch as f64, e.train_loss))
            .collect();
        chart
            .draw_series(LineSeries::new(acc, BLUE.stroke_width(2)))
            .map_err(plot_error)?
            .label("test accuracy")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        chart
            .draw_secondary_series(LineSeries::new(loss, RED.stroke_width(2)))
            .map_err(plot_error)?
            .label("train loss")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)
    }
}
