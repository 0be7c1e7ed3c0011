//! Cloak's model mode on a stream: [`crate::attack::cloak_model`] behind a worker thread.
//!
//! The audio thread pushes every block's mono mix into a lock-free ring and plays the input
//! delayed by a fixed latency plus the perturbation the worker sent back for those very
//! samples. The worker cuts the stream into chunks (at most 30 s, Whisper's window), attacks
//! each chunk's 16-kHz version under its masking threshold, and sends the chunk's perturbation
//! back at the host's rate. The latency is two chunks: one to collect, one to compute.
//!
//! - **Live** (`offline = false`), the audio thread never waits: a chunk's attack is stopped
//!   shortly before its first sample is due (what it found by then is played), and a chunk
//!   whose deadline passed before its attack could start is played clean (counted as missed).
//!   On 2 CPU cores a 30-s chunk gets about 40 model steps this way; many recordings move in
//!   5–15 (`advox bench --cloak --with-model` measures it), so live is best effort.
//! - **Offline** (a host's offline render, `offline = true`), the audio thread waits for the
//!   worker, so every chunk gets its whole attack, as `advox live --mode model` renders it.
//!
//! Nothing on the audio thread allocates or locks; waiting (offline only) is a sleep.

use crate::attack::cloak_model::ModelCloakConfig;
use crate::attack::windowed::{attack_windows, WindowPlan};
use crate::audio::{resample, SAMPLE_RATE};
use crate::mel::N_SAMPLES;
use crate::model::LoadedModel;
use crate::{Error, Result};
use std::borrow::Borrow;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ModelCloakStatus {
    /// Loading the model (chunks meanwhile play clean).
    Loading = 0,
    /// Attacking chunks.
    Ready = 1,
    /// The model could not be loaded ([`ModelCloakState::error`] says why): the input plays
    /// clean, delayed.
    Failed = 2,
    /// The worker has exited.
    Stopped = 3,
}

/// What the worker and the audio thread publish (lock-free except [`ModelCloakState::error`]).
#[derive(Debug, Default)]
pub struct ModelCloakState {
    status: AtomicU8,
    /// Chunks the worker finished (attacked, or missed).
    chunks: AtomicU64,
    /// Chunks whose attack met its goal.
    moved: AtomicU64,
    /// Chunks played clean because their deadline passed before their attack could start.
    missed: AtomicU64,
    /// Samples the audio thread has pushed (its clock).
    input_time: AtomicU64,
    /// Whether the audio thread is in an offline render (it waits for the worker).
    offline: AtomicBool,
    /// The feed overflowed: the worker's clock no longer matches; no perturbation is played.
    desynced: AtomicBool,
    stop: AtomicBool,
    /// The margin (dB, f32 bits) the next chunk's attack uses; 0 dB until set.
    margin_bits: AtomicU32,
    error: Mutex<Option<String>>,
}

impl ModelCloakState {
    /// Set the margin under the masking threshold that chunks started from now on use.
    pub fn set_margin_db(&self, margin_db: f32) {
        if margin_db.is_finite() {
            self.margin_bits
                .store(margin_db.to_bits(), Ordering::Relaxed);
        }
    }

    fn margin_db(&self) -> f32 {
        f32::from_bits(self.margin_bits.load(Ordering::Relaxed))
    }

    /// The worker's status.
    pub fn status(&self) -> ModelCloakStatus {
        match self.status.load(Ordering::Relaxed) {
            0 => ModelCloakStatus::Loading,
            1 => ModelCloakStatus::Ready,
            2 => ModelCloakStatus::Failed,
            _ => ModelCloakStatus::Stopped,
        }
    }

    /// Chunks finished, chunks whose attack met its goal, chunks missed.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.chunks.load(Ordering::Relaxed),
            self.moved.load(Ordering::Relaxed),
            self.missed.load(Ordering::Relaxed),
        )
    }

    /// Whether the feed overflowed (the perturbation is then off until the stream restarts).
    pub fn desynced(&self) -> bool {
        self.desynced.load(Ordering::Relaxed)
    }

    /// Why the model could not be loaded (not for the audio thread: locks).
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    /// Ask the worker to exit.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn fail(&self, e: &Error) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(e.to_string());
        }
        self.status
            .store(ModelCloakStatus::Failed as u8, Ordering::Relaxed);
    }

    fn worker_gone(&self) -> bool {
        matches!(
            self.status(),
            ModelCloakStatus::Failed | ModelCloakStatus::Stopped
        )
    }
}

