//! A minimal CLAP host (clack-host) that loads the built plugin library by absolute path,
//! instantiates a plugin, sets parameters with normalised values, saves/loads state and runs
//! audio through it in blocks of chosen sizes.

#![allow(dead_code)]

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::latency::PluginLatency;
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{NoteOffEvent, NoteOnEvent, ParamValueEvent};
use clack_host::prelude::*;
use std::io::Cursor;
use std::path::PathBuf;

pub struct TestHost;
pub struct Shared;

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// Cloak's CLAP id.
pub const CLOAK: &str = "dev.advox.cloak";
/// Sentinel's CLAP id.
pub const SENTINEL: &str = "dev.advox.sentinel";

/// Build the plugin library for this test profile (`cargo test` builds the crate as an rlib
/// for the test; the cdylib a host loads comes from a `cargo build` of the same profile) with
/// the given features, and copy it to `name` in a per-process directory, so it is loaded the
/// way a host loads a bundle.
fn build_clap(features: &str, name: &str) -> PathBuf {
    cargo_build(features, !cfg!(debug_assertions));
    copy_built(name, &profile_dir(), &profile_dir())
}

/// Rebuild the library without extra features.
fn rebuild_shipped() {
    cargo_build("", !cfg!(debug_assertions));
}

/// `target/<profile>` of this test executable.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

fn cargo_build(features: &str, release: bool) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    // Every member's library, so that the dependencies get the features `cargo test` of the
    // workspace gives them and what `cargo test` built is reused: `-p advox-plugin` alone
    // compiled the core again without the CLI's features, and `-p advox-plugin -p advox` every
    // proc-macro crate again without the feature of `syn` that the Python package's PyO3 turns
    // on (and all that they expand in: 67–320 s of a fresh CI run instead of a few).
    cmd.args(["build", "--quiet", "--workspace", "--lib"]);
    if !features.is_empty() {
        cmd.args(["--features", &format!("advox-plugin/{features}")]);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("running cargo build");
    assert!(status.success(), "building the plugin library failed");
}

/// Copy the library built in `built_in` (`target/<profile>`) to `name` in the test directory of
/// `profile_dir`.
fn copy_built(name: &str, built_in: &std::path::Path, profile_dir: &std::path::Path) -> PathBuf {
    let lib = built_in.join(format!(
        "{}advox_plugin{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    // One directory per profile, reused by every test run: copied under a unique name, then
    // renamed over the previous copy (a process that has the old one loaded keeps its inode;
    // nothing accumulates in the temp dir).
    let dir = profile_dir.join("test-claps");
    std::fs::create_dir_all(&dir).unwrap();
    let clap = dir.join(name);
    let staging = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::copy(&lib, &staging).unwrap();
    std::fs::rename(&staging, &clap).unwrap();
    clap.canonicalize().unwrap()
}

static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The plugin as shipped.
pub fn clap_path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let _one_build_at_a_time = BUILDS.lock();
        build_clap("", "advox.clap")
    })
    .clone()
}

/// The plugin built with nice-plug's `assert_process_allocs` in the debug profile, whatever the
/// profile of this test (the checker only works in debug builds: any allocation in `process()`
/// aborts the process).
pub fn alloc_checking_clap_path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let _one_build_at_a_time = BUILDS.lock();
        let profile = profile_dir();
        let debug = profile.parent().expect("target").join("debug");
        cargo_build("assert_process_allocs", false);
        let path = copy_built("advox-alloc-check.clap", &debug, &profile);
        // Put the shipped library back for the other tests (no copy needed).
        if cfg!(debug_assertions) {
            rebuild_shipped();
        }
        path
    })
    .clone()
}

