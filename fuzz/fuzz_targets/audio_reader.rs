//! The audio reader on arbitrary bytes: the first byte picks the file extension (WAV through
//! hound, the rest through symphonia's probe), the rest is the file. Must return Ok or a clear
//! error, never panic, hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| advox_fuzz::scratch("audio"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ext = ["wav", "flac", "ogg", "mp3", "wav", "bin"][pick as usize % 6];
    let path = scratch().join(format!("input.{ext}"));
    std::fs::write(&path, body).unwrap();
    if let Ok(audio) = advox::audio::read_audio(&path) {
        assert!(!audio.channels.is_empty() && audio.sample_rate > 0 && audio.frames() > 0);
        assert!(audio.channels.iter().flatten().all(|v| v.is_finite()));
        // The 16-kHz mono path the commands use (short files only: the sinc resampler's cost
        // would dominate the run).
        if audio.frames() < 1 << 12 {
            let _ = advox::audio::read_audio_16k_mono(&path);
        }
    }
});
