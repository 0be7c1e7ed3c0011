//! Cloak's editor: the input spectrum, its masking threshold and the perturbation per band
//! (from the audio thread's [`BandMeter`]), the parameters, and the perturbation file.

use super::plot::{legend, Plot, XScale};
use super::{colours, settings};
use crate::cloak::CloakParams;
use crate::source_loader::{SourceShared, SOURCE_FAILED, SOURCE_LOADING, SOURCE_NONE};
use advox::stream::band_meter::{
    band_edges_hz, BandMeter, BandSnapshot, METER_BANDS, METER_FLOOR_DB, METER_HIGH_HZ,
    METER_LOW_HZ,
};
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
pub const SIZE: (u32, u32) = (760, 480);

/// Cloak's editor application.
pub struct CloakEditor {
    params: Arc<CloakParams>,
    meter: Arc<BandMeter>,
    source: Arc<SourceShared>,
    gui: Option<GuiContext>,
    /// The path being typed (written to the persisted path on "Load").
    path_entry: String,
    /// The curves as drawn: they follow a rise at once and fall at [`FALL_DB_PER_SECOND`], so
    /// speech reads as a spectrum rather than a flicker of single frames.
    shown: Option<BandSnapshot>,
    last_draw: Option<Instant>,
}

/// How fast the drawn curves fall (dB per second).
pub const FALL_DB_PER_SECOND: f32 = 40.0;

/// `shown` moved towards `new`: rises at once, falls by at most `fall_db`.
pub fn ballistics(shown: &mut BandSnapshot, new: &BandSnapshot, fall_db: f32) {
    let pairs = [
        (&mut shown.input_db, &new.input_db),
        (&mut shown.threshold_db, &new.threshold_db),
        (&mut shown.perturbation_db, &new.perturbation_db),
    ];
    for (old, new) in pairs {
        for (o, &n) in old.iter_mut().zip(new) {
            *o = n.max(*o - fall_db).max(METER_FLOOR_DB);
        }
    }
    shown.frames = new.frames;
}

/// Make Cloak's editor.
pub fn create(
    params: Arc<CloakParams>,
    meter: Arc<BandMeter>,
    source: Arc<SourceShared>,
) -> Option<EguiEditor<CloakEditor>> {
    let path_entry = source.path.read().map(|p| p.clone()).unwrap_or_default();
    create_egui_editor(
        EguiEditorState::from_size(
            Size::Logical(LogicalSize::new(SIZE.0 as f64, SIZE.1 as f64)),
            1.0,
        ),
        RepaintNotifier::new(),
        settings("advox Cloak"),
        CloakEditor {
            params,
            meter,
            source,
            gui: None,
            path_entry,
            shown: None,
            last_draw: None,
        },
    )
}

impl NiceEguiApp for CloakEditor {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui);
        // The host may have loaded a project (and its path) since the editor was made.
        if let Ok(path) = self.source.path.read() {
            self.path_entry = path.clone();
        }
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
        self.shown = None;
        self.last_draw = None;
    }
}

