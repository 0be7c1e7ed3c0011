//! Sentinel's editor: the score over time with the threshold line, the model check's score,
//! a detected/clean indicator, and the parameters.

use super::plot::{legend, Plot, XScale};
use super::score_history::ScoreHistory;
use super::{colours, settings};
use crate::sentinel::{SentinelMeters, SentinelParams, MODEL_OFF};
use advox::stream::monitor::MonitorStatus;
use egui::{self, Stroke};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::{LogicalSize, Size};
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiEditorState, NiceEguiApp, RepaintNotifier,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Window size (logical pixels).
pub const SIZE: (u32, u32) = (760, 500);
/// Seconds of score history shown.
pub const HISTORY_SECONDS: f64 = 20.0;

/// Sentinel's editor application.
pub struct SentinelEditor {
    params: Arc<SentinelParams>,
    meters: Arc<SentinelMeters>,
    gui: Option<GuiContext>,
    history: ScoreHistory,
    start: Instant,
    /// The detector and calibration entries (from the parameters when first shown).
    entries: Option<(String, String)>,
}

/// Make Sentinel's editor.
pub fn create(
    params: Arc<SentinelParams>,
    meters: Arc<SentinelMeters>,
) -> Option<EguiEditor<SentinelEditor>> {
    create_egui_editor(
        EguiEditorState::from_size(
            Size::Logical(LogicalSize::new(SIZE.0 as f64, SIZE.1 as f64)),
            1.0,
        ),
        RepaintNotifier::new(),
        settings("advox Sentinel"),
        SentinelEditor {
            params,
            meters,
            gui: None,
            history: ScoreHistory::new(HISTORY_SECONDS, 30.0),
            start: Instant::now(),
            entries: None,
        },
    )
}

impl NiceEguiApp for SentinelEditor {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui);
        super::watch_signals();
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        super::frame_start(ui);
        egui::Frame::new()
            .inner_margin(10.0)
            .show(ui, |ui| self.contents(ui));
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }
}

