//! PNG plots people look at: the spectrogram of a recording, its masking threshold, and an
//! adversarial perturbation against that threshold.

use crate::audio::{refuse_overwrite, temp_path_beside};
use crate::masking::MaskingThreshold;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// Lowest and highest level drawn (dB, the masking model's normalised scale).
const DB_RANGE: (f32, f32) = (-20.0, 100.0);
/// Pixel height of one panel.
const PANEL_HEIGHT: u32 = 300;
/// Pixel width of the picture.
const WIDTH: u32 = 1200;
/// Frequency rows drawn per panel (bins are max-pooled into these).
const ROWS: usize = 256;

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("drawing {}: {e}", path.display()))
}

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The bundled DejaVu Sans is a valid TrueType font; registering it cannot fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One heat-map panel: a title and `frames × bins` values (frame-major) on a colour scale.
struct Panel<'a> {
    title: String,
    values: &'a [f32],
    /// Values at or under this are drawn as the background.
    range: (f32, f32),
    palette: Palette,
}

#[derive(Clone, Copy)]
enum Palette {
    /// Levels in dB (viridis).
    Level,
    /// How far over the threshold (white under it, then yellow to red).
    Excess,
}

fn colour(palette: Palette, v: f32, (lo, hi): (f32, f32)) -> RGBColor {
    let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    match palette {
        Palette::Level => ViridisRGB::get_color(t as f64),
        Palette::Excess => {
            if v <= lo {
                RGBColor(245, 245, 245)
            } else {
                let g = (220.0 * (1.0 - t)) as u8;
                RGBColor(230, g, 30)
            }
        }
    }
}

/// Write the masking picture of `x` to `path` (PNG): the signal's spectrogram and its masking
/// threshold, and with `adversarial` also the perturbation's spectrogram and where (and by how
/// many dB) it exceeds the threshold. Levels are on the masking model's normalised scale.
/// Refuses to overwrite any of `inputs`; writes a temporary file and renames it.
pub fn masking_plot(
    path: &Path,
    threshold: &MaskingThreshold,
    x: &[f32],
    adversarial: Option<&[f32]>,
    inputs: &[&Path],
) -> Result<()> {
    refuse_overwrite(path, inputs)?;
    if x.len() != threshold.len() {
        return Err(Error::Shape(format!(
            "the threshold is for {} samples, the signal has {}",
            threshold.len(),
            x.len()
        )));
    }
    // The perturbation's PSD (dB), its excess over the threshold (dB) and its statistics.
    let perturbation = match adversarial {
        Some(adv) => {
            if adv.len() != x.len() {
                return Err(Error::InvalidArgument(format!(
                    "the adversarial recording has {} samples, the original {}",
                    adv.len(),
                    x.len()
                )));
            }
            let delta: Vec<f32> = adv.iter().zip(x).map(|(a, b)| a - b).collect();
            let psd_db: Vec<f32> = threshold
                .perturbation_power(&delta)?
                .iter()
                .map(|p| 10.0 * (p + 1e-19).log10())
                .collect();
            let excess: Vec<f32> = psd_db
                .iter()
                .zip(threshold.theta_db())
                .map(|(p, t)| p - t.max(-200.0))
                .collect();
            Some((psd_db, excess, threshold.stats(&delta)?))
        }
        None => None,
    };
    let mut panels = vec![
        Panel {
            title: "original: PSD (dB)".into(),
            values: threshold.signal_psd_db(),
            range: DB_RANGE,
            palette: Palette::Level,
        },
        Panel {
            title: "masking threshold (dB)".into(),
            values: threshold.theta_db(),
            range: DB_RANGE,
            palette: Palette::Level,
        },
    ];
    if let Some((p, e, stats)) = &perturbation {
        panels.push(Panel {
            title: "perturbation: PSD (dB)".into(),
            values: p,
            range: DB_RANGE,
            palette: Palette::Level,
        });
        panels.push(Panel {
            title: format!(
                "perturbation over the threshold (0-30 dB): {:.1} % of its energy masked, {:.1} % of bins over",
                100.0 * stats.energy_under_threshold,
                100.0 * stats.bins_over_threshold
            ),
            values: e,
            range: (0.0, 30.0),
            palette: Palette::Excess,
        });
    }
    write_png(path, |tmp| draw(tmp, threshold, &panels))
}

