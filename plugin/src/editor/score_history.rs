//! A scrolling history of scores for the Sentinel editor, sampled on the GUI thread at a fixed
//! rate however often the window repaints.

use std::collections::VecDeque;

/// The last `capacity` samples, taken every `interval` seconds.
#[derive(Debug, Clone)]
pub struct ScoreHistory {
    interval: f64,
    capacity: usize,
    /// (frame score, model-check score, detected).
    samples: VecDeque<(f32, f32, bool)>,
    /// Time of the next sample (seconds on the caller's clock).
    next: Option<f64>,
}

impl ScoreHistory {
    /// `seconds` of history at `rate` samples per second.
    pub fn new(seconds: f64, rate: f64) -> Self {
        let capacity = (seconds * rate).ceil().max(2.0) as usize;
        ScoreHistory {
            interval: 1.0 / rate,
            capacity,
            samples: VecDeque::with_capacity(capacity),
            next: None,
        }
    }

    /// Record the current values at time `now` (seconds): as many samples as intervals passed
    /// since the last call (at most a full history), so the time axis stays true when repaints
    /// are late.
    pub fn update(&mut self, now: f64, score: f32, model_score: f32, detected: bool) {
        let next = *self.next.get_or_insert(now);
        if now < next {
            return;
        }
        let due = (((now - next) / self.interval).floor() as usize + 1).min(self.capacity);
        for _ in 0..due {
            if self.samples.len() == self.capacity {
                self.samples.pop_front();
            }
            self.samples.push_back((score, model_score, detected));
        }
        self.next = Some(next + due as f64 * self.interval);
        if now - self.next.unwrap_or(now) > self.interval {
            // Far behind (the window was closed): restart the clock.
            self.next = Some(now + self.interval);
        }
    }

    /// Samples, oldest first.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = &(f32, f32, bool)> {
        self.samples.iter()
    }

    /// How many samples a full history holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Seconds a full history covers.
    pub fn seconds(&self) -> f64 {
        self.capacity as f64 * self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_at_the_rate_and_scrolls() {
        let mut h = ScoreHistory::new(1.0, 10.0);
        assert_eq!(h.capacity(), 10);
        h.update(0.0, 0.1, 0.0, false);
        h.update(0.05, 0.2, 0.0, false); // too early
        assert_eq!(h.samples().len(), 1);
        h.update(0.1, 0.3, 0.0, false);
        h.update(0.35, 0.4, 0.5, true); // 0.2 and 0.3 were due: two samples
        let v: Vec<f32> = h.samples().map(|s| s.0).collect();
        assert_eq!(v, vec![0.1, 0.3, 0.4, 0.4]);
        for i in 0..30 {
            h.update(0.4 + i as f64 * 0.1, 0.9, 0.0, false);
        }
        assert_eq!(h.samples().len(), 10);
        assert!(h.samples().all(|s| s.0 == 0.9));
        // A long gap fills at most one history and keeps going.
        h.update(100.0, 0.5, 0.0, false);
        assert_eq!(h.samples().len(), 10);
        h.update(100.25, 0.6, 0.0, false);
        assert_eq!(h.samples().last().map(|s| s.0), Some(0.6));
    }
}
