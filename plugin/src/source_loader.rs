//! Loading Cloak's universal perturbation off the audio thread.
//!
//! A loader thread (one per activation) watches the persisted path; when it changes it reads
//! the WAV and its sidecar, resamples to the host rate and hands the buffer to the audio thread
//! through a lock-free ring. The audio thread hands the buffer it replaces back through a
//! second ring, so it is freed here, never in `process()`. A missing or corrupt file leaves
//! Cloak without a source (universal mode then passes audio through) and says why: in the log,
//! in the persisted status string, and in the status atomic.

use advox::formats::universal_sidecar::UniversalFile;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// No file set.
pub const SOURCE_NONE: u8 = 0;
/// Reading / resampling.
pub const SOURCE_LOADING: u8 = 1;
/// Loaded and in use.
pub const SOURCE_READY: u8 = 2;
/// The file could not be used; the status string says why.
pub const SOURCE_FAILED: u8 = 3;

/// What the loader and the plugin share.
pub struct SourceShared {
    /// The perturbation file (persisted plugin state; empty: none).
    pub path: Arc<RwLock<String>>,
    /// Human-readable status (persisted so a host or user can read why loading failed).
    pub status_text: Arc<RwLock<String>>,
    /// One of the `SOURCE_*` values.
    pub status: AtomicU8,
}

/// The audio thread's end of the loader.
pub struct SourceReceiver {
    incoming: rtrb::Consumer<Vec<f32>>,
    outgoing: rtrb::Producer<Vec<f32>>,
    current: Vec<f32>,
}

impl SourceReceiver {
    /// Take a newly loaded buffer if one is waiting (lock-free, no allocation; the old buffer
    /// goes back to the loader to be freed), and return the current one.
    #[inline]
    pub fn current(&mut self) -> &[f32] {
        if !self.outgoing.is_full() {
            if let Ok(new) = self.incoming.pop() {
                let old = std::mem::replace(&mut self.current, new);
                // Cannot fail: checked for room above and this is the only producer.
                let _ = self.outgoing.push(old);
            }
        }
        &self.current
    }
}

/// Stops the loader thread when dropped.
pub struct LoaderHandle {
    stop: Arc<AtomicBool>,
}

impl Drop for LoaderHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn set_status(shared: &SourceShared, code: u8, text: String) {
    if code == SOURCE_FAILED {
        nice_plug::nice_log!("advox Cloak: {text}");
    }
    if let Ok(mut t) = shared.status_text.write() {
        *t = text;
    }
    shared.status.store(code, Ordering::Relaxed);
}

/// Read and resample the perturbation at `path` for `rate` Hz.
pub fn load_source(path: &Path, rate: f32) -> Result<Vec<f32>, String> {
    let file = UniversalFile::read(path).map_err(|e| e.to_string())?;
    file.at_rate(rate.round() as u32)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Start the loader for a host rate; returns the audio thread's receiver and the handle that
/// stops the thread.
pub fn spawn_loader(shared: Arc<SourceShared>, rate: f32) -> (SourceReceiver, LoaderHandle) {
    let (mut to_audio, incoming) = rtrb::RingBuffer::new(2);
    let (outgoing, mut from_audio) = rtrb::RingBuffer::<Vec<f32>>::new(4);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_thread = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("advox-cloak-loader".into())
        .spawn(move || {
            let mut loaded: Option<String> = None;
            while !stop_thread.load(Ordering::Relaxed) {
                while from_audio.pop().is_ok() {} // free replaced buffers here
                let path = shared.path.read().map(|p| p.clone()).unwrap_or_default();
                if loaded.as_deref() != Some(path.as_str()) && !to_audio.is_full() {
                    loaded = Some(path.clone());
                    if path.is_empty() {
                        let _ = to_audio.push(Vec::new());
                        set_status(&shared, SOURCE_NONE, "no perturbation file".into());
                    } else {
                        set_status(&shared, SOURCE_LOADING, format!("loading {path}"));
                        match load_source(Path::new(&path), rate) {
                            Ok(buffer) => {
                                let len = buffer.len();
                                let _ = to_audio.push(buffer);
                                set_status(
                                    &shared,
                                    SOURCE_READY,
                                    format!("{path}: {len} samples at {rate} Hz"),
                                );
                            }
                            Err(reason) => {
                                let _ = to_audio.push(Vec::new());
                                set_status(&shared, SOURCE_FAILED, reason);
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    if let Err(e) = spawned {
        // Nothing will ever load; Cloak keeps running without a source.
        nice_plug::nice_log!("advox Cloak: could not start the loader thread: {e}");
    }
    let receiver = SourceReceiver {
        incoming,
        outgoing,
        current: Vec::new(),
    };
    (receiver, LoaderHandle { stop })
}