impl SentinelEditor {
    fn contents(&mut self, ui: &mut egui::Ui) {
        let m = &self.meters;
        let score = m.score.load(Ordering::Relaxed);
        let model_score = m.model_score.load(Ordering::Relaxed);
        let detected = m.detected.load(Ordering::Relaxed);
        let model_status = m.model_status.load(Ordering::Relaxed);
        self.history.update(
            self.start.elapsed().as_secs_f64(),
            score,
            model_score,
            detected,
        );
        ui.horizontal(|ui| {
            ui.heading("advox Sentinel");
            ui.add_space(16.0);
            indicator(ui, detected);
        });
        ui.add_space(4.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(500.0);
                self.history_plot(ui);
            });
            ui.add_space(12.0);
            ui.vertical(|ui| {
                readout(ui, "Frame score", score, colours::SIGNAL);
                let model_text = match model_status {
                    MODEL_OFF => "off".to_string(),
                    s if s == MonitorStatus::Loading as u8 => "loading the model…".into(),
                    s if s == MonitorStatus::Failed as u8 => {
                        "model unavailable (see the log; run `advox model fetch`)".into()
                    }
                    s if s == MonitorStatus::Stopped as u8 => "stopped".into(),
                    _ => format!("{model_score:.2}"),
                };
                ui.label("Model check (Whisper)");
                ui.label(
                    egui::RichText::new(model_text)
                        .color(colours::PERTURBATION)
                        .strong(),
                );
                ui.separator();
                self.controls(ui);
            });
        });
        ui.separator();
        self.detector_rows(ui);
    }

    /// The model check's detector and calibration: entries, an apply button, the status.
    fn detector_rows(&mut self, ui: &mut egui::Ui) {
        let p = &self.params;
        if self.entries.is_none() {
            let read =
                |l: &std::sync::RwLock<String>| l.read().map(|s| s.clone()).unwrap_or_default();
            self.entries = Some((
                read(&p.model_check_detector),
                read(&p.model_check_calibration),
            ));
        }
        let Some((detector, calibration)) = self.entries.as_mut() else {
            return;
        };
        ui.horizontal(|ui| {
            ui.label("Detector");
            ui.add(
                egui::TextEdit::singleline(detector)
                    .hint_text("consistency:lowpass-4000")
                    .desired_width(220.0),
            );
            ui.label("Calibration");
            ui.add(egui::TextEdit::singleline(calibration).desired_width(260.0));
            if ui.button("Apply").clicked() {
                for (lock, value) in [
                    (&p.model_check_detector, detector.trim()),
                    (&p.model_check_calibration, calibration.trim()),
                ] {
                    if let Ok(mut v) = lock.write() {
                        *v = value.to_string();
                    }
                }
                p.model_check_edits.fetch_add(1, Ordering::Relaxed);
            }
        });
        let status = p
            .model_check_status
            .try_read()
            .map(|s| s.clone())
            .unwrap_or_default();
        let colour = if status.starts_with("model check off:") {
            colours::ALERT
        } else {
            colours::LABEL
        };
        ui.label(egui::RichText::new(status).small().color(colour));
    }

    /// The scrolling score history with the threshold line.
    fn history_plot(&self, ui: &mut egui::Ui) {
        let (response, painter) =
            ui.allocate_painter(egui::vec2(500.0, 300.0), egui::Sense::hover());
        let rect = response.rect;
        let seconds = self.history.seconds() as f32;
        let plot = Plot {
            rect: egui::Rect::from_min_max(
                rect.min + egui::vec2(30.0, 6.0),
                rect.max - egui::vec2(6.0, 18.0),
            ),
            x: XScale::Linear {
                min: -seconds,
                max: 0.0,
            },
            y_min: 0.0,
            y_max: 1.0,
        };
        plot.grid(
            &painter,
            &[-20.0, -15.0, -10.0, -5.0, 0.0],
            &[0.0, 0.25, 0.5, 0.75, 1.0],
            |t| format!("{t} s"),
            |v| format!("{v}"),
        );
        // Detected stretches shaded, one rectangle per run.
        let samples: Vec<(f32, f32, bool)> = self.history.samples().copied().collect();
        let step = seconds / self.history.capacity() as f32;
        let time = |i: usize| -((samples.len() - 1 - i) as f32) * step;
        for (first, last) in detected_runs(samples.iter().map(|s| s.2)) {
            let x0 = plot.x_to_screen(time(first) - step);
            let x1 = plot.x_to_screen(time(last));
            let r = egui::Rect::from_x_y_ranges(x0..=x1, plot.rect.y_range());
            painter.rect_filled(r, 0.0, colours::ALERT.gamma_multiply(0.25));
        }
        plot.hline(
            &painter,
            self.params.threshold.value(),
            Stroke::new(1.5, colours::THRESHOLD),
        );
        plot.line(
            &painter,
            samples.iter().enumerate().map(|(i, s)| (time(i), s.1)),
            Stroke::new(1.5, colours::PERTURBATION),
        );
        plot.line(
            &painter,
            samples.iter().enumerate().map(|(i, s)| (time(i), s.0)),
            Stroke::new(2.0, colours::SIGNAL),
        );
        legend(
            ui,
            &[
                (colours::SIGNAL, "frame score"),
                (colours::PERTURBATION, "model check"),
                (colours::THRESHOLD, "threshold"),
                (colours::ALERT.gamma_multiply(0.5), "detected"),
            ],
        );
    }

    /// Parameter sliders.
    fn controls(&self, ui: &mut egui::Ui) {
        let Some(gui) = self.gui.as_ref() else {
            return;
        };
        let setter = gui.param_setter();
        let p = &self.params;
        super::labelled_slider(ui, "Threshold", &p.threshold, &setter);
        super::labelled_slider(ui, "Smoothing", &p.smoothing_seconds, &setter);
        super::labelled_slider(ui, "Gate (mute while detected)", &p.gate, &setter);
        super::labelled_slider(ui, "Model check", &p.model_check, &setter);
    }
}

/// Runs of `true` as (first, last) indices.
pub fn detected_runs(flags: impl Iterator<Item = bool>) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    let mut len = 0;
    for (i, on) in flags.enumerate() {
        match (on, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
        len = i + 1;
    }
    if let Some(s) = start {
        runs.push((s, len - 1));
    }
    runs
}

/// The detected/clean lamp.
fn indicator(ui: &mut egui::Ui, detected: bool) {
    let (colour, text) = if detected {
        (colours::ALERT, "ADVERSARIAL AUDIO DETECTED")
    } else {
        (colours::CLEAN, "clean")
    };
    let (rect, _) = ui.allocate_exact_size(egui::vec2(18.0, 18.0), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), 8.0, colour);
    ui.label(egui::RichText::new(text).color(colour).strong());
}

/// A labelled value with a bar.
fn readout(ui: &mut egui::Ui, name: &str, value: f32, colour: egui::Color32) {
    ui.label(name);
    let value = if value.is_finite() { value } else { 0.0 };
    ui.add(
        egui::ProgressBar::new(value.clamp(0.0, 1.0))
            .desired_width(180.0)
            .fill(colour)
            .text(format!("{value:.2}")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_detection() {
        let f = |v: &[u8]| detected_runs(v.iter().map(|&b| b == 1));
        assert_eq!(f(&[0, 1, 1, 0, 1]), vec![(1, 2), (4, 4)]);
        assert_eq!(f(&[1, 1]), vec![(0, 1)]);
        assert_eq!(f(&[0, 0]), vec![]);
        assert_eq!(f(&[]), vec![]);
    }
}