/// Settings of the stream.
#[derive(Debug, Clone)]
pub struct ModelStreamConfig {
    /// The host's rate (Hz).
    pub sample_rate: f32,
    /// Seconds per chunk (at most 30; the latency is twice this).
    pub chunk_seconds: f32,
    /// The attack each chunk gets (its `window` is ignored: a chunk is one window).
    pub cloak: ModelCloakConfig,
}

impl Default for ModelStreamConfig {
    fn default() -> Self {
        ModelStreamConfig {
            sample_rate: 48_000.0,
            chunk_seconds: 30.0,
            cloak: ModelCloakConfig::default(),
        }
    }
}

/// How long an offline render waits for one chunk before giving up on its perturbation.
const OFFLINE_PATIENCE: Duration = Duration::from_secs(1_800);
/// A live chunk's attack stops this long before its first sample is due.
const LIVE_GUARD_SECONDS: f32 = 0.5;

/// The audio thread's end.
pub struct ModelCloakStream {
    feed: rtrb::Producer<f32>,
    back: rtrb::Consumer<f32>,
    state: Arc<ModelCloakState>,
    latency: usize,
    /// Dry delay lines, one per channel (ring indexed by `time % latency`).
    dry: Vec<Vec<f32>>,
    /// Input samples taken so far (never reset: the worker counts the same samples).
    time: u64,
    /// Input time of the next perturbation sample in `back`.
    next_delta: u64,
    /// Output is silent until this input time (after a reset, the delay line is empty).
    mute_until: u64,
}

