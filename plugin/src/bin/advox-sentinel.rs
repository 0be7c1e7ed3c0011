//! Sentinel as a standalone application (JACK, ALSA via cpal, or the dummy backend; `--help`).

fn main() {
    #[cfg(feature = "editor")]
    advox_plugin::editor::mark_standalone();
    nice_plug::prelude::nice_export_standalone::<advox_plugin::Sentinel>();
}