impl CloakEditor {
    fn contents(&mut self, ui: &mut egui::Ui) {
        ui.heading("advox Cloak");
        ui.label(
            egui::RichText::new(
                "Adds a perturbation kept under the input's masking threshold, band by band.",
            )
            .small()
            .color(colours::LABEL),
        );
        ui.add_space(4.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(470.0);
                self.spectrum(ui);
            });
            ui.add_space(12.0);
            ui.vertical(|ui| self.controls(ui));
        });
        ui.separator();
        self.file_row(ui);
    }

    /// The three band curves.
    fn spectrum(&mut self, ui: &mut egui::Ui) {
        let now = Instant::now();
        let dt = self
            .last_draw
            .map_or(0.0, |t| now.duration_since(t).as_secs_f32());
        self.last_draw = Some(now);
        let new = self.meter.snapshot();
        let snapshot = *self.shown.get_or_insert(new);
        let snapshot = {
            let mut s = snapshot;
            ballistics(&mut s, &new, FALL_DB_PER_SECOND * dt);
            self.shown = Some(s);
            s
        };
        let (response, painter) =
            ui.allocate_painter(egui::vec2(470.0, 300.0), egui::Sense::hover());
        let rect = response.rect;
        let plot = Plot {
            rect: egui::Rect::from_min_max(
                rect.min + egui::vec2(34.0, 6.0),
                rect.max - egui::vec2(6.0, 18.0),
            ),
            x: XScale::Log {
                min: METER_LOW_HZ,
                max: METER_HIGH_HZ,
            },
            y_min: METER_FLOOR_DB,
            y_max: 100.0,
        };
        plot.grid(
            &painter,
            &[100.0, 300.0, 1_000.0, 3_000.0, 10_000.0],
            &[0.0, 20.0, 40.0, 60.0, 80.0, 100.0],
            |f| {
                if f >= 1_000.0 {
                    format!("{}k", f / 1_000.0)
                } else {
                    format!("{f}")
                }
            },
            |db| format!("{db}"),
        );
        // Shade the perturbed band.
        let (lo, hi) = (
            self.params.band_low_hz.value(),
            self.params.band_high_hz.value(),
        );
        let band = egui::Rect::from_x_y_ranges(
            plot.x_to_screen(lo)..=plot.x_to_screen(hi),
            plot.rect.y_range(),
        );
        painter.rect_filled(band, 0.0, egui::Color32::from_white_alpha(8));
        let centre = |b: usize| {
            let (l, h) = band_edges_hz(b);
            (l * h).sqrt()
        };
        let curve = |values: [f32; METER_BANDS]| {
            (0..METER_BANDS)
                .filter(move |&b| values[b] > METER_FLOOR_DB)
                .map(move |b| (centre(b), values[b]))
        };
        // The perturbation as bars, the others as lines.
        for (b, &level) in snapshot.perturbation_db.iter().enumerate() {
            if level > METER_FLOOR_DB {
                let (l, h) = band_edges_hz(b);
                let bar = egui::Rect::from_x_y_ranges(
                    plot.x_to_screen(l) + 1.0..=plot.x_to_screen(h) - 1.0,
                    plot.y_to_screen(level)..=plot.rect.bottom(),
                );
                painter.rect_filled(bar, 0.0, colours::PERTURBATION.gamma_multiply(0.7));
            }
        }
        plot.line(
            &painter,
            curve(snapshot.input_db),
            Stroke::new(2.0, colours::SIGNAL),
        );
        plot.line(
            &painter,
            curve(snapshot.threshold_db),
            Stroke::new(2.0, colours::THRESHOLD),
        );
        if snapshot.frames == 0 {
            painter.text(
                plot.rect.center(),
                egui::Align2::CENTER_CENTER,
                "no audio yet",
                egui::FontId::proportional(14.0),
                colours::LABEL,
            );
        }
        legend(
            ui,
            &[
                (colours::SIGNAL, "input spectrum"),
                (colours::THRESHOLD, "masking threshold"),
                (colours::PERTURBATION, "perturbation"),
            ],
        );
        ui.label(
            egui::RichText::new("dB on the masking model's scale (full-scale sine = 96 dB)")
                .small()
                .color(colours::LABEL),
        );
    }

    /// Parameter sliders.
    fn controls(&self, ui: &mut egui::Ui) {
        let Some(gui) = self.gui.as_ref() else {
            return;
        };
        let setter = gui.param_setter();
        let p = &self.params;
        super::labelled_slider(ui, "Mode", &p.mode, &setter);
        super::labelled_slider(ui, "Depth", &p.depth, &setter);
        super::labelled_slider(ui, "Margin under the threshold", &p.margin_db, &setter);
        super::labelled_slider(ui, "Band low", &p.band_low_hz, &setter);
        super::labelled_slider(ui, "Band high", &p.band_high_hz, &setter);
        super::labelled_slider(ui, "Bypass", &p.bypass, &setter);
    }

    /// The universal perturbation file: path entry, load button, status.
    fn file_row(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("Perturbation file");
            ui.add(egui::TextEdit::singleline(&mut self.path_entry).desired_width(420.0));
            if ui.button("Load").clicked() {
                if let Ok(mut path) = self.source.path.write() {
                    *path = self.path_entry.trim().to_string();
                }
            }
        });
        let status = self.source.status.load(Ordering::Relaxed);
        let text = self
            .source
            .status_text
            .try_read()
            .map(|s| s.clone())
            .unwrap_or_default();
        let colour = match status {
            SOURCE_FAILED => colours::ALERT,
            SOURCE_LOADING | SOURCE_NONE => colours::LABEL,
            _ => colours::CLEAN,
        };
        ui.label(egui::RichText::new(text).small().color(colour));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(input: f32, threshold: f32, perturbation: f32) -> BandSnapshot {
        BandSnapshot {
            input_db: [input; METER_BANDS],
            threshold_db: [threshold; METER_BANDS],
            perturbation_db: [perturbation; METER_BANDS],
            frames: 1,
        }
    }

    #[test]
    fn curves_rise_at_once_and_fall_slowly() {
        let mut shown = flat(60.0, 40.0, 30.0);
        ballistics(&mut shown, &flat(20.0, 50.0, -100.0), 4.0);
        assert_eq!(shown.input_db[3], 56.0);
        assert_eq!(shown.threshold_db[3], 50.0);
        assert_eq!(shown.perturbation_db[3], 26.0);
        for _ in 0..100 {
            ballistics(&mut shown, &flat(20.0, 50.0, -100.0), 4.0);
        }
        assert_eq!(shown.input_db[0], 20.0);
        assert_eq!(shown.perturbation_db[0], METER_FLOOR_DB);
    }
}