/// Run the test `test` of this test binary in a child process with `env_var` set to `clap`
/// (so an abort from nice-plug's allocation checker ends only the child); returns whether it
/// succeeded and its stdout + stderr.
pub fn run_child(test: &str, env_var: &str, clap: &std::path::Path) -> (bool, String) {
    // The child half is an ignored test: `cargo test` never counts it as passing by itself.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env_var, clap)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Load the bundle at `path`.
pub fn entry_at(path: &std::path::Path) -> PluginEntry {
    // SAFETY: the library is our own plugin, built by cargo for this test.
    unsafe { PluginEntry::load(path) }.expect("loading the .clap")
}

/// Load the bundle's entry.
pub fn entry() -> PluginEntry {
    // SAFETY: the library is our own plugin, built by cargo for this test.
    unsafe { PluginEntry::load(clap_path()) }.expect("loading the .clap")
}

/// A plugin instance of `id`.
pub fn instance(entry: &PluginEntry, id: &str) -> PluginInstance<TestHost> {
    let info = HostInfo::new("advox test host", "advox", "https://example.invalid", "0.1").unwrap();
    let id = std::ffi::CString::new(id).unwrap();
    PluginInstance::<TestHost>::new(|_| Shared, |_| (), entry, &id, &info).expect("instantiating")
}

/// Descriptor ids in the bundle.
pub fn plugin_ids(entry: &PluginEntry) -> Vec<String> {
    let factory = entry.get_plugin_factory().expect("plugin factory");
    factory
        .plugin_descriptors()
        .filter_map(|d| d.id().map(|i| i.to_string_lossy().into_owned()))
        .collect()
}

/// (id, name) of every parameter.
pub fn params(instance: &mut PluginInstance<TestHost>) -> Vec<(ClapId, String)> {
    let handle = instance.plugin_handle();
    let ext = handle
        .get_extension::<PluginParams>()
        .expect("params extension");
    let mut buffer = ParamInfoBuffer::new();
    (0..ext.count(&handle))
        .filter_map(|i| {
            ext.get_info(&handle, i, &mut buffer)
                .map(|p| (p.id, String::from_utf8_lossy(p.name).into_owned()))
        })
        .collect()
}

/// The id of the parameter named `name`.
pub fn param_id(instance: &mut PluginInstance<TestHost>, name: &str) -> ClapId {
    params(instance)
        .into_iter()
        .find(|(_, n)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .0
}

/// A parameter's current value as the plugin reports it.
pub fn param_value(instance: &mut PluginInstance<TestHost>, id: ClapId) -> f64 {
    let handle = instance.plugin_handle();
    let ext = handle.get_extension::<PluginParams>().unwrap();
    ext.get_value(&handle, id).unwrap()
}

/// (input ports, output ports, channels of the first output port).
pub fn audio_ports(instance: &mut PluginInstance<TestHost>) -> (u32, u32, u32) {
    let handle = instance.plugin_handle();
    let ext = handle
        .get_extension::<PluginAudioPorts>()
        .expect("audio ports");
    let mut buffer = AudioPortInfoBuffer::new();
    let channels = ext
        .get(&handle, 0, false, &mut buffer)
        .map(|p| p.channel_count)
        .unwrap_or(0);
    (
        ext.count(&handle, true),
        ext.count(&handle, false),
        channels,
    )
}

/// Reported latency (while active).
pub fn latency(instance: &mut PluginInstance<TestHost>) -> u32 {
    let handle = instance.plugin_handle();
    let ext = handle.get_extension::<PluginLatency>().expect("latency");
    ext.get(&handle)
}

/// The plugin's saved state.
pub fn save_state(instance: &mut PluginInstance<TestHost>) -> Vec<u8> {
    let handle = instance.plugin_handle();
    let ext = handle.get_extension::<PluginState>().expect("state");
    let mut out = Vec::new();
    ext.save(&handle, &mut out).expect("saving state");
    out
}

/// Load a state; Err when the plugin refuses it.
pub fn load_state(instance: &mut PluginInstance<TestHost>, bytes: &[u8]) -> Result<(), String> {
    let handle = instance.plugin_handle();
    let ext = handle.get_extension::<PluginState>().expect("state");
    ext.load(&handle, &mut Cursor::new(bytes))
        .map_err(|e| e.to_string())
}

/// A note event the plugin sent: (sample time within the run, on?).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    pub time: u64,
    pub on: bool,
}

/// An active, processing plugin.
pub struct Running {
    processor: Option<StartedPluginAudioProcessor<TestHost>>,
    pub channels: usize,
    pub time: u64,
    pub notes: Vec<Note>,
}

/// Activate at `rate` for blocks up to `max_block` and start processing.
pub fn start(
    instance: &mut PluginInstance<TestHost>,
    rate: f64,
    max_block: u32,
    channels: usize,
) -> Running {
    let config = PluginAudioConfiguration {
        sample_rate: rate,
        min_frames_count: 1,
        max_frames_count: max_block,
    };
    let stopped = instance.activate(|_, _| (), config).expect("activation");
    Running {
        processor: Some(stopped.start_processing().expect("start processing")),
        channels,
        time: 0,
        notes: Vec::new(),
    }
}

impl Running {
    /// Process `input` (channel-major, equal lengths) in blocks of the given sizes (cycled),
    /// sending `params` (id, normalised value) at the start of the first block. Returns the
    /// output channels.
    pub fn process(
        &mut self,
        input: &[Vec<f32>],
        blocks: &[usize],
        params: &[(ClapId, f64)],
    ) -> Vec<Vec<f32>> {
        let mut first = true;
        self.process_automated(input, blocks, &mut |_, _| {
            if std::mem::take(&mut first) {
                params.iter().map(|&(id, v)| (0, id, v)).collect()
            } else {
                Vec::new()
            }
        })
    }

    /// Like [`Running::process`], with `automation(block_start, block_size)` giving each
    /// block's parameter events as (offset within the block, id, normalised value), in order.
    pub fn process_automated(
        &mut self,
        input: &[Vec<f32>],
        blocks: &[usize],
        automation: &mut dyn FnMut(u64, usize) -> Vec<(u32, ClapId, f64)>,
    ) -> Vec<Vec<f32>> {
        let len = input[0].len();
        let mut output = vec![vec![0.0f32; len]; self.channels];
        let mut input_ports = AudioPorts::with_capacity(self.channels, 1);
        let mut output_ports = AudioPorts::with_capacity(self.channels, 1);
        let processor = self.processor.as_mut().unwrap();
        let mut start = 0;
        let mut cycle = blocks.iter().cycle();
        while start < len {
            let size = (*cycle.next().unwrap()).min(len - start);
            let mut in_bufs: Vec<Vec<f32>> = input
                .iter()
                .map(|c| c[start..start + size].to_vec())
                .collect();
            let mut out_bufs: Vec<Vec<f32>> = vec![vec![0.0; size]; self.channels];
            let events: Vec<ParamValueEvent> = automation(self.time, size)
                .into_iter()
                .map(|(offset, id, v)| ParamValueEvent::new(offset, id, Pckn::match_all(), v))
                .collect();
            let input_events = InputEvents::from_buffer(&events);
            let mut out_events_buffer = EventBuffer::new();
            let mut output_events = OutputEvents::from_buffer(&mut out_events_buffer);
            let input_audio = input_ports.with_input_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(
                    in_bufs
                        .iter_mut()
                        .map(|b| InputChannel::variable(b.as_mut_slice())),
                ),
            }]);
            let mut output_audio = output_ports.with_output_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_output_only(
                    out_bufs.iter_mut().map(|b| b.as_mut_slice()),
                ),
            }]);
            processor
                .process(
                    &input_audio,
                    &mut output_audio,
                    &input_events,
                    &mut output_events,
                    Some(self.time),
                    None,
                )
                .expect("process");
            for event in out_events_buffer.iter() {
                if let Some(e) = event.as_event::<NoteOnEvent>() {
                    self.notes.push(Note {
                        time: self.time + e.header().time() as u64,
                        on: true,
                    });
                } else if let Some(e) = event.as_event::<NoteOffEvent>() {
                    self.notes.push(Note {
                        time: self.time + e.header().time() as u64,
                        on: false,
                    });
                }
            }
            for (o, b) in output.iter_mut().zip(&out_bufs) {
                o[start..start + size].copy_from_slice(b);
            }
            start += size;
            self.time += size as u64;
        }
        output
    }

    /// Stop processing and deactivate.
    pub fn stop(mut self, instance: &mut PluginInstance<TestHost>) {
        let stopped = self.processor.take().unwrap().stop_processing();
        instance.deactivate(stopped);
    }
}

/// A project sample (16 kHz) at `rate`.
pub fn speech(name: &str, rate: u32) -> Vec<f32> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let x = advox::audio::read_audio_16k_mono(&root.join("samples").join(name)).unwrap();
    advox::audio::resample(&x, 16_000, rate).unwrap()
}

/// A recording of `../shared/corpus/` (real speech; `folder/file.wav`) at `rate`.
pub fn corpus(name: &str, rate: u32) -> Vec<f32> {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let x = advox::audio::read_audio_16k_mono(&shared.join("corpus").join(name)).unwrap();
    advox::audio::resample(&x, 16_000, rate).unwrap()
}

/// Tell the plugin the host renders offline (CLAP render extension; takes effect at the next
/// activation).
pub fn render_offline(instance: &mut PluginInstance<TestHost>) {
    use clack_extensions::render::{PluginRender, RenderMode};
    let handle = instance.plugin_handle();
    let ext = handle.get_extension::<PluginRender>().expect("render");
    ext.set(&handle, RenderMode::Offline)
        .expect("offline render");
}

/// Normalised value of a plain value in a linear range.
pub fn normalised(plain: f64, min: f64, max: f64) -> f64 {
    (plain - min) / (max - min)
}