impl ModelCloakStream {
    /// Samples between input and output.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<ModelCloakState> {
        &self.state
    }

    /// Forget the audio held (a host's transport jump): the output is silent for one latency,
    /// then the new input plays with its own perturbation.
    pub fn reset(&mut self) {
        for line in &mut self.dry {
            line.fill(0.0);
        }
        self.mute_until = self.time + self.latency as u64;
    }

    /// Process one block in place (planar channels of equal length; at most as many as the
    /// stream was made for). `offline`: the host renders offline, so wait for the worker.
    /// `depth` scales the perturbation (0: the input delayed, bit for bit, without waiting).
    pub fn process(&mut self, io: &mut [&mut [f32]], offline: bool, depth: f32) {
        let frames = io.first().map_or(0, |c| c.len());
        let channels = io.len().min(self.dry.len());
        if frames == 0 || channels == 0 {
            return;
        }
        self.state.offline.store(offline, Ordering::Relaxed);
        let scale = 1.0 / channels as f32;
        for i in 0..frames {
            let mix: f32 = io[..channels]
                .iter()
                .map(|c| super::normal_or_zero(c[i]))
                .sum();
            if self.feed.push(mix * scale).is_err() {
                self.state.desynced.store(true, Ordering::Relaxed);
            }
        }
        self.state
            .input_time
            .store(self.time + frames as u64, Ordering::Relaxed);
        for i in 0..frames {
            let t = self.time + i as u64;
            let slot = (t % self.latency as u64) as usize;
            let delta = match t.checked_sub(self.latency as u64) {
                Some(tau) => depth * self.delta_at(tau, offline && depth > 0.0),
                None => 0.0,
            };
            let muted = t < self.mute_until;
            for (line, channel) in self.dry.iter_mut().zip(io[..channels].iter_mut()) {
                let dry = line[slot];
                line[slot] = super::normal_or_zero(channel[i]);
                channel[i] = if muted { 0.0 } else { dry + delta };
            }
        }
        self.time += frames as u64;
    }

    /// The perturbation of input sample `tau` (0 when it is late, or the worker is gone).
    fn delta_at(&mut self, tau: u64, offline: bool) -> f32 {
        let mut waited: Option<Instant> = None;
        loop {
            while self.next_delta < tau {
                match self.back.pop() {
                    Ok(_) => self.next_delta += 1,
                    Err(_) => break,
                }
            }
            if self.next_delta == tau {
                if let Ok(d) = self.back.pop() {
                    self.next_delta += 1;
                    return if self.state.desynced() { 0.0 } else { d };
                }
            }
            if self.next_delta > tau || !offline || self.state.desynced() {
                return 0.0;
            }
            if self.state.worker_gone() && self.back.is_empty() {
                return 0.0;
            }
            let since = *waited.get_or_insert_with(Instant::now);
            if since.elapsed() > OFFLINE_PATIENCE {
                return 0.0;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ModelCloakStream {
    fn drop(&mut self) {
        // The worker stops its attack at the next step instead of finishing it for nobody.
        self.state.stop();
    }
}

/// Start the worker for a stream of `channels` channels: `load` runs on it, unless the worker
/// is stopped first; it may hand over a model of its own or a shared one (`Arc<LoadedModel>`).
/// Returns the audio thread's end and the worker's thread.
pub fn spawn_model_cloak<M: Borrow<LoadedModel> + 'static>(
    config: ModelStreamConfig,
    channels: usize,
    load: impl FnOnce() -> Result<M> + Send + 'static,
) -> Result<(ModelCloakStream, JoinHandle<()>)> {
    let rate = config.sample_rate;
    let valid = rate.is_finite()
        && rate >= 8_000.0
        && config.chunk_seconds * SAMPLE_RATE as f32 >= 1.0
        && config.chunk_seconds <= N_SAMPLES as f32 / SAMPLE_RATE as f32
        && channels > 0;
    if !valid {
        return Err(Error::InvalidArgument(format!(
            "Cloak's model mode needs a rate of at least 8 kHz, chunks of up to 30 s and a \
             channel, got {rate} Hz, {} s, {channels} channels",
            config.chunk_seconds
        )));
    }
    config.cloak.validate()?;
    let chunk = (config.chunk_seconds * rate).round() as usize;
    let latency = 2 * chunk;
    // The feed holds what arrives while the model loads or a step runs; the way back one
    // latency and a chunk.
    let (feed, inbox) = rtrb::RingBuffer::new(latency + (20.0 * rate) as usize);
    let (outbox, back) = rtrb::RingBuffer::new(latency + chunk);
    let state = Arc::new(ModelCloakState::default());
    state.set_margin_db(config.cloak.margin_db);
    let shared = state.clone();
    let handle = std::thread::Builder::new()
        .name("advox-cloak-model".into())
        .spawn(move || {
            let worker = Worker {
                rate: rate.round() as u32,
                chunk,
                latency,
                cloak: config.cloak,
                inbox,
                outbox,
                pending: Vec::with_capacity(2 * chunk),
                state: shared,
            };
            worker.run(load)
        })
        .map_err(|e| Error::Internal(format!("Cloak model thread: {e}")))?;
    Ok((
        ModelCloakStream {
            feed,
            back,
            state,
            latency,
            dry: vec![vec![0.0; latency]; channels],
            time: 0,
            next_delta: 0,
            mute_until: 0,
        },
        handle,
    ))
}

struct Worker {
    rate: u32,
    chunk: usize,
    latency: usize,
    cloak: ModelCloakConfig,
    inbox: rtrb::Consumer<f32>,
    outbox: rtrb::Producer<f32>,
    /// Input taken from the feed and not yet attacked.
    pending: Vec<f32>,
    state: Arc<ModelCloakState>,
}

/// Move everything in `inbox` to `pending`.
fn drain(inbox: &mut rtrb::Consumer<f32>, pending: &mut Vec<f32>) {
    let n = inbox.slots();
    if let Ok(chunk) = inbox.read_chunk(n) {
        pending.extend(chunk);
    }
}

impl Worker {
    fn run<M: Borrow<LoadedModel>>(mut self, load: impl FnOnce() -> Result<M>) {
        if self.state.stop.load(Ordering::Relaxed) {
            // Stopped before it began (a host that restarts at once): no model to load.
            self.state
                .status
                .store(ModelCloakStatus::Stopped as u8, Ordering::Relaxed);
            return;
        }
        let model = match load() {
            Ok(m) => {
                self.state
                    .status
                    .store(ModelCloakStatus::Ready as u8, Ordering::Relaxed);
                Some(m)
            }
            Err(e) => {
                self.state.fail(&e);
                None
            }
        };
        let mut index = 0u64;
        while !self.state.stop.load(Ordering::Relaxed) {
            drain(&mut self.inbox, &mut self.pending);
            if self.pending.len() < self.chunk {
                if self.inbox.is_abandoned() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let input: Vec<f32> = self.pending.drain(..self.chunk).collect();
            let start = index * self.chunk as u64;
            let delta = match &model {
                Some(model) => self.attack(model.borrow(), &input, start),
                None => vec![0.0; self.chunk],
            };
            if !self.send(&delta) {
                break;
            }
            self.state.chunks.fetch_add(1, Ordering::Relaxed);
            index += 1;
        }
        if !self.state.worker_gone() {
            self.state
                .status
                .store(ModelCloakStatus::Stopped as u8, Ordering::Relaxed);
        }
    }

    /// The input time by which a live chunk starting at `start` must be sent.
    fn deadline(&self, start: u64) -> u64 {
        let guard = (LIVE_GUARD_SECONDS * self.rate as f32) as u64;
        (start + self.latency as u64).saturating_sub(guard)
    }

    fn late(&self, start: u64) -> bool {
        !self.state.offline.load(Ordering::Relaxed)
            && self.state.input_time.load(Ordering::Relaxed) >= self.deadline(start)
    }

    /// The perturbation of one chunk at the host's rate (zeros where nothing could be done).
    fn attack(&mut self, model: &LoadedModel, input: &[f32], start: u64) -> Vec<f32> {
        let silent = || vec![0.0; self.chunk];
        if self.late(start) {
            self.state.missed.fetch_add(1, Ordering::Relaxed);
            return silent();
        }
        let Ok(x) = resample(input, self.rate, SAMPLE_RATE) else {
            return silent();
        };
        let cancel = AtomicBool::new(false);
        let (state, deadline) = (self.state.clone(), self.deadline(start));
        let (inbox, pending) = (&mut self.inbox, &mut self.pending);
        let cloak = ModelCloakConfig {
            margin_db: self.state.margin_db(),
            ..self.cloak.clone()
        };
        let plan = WindowPlan {
            window: N_SAMPLES,
            ..cloak.plan()
        };
        let result = attack_windows(model, &x, &plan, &cancel, &mut |_| {}, &mut |_| {
            // Keep the feed flowing while a step runs, and stop at a live deadline.
            drain(inbox, pending);
            let live = !state.offline.load(Ordering::Relaxed);
            if state.stop.load(Ordering::Relaxed)
                || (live && state.input_time.load(Ordering::Relaxed) >= deadline)
            {
                cancel.store(true, Ordering::Relaxed);
            }
        });
        let Ok(attack) = result else {
            return silent();
        };
        if attack.succeeded() > 0 {
            self.state.moved.fetch_add(1, Ordering::Relaxed);
        }
        match resample(&attack.perturbation, SAMPLE_RATE, self.rate) {
            Ok(mut up) => {
                up.resize(self.chunk, 0.0);
                up
            }
            Err(_) => silent(),
        }
    }

    /// Send a chunk's perturbation (waiting for room); false when the stream is gone.
    fn send(&mut self, delta: &[f32]) -> bool {
        let mut sent = 0;
        while sent < delta.len() {
            if self.state.stop.load(Ordering::Relaxed) || self.outbox.is_abandoned() {
                return false;
            }
            let room = self.outbox.slots().min(delta.len() - sent);
            if room == 0 {
                drain(&mut self.inbox, &mut self.pending);
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            if let Ok(w) = self.outbox.write_chunk_uninit(room) {
                let _ = w.fill_from_iter(delta[sent..sent + room].iter().copied());
            }
            sent += room;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_model() -> Result<LoadedModel> {
        Err(Error::InvalidArgument("no model in this test".into()))
    }

    #[test]
    fn without_a_model_the_input_plays_delayed_and_offline_does_not_hang() {
        let config = ModelStreamConfig {
            sample_rate: 8_000.0,
            chunk_seconds: 0.05,
            ..Default::default()
        };
        let (mut stream, worker) = spawn_model_cloak(config, 2, no_model).unwrap();
        assert_eq!(stream.latency(), 800);
        let x: Vec<f32> = (0..3_000)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let (mut l, mut r) = (x.clone(), x.iter().map(|v| -v).collect::<Vec<f32>>());
        for (a, b) in l.chunks_mut(100).zip(r.chunks_mut(100)) {
            stream.process(&mut [a, b], true, 1.0);
        }
        assert_eq!(&l[800..], &x[..2_200]);
        assert!(l[..800].iter().all(|&v| v == 0.0));
        assert_eq!(r[1_000], -x[200]);
        assert_eq!(stream.state().status(), ModelCloakStatus::Failed);
        assert!(stream.state().error().unwrap().contains("no model"));
        // A reset empties the delay line: silence for one latency, then the new input.
        stream.reset();
        let mut again = x[..1_000].to_vec();
        stream.process(&mut [&mut again], false, 1.0);
        assert!(again[..800].iter().all(|&v| v == 0.0));
        assert_eq!(&again[800..], &x[..200]);
        drop(stream);
        worker.join().unwrap();
    }

    #[test]
    fn bad_settings_are_refused() {
        for (rate, seconds, channels) in
            [(4_000.0, 1.0, 1), (48_000.0, 31.0, 1), (48_000.0, 1.0, 0)]
        {
            let config = ModelStreamConfig {
                sample_rate: rate,
                chunk_seconds: seconds,
                ..Default::default()
            };
            assert!(spawn_model_cloak(config, channels, no_model).is_err());
        }
    }
}
