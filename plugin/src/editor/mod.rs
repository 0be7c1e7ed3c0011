//! The plugins' egui editors (feature `editor`). The audio thread publishes meters through
//! atomics ([`advox::stream::band_meter::BandMeter`], [`crate::sentinel::SentinelMeters`]); the
//! editors read them on the GUI thread every frame and never take a lock the audio thread
//! holds.

pub mod cloak_editor;
pub mod plot;
pub mod score_history;
pub mod sentinel_editor;

use nice_plug_egui::EguiNiceSettings;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by the standalone applications before they start (never in a host).
static STANDALONE: AtomicBool = AtomicBool::new(false);
/// Set when a standalone receives SIGINT or SIGTERM.
static CLOSE_REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Mark this process as a standalone application: its editor then closes its window on
/// SIGINT/SIGTERM, so the application exits cleanly (nice-plug's standalone only watches the
/// signal when there is no window).
pub fn mark_standalone() {
    STANDALONE.store(true, Ordering::Relaxed);
}

/// In a standalone, start watching SIGINT and SIGTERM (once). Called when an editor opens,
/// which is after nice-plug installed its own handler: signal-hook chains to it, so both run.
fn watch_signals() {
    if !STANDALONE.load(Ordering::Relaxed) {
        return;
    }
    CLOSE_REQUESTED.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            if let Err(e) = signal_hook::flag::register(signal, flag.clone()) {
                nice_plug::nice_log!("advox: cannot watch signal {signal}: {e}");
            }
        }
        flag
    });
}

/// Whether a standalone was asked to quit by a signal.
fn close_requested() -> bool {
    CLOSE_REQUESTED
        .get()
        .is_some_and(|f| f.load(Ordering::Relaxed))
}

/// What both editors do first in every frame: keep repainting (meters) and close the window of a
/// standalone that received a signal.
fn frame_start(ui: &egui::Ui) {
    ui.ctx()
        .request_repaint_after(std::time::Duration::from_millis(33));
    if close_requested() {
        ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
    }
}

/// Set to any value to run without editors (e.g. a standalone on a headless machine).
pub const NO_GUI_VARIABLE: &str = "ADVOX_NO_GUI";

/// Whether an editor can open here: not when [`NO_GUI_VARIABLE`] is set, and on Linux and the
/// BSDs only with an X11 display (`DISPLAY`). Without one, the plugins offer no editor, so a
/// standalone on a server runs headless instead of failing to open its window.
pub fn display_available() -> bool {
    if std::env::var_os(NO_GUI_VARIABLE).is_some() {
        return false;
    }
    if cfg!(any(target_os = "windows", target_os = "macos")) {
        return true;
    }
    std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
}

/// A parameter's label and its slider, as both editors lay out their controls.
fn labelled_slider<P: nice_plug::prelude::Param>(
    ui: &mut egui::Ui,
    label: &str,
    param: &P,
    setter: &nice_plug::prelude::ParamSetter,
) {
    ui.label(label);
    ui.add(nice_plug_egui::widgets::ParamSlider::for_param(param, setter).with_width(150.0));
}

/// Window settings shared by both editors.
pub fn settings(title: &str) -> EguiNiceSettings {
    EguiNiceSettings::new().with_tile(title)
}

/// Colours shared by both editors.
pub mod colours {
    use egui::Color32;

    /// The input spectrum, the score.
    pub const SIGNAL: Color32 = Color32::from_rgb(0x4f, 0xa3, 0xf7);
    /// The masking threshold, the detection threshold.
    pub const THRESHOLD: Color32 = Color32::from_rgb(0xf2, 0xb1, 0x34);
    /// The perturbation, the model check.
    pub const PERTURBATION: Color32 = Color32::from_rgb(0xe0, 0x4f, 0x8a);
    /// Detected.
    pub const ALERT: Color32 = Color32::from_rgb(0xd9, 0x3b, 0x3b);
    /// Clean.
    pub const CLEAN: Color32 = Color32::from_rgb(0x3c, 0xb3, 0x71);
    /// Grid lines.
    pub const GRID: Color32 = Color32::from_gray(70);
    /// Labels.
    pub const LABEL: Color32 = Color32::from_gray(170);
}
