//! Sentinel as a standalone application (JACK, ALSA via cpal, or the dummy backend; `--help`).

fn main() {
    nice_plug::prelude::nice_export_standalone::<advox_plugin::Sentinel>();
}
