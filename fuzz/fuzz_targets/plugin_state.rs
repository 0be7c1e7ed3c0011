//! The plugins' state loading, through a real CLAP host (clack-host) calling the plugin library
//! linked into this binary: arbitrary bytes go to Cloak's or Sentinel's `state.load` (the first
//! byte picks which). A refused state is fine; an accepted one must save and load again.
#![no_main]

use clack_extensions::state::PluginState;
use clack_host::prelude::*;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use std::sync::OnceLock;

struct FuzzHost;
struct Shared;

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

impl HostHandlers for FuzzHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

fn entry() -> &'static PluginEntry {
    static ENTRY: OnceLock<PluginEntry> = OnceLock::new();
    ENTRY.get_or_init(|| {
        // SAFETY: the entry is advox's own, linked into this binary.
        unsafe { PluginEntry::load_from_raw(&advox_plugin::clap_entry, c"/fuzz/advox.clap") }
            .expect("plugin entry")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, state)) = data.split_first() else {
        return;
    };
    let id = if pick & 1 == 0 {
        c"dev.advox.cloak"
    } else {
        c"dev.advox.sentinel"
    };
    let info = HostInfo::new("advox fuzz host", "advox", "https://example.invalid", "0.1")
        .expect("host info");
    let mut instance = PluginInstance::<FuzzHost>::new(|_| Shared, |_| (), entry(), id, &info)
        .expect("instantiating");
    let handle = instance.plugin_handle();
    let ext = handle
        .get_extension::<PluginState>()
        .expect("state extension");
    if ext.load(&handle, &mut Cursor::new(state)).is_ok() {
        let mut saved = Vec::new();
        ext.save(&handle, &mut saved)
            .expect("saving an accepted state");
        ext.load(&handle, &mut Cursor::new(&saved))
            .expect("loading the state just saved");
    }
});