/// Draw into a temporary PNG beside `path` and rename it into place.
fn write_png(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    register_font();
    // The encoder picks the format from the extension, so the temporary file ends in .png.
    let mut tmp = temp_path_beside(path).into_os_string();
    tmp.push(".png");
    let tmp = std::path::PathBuf::from(tmp);
    match draw(&tmp) {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// One named line of a [`line_chart`].
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// Axis titles and ranges of a [`line_chart`].
pub struct Axes<'a> {
    /// Chart title.
    pub title: &'a str,
    /// X axis title.
    pub x_label: &'a str,
    /// Y axis title.
    pub y_label: &'a str,
    /// X range.
    pub x_range: (f64, f64),
    /// Y range.
    pub y_range: (f64, f64),
}

/// A line chart with markers and a legend (ROC curves, success against ε) as an 800×500 PNG,
/// written through a temporary file.
pub fn line_chart(path: &Path, axes: &Axes, series: &[Series]) -> Result<()> {
    let valid = |(a, b): (f64, f64)| a.is_finite() && b.is_finite() && b > a;
    if !valid(axes.x_range) || !valid(axes.y_range) {
        return Err(Error::InvalidArgument(format!(
            "drawing {}: empty axis range",
            path.display()
        )));
    }
    write_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(axes.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(
                axes.x_range.0..axes.x_range.1,
                axes.y_range.0..axes.y_range.1,
            )
            .map_err(|e| plot_error(path, e))?;
        chart
            .configure_mesh()
            .x_desc(axes.x_label)
            .y_desc(axes.y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        for (i, s) in series.iter().enumerate() {
            let colour = <Palette99 as plotters::style::Palette>::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| plot_error(path, e))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(|e| plot_error(path, e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
        Ok(())
    })
}

fn draw(path: &Path, threshold: &MaskingThreshold, panels: &[Panel]) -> Result<()> {
    let cfg = threshold.config();
    let seconds = threshold.len() as f32 / cfg.sample_rate;
    let nyquist = cfg.sample_rate / 2.0;
    let (frames, bins) = (threshold.frames(), threshold.bins());
    let rows = ROWS.min(bins);
    let frame_seconds = cfg.hop as f32 / cfg.sample_rate;
    let height = PANEL_HEIGHT * panels.len() as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    for (panel, area) in panels.iter().zip(root.split_evenly((panels.len(), 1))) {
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f32..seconds.max(frame_seconds), 0f32..nyquist)
            .map_err(|e| plot_error(path, e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("time (s)")
            .y_desc("Hz")
            .label_style(("sans-serif", 13))
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        let row_hz = nyquist / rows as f32;
        let cells = (0..frames).flat_map(|t| {
            (0..rows).map(move |r| {
                let lo = r * bins / rows;
                let hi = ((r + 1) * bins / rows).max(lo + 1).min(bins);
                let v = panel.values[t * bins + lo..t * bins + hi]
                    .iter()
                    .copied()
                    .fold(f32::NEG_INFINITY, f32::max);
                let x0 = (t as f32 - 0.5).max(0.0) * frame_seconds;
                let x1 = (t as f32 + 0.5) * frame_seconds;
                let y0 = r as f32 * row_hz;
                Rectangle::new(
                    [(x0, y0), (x1.min(seconds), y0 + row_hz)],
                    colour(panel.palette, v, panel.range).filled(),
                )
            })
        });
        chart.draw_series(cells).map_err(|e| plot_error(path, e))?;
    }
    root.present().map_err(|e| plot_error(path, e))?;
    Ok(())
}
