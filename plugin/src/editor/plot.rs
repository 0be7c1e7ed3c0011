//! A small plot: a rectangle with axis mappings (log or linear x, linear y), a labelled grid,
//! and polylines. The mappings are plain functions so they are tested without a window.

use super::colours;
use egui::{self, Align2, FontId, Pos2, Rect, Stroke};

/// How x values map to the plot's width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XScale {
    /// Linear from `min` to `max`.
    Linear {
        /// Left edge.
        min: f32,
        /// Right edge.
        max: f32,
    },
    /// Logarithmic from `min` to `max` (both > 0), e.g. frequency.
    Log {
        /// Left edge.
        min: f32,
        /// Right edge.
        max: f32,
    },
}

/// A plot area: screen rectangle plus value ranges.
#[derive(Debug, Clone, Copy)]
pub struct Plot {
    /// Where it is drawn.
    pub rect: Rect,
    /// The horizontal axis.
    pub x: XScale,
    /// Value at the bottom edge.
    pub y_min: f32,
    /// Value at the top edge.
    pub y_max: f32,
}

impl Plot {
    /// Horizontal screen position of `x` (clamped to the plot).
    pub fn x_to_screen(&self, x: f32) -> f32 {
        let t = match self.x {
            XScale::Linear { min, max } => (x - min) / (max - min),
            XScale::Log { min, max } => (x.max(min).ln() - min.ln()) / (max.ln() - min.ln()),
        };
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.rect.left() + t * self.rect.width()
    }

    /// Vertical screen position of `y` (clamped to the plot; NaN at the bottom).
    pub fn y_to_screen(&self, y: f32) -> f32 {
        let t = (y - self.y_min) / (self.y_max - self.y_min);
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.rect.bottom() - t * self.rect.height()
    }

    /// Screen point of `(x, y)`.
    pub fn point(&self, x: f32, y: f32) -> Pos2 {
        Pos2::new(self.x_to_screen(x), self.y_to_screen(y))
    }

    /// Background, frame, horizontal lines at `y_ticks` and vertical lines at `x_ticks`, with
    /// labels made by `x_label` / `y_label`.
    pub fn grid(
        &self,
        painter: &egui::Painter,
        x_ticks: &[f32],
        y_ticks: &[f32],
        x_label: impl Fn(f32) -> String,
        y_label: impl Fn(f32) -> String,
    ) {
        painter.rect_filled(self.rect, 2.0, egui::Color32::from_gray(24));
        let font = FontId::proportional(10.0);
        let grid = Stroke::new(1.0, colours::GRID);
        for &y in y_ticks {
            let sy = self.y_to_screen(y);
            painter.line_segment(
                [
                    Pos2::new(self.rect.left(), sy),
                    Pos2::new(self.rect.right(), sy),
                ],
                grid,
            );
            painter.text(
                Pos2::new(self.rect.left() - 4.0, sy),
                Align2::RIGHT_CENTER,
                y_label(y),
                font.clone(),
                colours::LABEL,
            );
        }
        for &x in x_ticks {
            let sx = self.x_to_screen(x);
            painter.line_segment(
                [
                    Pos2::new(sx, self.rect.top()),
                    Pos2::new(sx, self.rect.bottom()),
                ],
                grid,
            );
            painter.text(
                Pos2::new(sx, self.rect.bottom() + 3.0),
                Align2::CENTER_TOP,
                x_label(x),
                font.clone(),
                colours::LABEL,
            );
        }
        painter.rect_stroke(
            self.rect,
            2.0,
            Stroke::new(1.0, colours::GRID),
            egui::StrokeKind::Inside,
        );
    }

    /// A polyline through `(x, y)` points.
    pub fn line(
        &self,
        painter: &egui::Painter,
        points: impl Iterator<Item = (f32, f32)>,
        stroke: Stroke,
    ) {
        let points: Vec<Pos2> = points.map(|(x, y)| self.point(x, y)).collect();
        if points.len() >= 2 {
            painter.add(egui::Shape::line(points, stroke));
        }
    }

    /// A horizontal line at `y` across the plot.
    pub fn hline(&self, painter: &egui::Painter, y: f32, stroke: Stroke) {
        let sy = self.y_to_screen(y);
        painter.line_segment(
            [
                Pos2::new(self.rect.left(), sy),
                Pos2::new(self.rect.right(), sy),
            ],
            stroke,
        );
    }
}

/// A legend entry: a colour swatch and a name.
pub fn legend(ui: &mut egui::Ui, entries: &[(egui::Color32, &str)]) {
    ui.horizontal(|ui| {
        for &(colour, name) in entries {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(14.0, 4.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 1.0, colour);
            ui.label(egui::RichText::new(name).small().color(colours::LABEL));
            ui.add_space(8.0);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(x: XScale) -> Plot {
        Plot {
            rect: Rect::from_min_max(Pos2::new(10.0, 20.0), Pos2::new(110.0, 220.0)),
            x,
            y_min: -20.0,
            y_max: 100.0,
        }
    }

    #[test]
    fn log_axis_puts_decades_at_equal_distances() {
        let p = plot(XScale::Log {
            min: 20.0,
            max: 20_000.0,
        });
        assert!((p.x_to_screen(20.0) - 10.0).abs() < 1e-3);
        assert!((p.x_to_screen(20_000.0) - 110.0).abs() < 1e-3);
        let d1 = p.x_to_screen(200.0) - p.x_to_screen(20.0);
        let d2 = p.x_to_screen(2_000.0) - p.x_to_screen(200.0);
        assert!((d1 - d2).abs() < 1e-3 && (d1 - 100.0 / 3.0).abs() < 1e-3);
        // Out of range and non-finite values stay on the plot.
        assert_eq!(p.x_to_screen(1.0), 10.0);
        assert_eq!(p.x_to_screen(f32::NAN), 10.0);
    }

    #[test]
    fn y_grows_upwards_and_clamps() {
        let p = plot(XScale::Linear { min: 0.0, max: 1.0 });
        assert_eq!(p.y_to_screen(-20.0), 220.0);
        assert_eq!(p.y_to_screen(100.0), 20.0);
        assert_eq!(p.y_to_screen(40.0), 120.0);
        assert_eq!(p.y_to_screen(1e9), 20.0);
        assert_eq!(p.y_to_screen(f32::NEG_INFINITY), 220.0);
        assert_eq!(p.point(0.5, 40.0), Pos2::new(60.0, 120.0));
    }
}
