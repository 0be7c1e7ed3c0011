//! The whole per-block processing of each plugin, for any channel count, shared by the plugins
//! and `advox live` so both produce the same samples: [`CloakProcessor`] (one
//! [`CloakChannel`] per channel, seeded by channel) and [`SentinelProcessor`] (mono mix →
//! [`SentinelAnalyzer`], detection transitions, gate, model-check feed).

use super::band_meter::BandMeter;
use super::cloak::{CloakChannel, CloakSettings};
use super::monitor::{MonitorFeed, MonitorState, MonitorStatus};
use super::sentinel::{SentinelAnalyzer, SentinelSettings};
use super::{frame_size_for, normal_or_zero};
use crate::{Error, Result};
use std::sync::Arc;

/// Seed of channel `c`'s noise generator.
pub fn channel_seed(c: usize) -> u64 {
    0x5eed + c as u64
}

/// Cloak over every channel of a stream.
pub struct CloakProcessor {
    channels: Vec<CloakChannel>,
}

impl CloakProcessor {
    /// `channels` channels at `sample_rate`.
    pub fn new(sample_rate: f32, channels: usize) -> Result<Self> {
        if channels == 0 {
            return Err(Error::InvalidArgument(
                "Cloak needs at least one channel".into(),
            ));
        }
        let n = frame_size_for(sample_rate);
        let channels = (0..channels)
            .map(|c| CloakChannel::new(sample_rate, n, channel_seed(c)))
            .collect::<Result<_>>()?;
        Ok(CloakProcessor { channels })
    }

    /// Publish the first channel's band levels to `meter` (see [`super::band_meter`]).
    pub fn set_meter(&mut self, meter: Option<Arc<BandMeter>>) {
        self.channels[0].set_meter(meter);
    }

    /// Latency in samples.
    pub fn latency(&self) -> usize {
        self.channels[0].latency()
    }

    /// Count the mute mode's windows in input time (the default: hosts that compensate the
    /// latency) or output time (a live stream recorded as it comes out).
    pub fn set_mute_clock(&mut self, clock: super::cloak::MuteClock) {
        self.channels
            .iter_mut()
            .for_each(|c| c.set_mute_clock(clock));
    }

    /// Forget all history.
    pub fn reset(&mut self) {
        self.channels.iter_mut().for_each(CloakChannel::reset);
    }

    /// Process planar channels in place (extra channels beyond those configured pass through),
    /// with denormals flushed to zero for the call ([`super::denormals`]).
    pub fn process(
        &mut self,
        io: &mut [&mut [f32]],
        settings: &CloakSettings,
        source: Option<&[f32]>,
    ) {
        let _flush = super::denormals::FlushDenormals::new();
        for (channel, samples) in self.channels.iter_mut().zip(io.iter_mut()) {
            channel.process(samples, settings, source);
        }
    }
}

/// A change of Sentinel's detection state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Sample index within the block.
    pub offset: usize,
    /// On (true) or off.
    pub on: bool,
    /// The frame score at the change.
    pub score: f32,
}

/// Sentinel over a stream: analysis of the mono mix, detection on/off, gate, model-check feed.
pub struct SentinelProcessor {
    analyzer: SentinelAnalyzer,
    feed: Option<MonitorFeed>,
    monitor: Option<Arc<MonitorState>>,
    detected: bool,
}

impl SentinelProcessor {
    /// Analysis at `sample_rate`; `monitor` is the model check (feed and state), if any.
    pub fn new(
        sample_rate: f32,
        monitor: Option<(MonitorFeed, Arc<MonitorState>)>,
    ) -> Result<Self> {
        let analyzer = SentinelAnalyzer::new(sample_rate, frame_size_for(sample_rate))?;
        let (feed, monitor) = match monitor {
            Some((f, m)) => (Some(f), Some(m)),
            None => (None, None),
        };
        Ok(SentinelProcessor {
            analyzer,
            feed,
            monitor,
            detected: false,
        })
    }

    /// Forget all history.
    pub fn reset(&mut self) {
        self.analyzer.reset();
        self.detected = false;
    }

    /// The smoothed frame score.
    pub fn score(&self) -> f32 {
        self.analyzer.score()
    }

    /// The model check's score (0 when it is off, loading or failed).
    pub fn model_score(&self, model_check: bool) -> f32 {
        match &self.monitor {
            Some(m) if model_check && m.status() == MonitorStatus::Ready => m.score(),
            _ => 0.0,
        }
    }

    /// The model check's state, if one runs.
    pub fn monitor(&self) -> Option<&Arc<MonitorState>> {
        self.monitor.as_ref()
    }

    /// Whether a detection is on.
    pub fn detected(&self) -> bool {
        self.detected
    }

    /// Analyse planar channels and apply the gate in place; `on_change` sees every detection
    /// change. Non-finite samples come out as silence. Never allocates. Denormals are flushed to
    /// zero for the call ([`super::denormals`]).
    pub fn process(
        &mut self,
        io: &mut [&mut [f32]],
        settings: &SentinelSettings,
        model_check: bool,
        on_change: &mut dyn FnMut(Detection),
    ) {
        let _flush = super::denormals::FlushDenormals::new();
        if let Some(m) = &self.monitor {
            m.set_enabled(model_check);
        }
        let model_score = self.model_score(model_check);
        let channels = io.len();
        let samples = io.first().map_or(0, |s| s.len());
        for i in 0..samples {
            let mono =
                io.iter().map(|s| normal_or_zero(s[i])).sum::<f32>() / channels.max(1) as f32;
            if let (true, Some(feed)) = (model_check, self.feed.as_mut()) {
                feed.push(mono);
            }
            if self.analyzer.push(mono, settings) {
                let score = self.analyzer.score();
                let now = score > settings.threshold || model_score > settings.threshold;
                if now != self.detected {
                    self.detected = now;
                    on_change(Detection {
                        offset: i,
                        on: now,
                        score,
                    });
                }
            }
            let mute = settings.gate && self.detected;
            for s in io.iter_mut() {
                s[i] = if mute { 0.0 } else { normal_or_zero(s[i]) };
            }
        }
    }
}

impl Drop for SentinelProcessor {
    fn drop(&mut self) {
        if let Some(m) = &self.monitor {
            m.stop();
        }
    }
}
