//! Cloak as a standalone application (JACK, ALSA via cpal, or the dummy backend; `--help`).

fn main() {
    // The mode to start in (the parameter's ids), e.g. `ADVOX_CLOAK_MODE=masked-noise` for the
    // editor screenshots; the default is the mute segment.
    if let Ok(id) = std::env::var("ADVOX_CLOAK_MODE") {
        match advox_plugin::cloak::ModeParam::from_id(&id) {
            Some(mode) => advox_plugin::cloak::set_standalone_default_mode(mode),
            None => {
                eprintln!(
                    "advox-cloak: ADVOX_CLOAK_MODE={id:?}: `mute`, `masked-noise`, `universal` \
                     or `model`"
                );
                std::process::exit(2);
            }
        }
    }
    #[cfg(feature = "editor")]
    advox_plugin::editor::mark_standalone();
    nice_plug::prelude::nice_export_standalone::<advox_plugin::Cloak>();
}
