//! A second-order attack: trust-region Newton–CG (Steihaug 1983; Nocedal & Wright, *Numerical
//! Optimization*, §7.1) on PGD's loss, with Hessian–vector products from finite differences
//! of the exact waveform gradient, `H·v ≈ (∇f(x + h·v) − ∇f(x)) / h` (a secant at the scale of
//! the step: [`FD_SCALE`]).
//!
//! Each iteration: the gradient at the current point under one of the objective's views
//! (they take turns, as PGD's steps do), then conjugate gradients on the quadratic model
//! `m(p) = gᵀp + ½·pᵀHp` inside the trust region `|p|₂ ≤ Δ` (at most `cg_iterations`
//! products; a direction of negative curvature, or one that leaves the region, is followed to
//! its edge), then one trial of `x + δ + p` projected onto the bounds. The ratio of the loss's
//! actual to the model's predicted decrease accepts the step (ρ > 0.05) and resizes Δ (¼ of
//! the step below ρ = ¼, doubled above ¾ when the step reached the edge). A rejected step is
//! retried on the same CG path cut at the smaller radius (Steihaug's iterates grow in norm,
//! so the path's crossing of a smaller sphere is the smaller region's solution): one more
//! loss, no more products. Gradients and products are taken at unquantised points (the
//! quantisation's rounding would drown the differences); decodes and verdicts at the 16-bit
//! example, as every attack's. The outcome's `steps` counts every gradient evaluation
//! (products and trials included), so it compares with PGD's steps as work.

use super::step::StepSpace;
use super::track::{Keep, LeadGate, Tracker};
use super::{quantized_sum_within, AttackOutcome, StepInfo};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Evaluated, Objective};
use crate::perturb::{BandLimiter, Constraints, Domain};
use crate::{Error, Result};
use std::sync::atomic::AtomicBool;

/// Settings of the Newton–CG attack.
#[derive(Debug, Clone)]
pub struct NewtonConfig {
    /// Most trust-region iterations.
    pub iterations: usize,
    /// Most Hessian–vector products (CG iterations) per iteration.
    pub cg_iterations: usize,
    /// First trust radius (L2 norm of the step, waveform units); `None`: a quarter of the
    /// L2 norm the bounds allow, else of the L∞ ball's, else `0.001·√n`.
    pub initial_radius: Option<f32>,
    /// Decode every this many iterations (where the goal's tokens lead, for a lead-gated goal).
    pub check_every: usize,
    /// Where the trust region is drawn (default the STFT domain, as PGD's steps).
    pub domain: Domain,
    /// Decoding of the success tests.
    pub decode: DecodeOptions,
    /// Bounds projected onto after every step.
    pub constraints: Constraints,
}

impl Default for NewtonConfig {
    fn default() -> Self {
        NewtonConfig {
            iterations: 50,
            cg_iterations: 6,
            initial_radius: None,
            check_every: 1,
            domain: Domain::default(),
            decode: DecodeOptions::default(),
            constraints: Constraints::default(),
        }
    }
}

/// The Newton–CG attack's outcome and its own counts.
#[derive(Debug, Clone)]
pub struct NewtonOutcome {
    /// The kept example and its verdict (`steps`: every gradient evaluation).
    pub attack: AttackOutcome,
    /// Trust-region iterations taken.
    pub iterations: usize,
    /// Hessian–vector products (each one gradient evaluation).
    pub hessian_products: usize,
    /// Trial steps rejected (actual decrease too small beside the predicted one).
    pub rejected: usize,
    /// The trust radius at the end (in the preconditioned step space); `None` when the attack
    /// ended before its first step.
    pub radius: Option<f32>,
}

/// Finite-difference scale of the products: a product with direction `w` probes the point
/// moved by `FD_SCALE · Δ · |w|` in waveform L2 norm (Δ the trust radius) — a secant at the
/// scale of the step (CG's directions carry the gradient's norm), far above f32's rounding of
/// the gradient. Not unit-consistent in `|w|`; the figures in the README were measured so.
const FD_SCALE: f32 = 0.05;
/// Accept a step whose actual decrease is at least this share of the predicted one.
const ETA: f32 = 0.05;
/// The preconditioner's floor, as a share of the gradient's root mean square.
const DAMPING: f32 = 0.1;
/// Retries of one iteration's step at smaller radii before moving on.
const MAX_RETRIES: usize = 3;

/// The truncated-CG path of one iteration: points `p_0 = 0, p_1, …` (norms increasing) with
/// `H·p_i`, as [`steihaug`] produced them.
struct CgPath {
    points: Vec<Vec<f32>>,
    products: Vec<Vec<f32>>,
}

impl CgPath {
    /// The step where the path first reaches radius `r` (its end if it never does), with its
    /// product with H (linear along each segment).
    fn at_radius(&self, r: f32) -> (Vec<f32>, Vec<f32>) {
        for i in 1..self.points.len() {
            let (a, b) = (&self.points[i - 1], &self.points[i]);
            if norm(b) >= r {
                let d: Vec<f32> = b.iter().zip(a).map(|(b, a)| b - a).collect();
                let tau = boundary_step(a, &d, r).clamp(0.0, 1.0);
                let (ha, hb) = (&self.products[i - 1], &self.products[i]);
                return (
                    a.iter().zip(&d).map(|(a, d)| a + tau * d).collect(),
                    ha.iter()
                        .zip(hb)
                        .map(|(ha, hb)| ha + tau * (hb - ha))
                        .collect(),
                );
            }
        }
        let last = self.points.len() - 1;
        (self.points[last].clone(), self.products[last].clone())
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum::<f64>() as f32
}

fn norm(a: &[f32]) -> f32 {
    crate::metrics::l2(a) as f32
}

/// The τ ≥ 0 with `|p + τ·d| = r` (for `|p| ≤ r`).
fn boundary_step(p: &[f32], d: &[f32], r: f32) -> f32 {
    let (a, b, c) = (
        dot(d, d) as f64,
        2.0 * dot(p, d) as f64,
        (dot(p, p) as f64) - (r as f64) * (r as f64),
    );
    if a <= 0.0 {
        return 0.0;
    }
    let disc = (b * b - 4.0 * a * c).max(0.0);
    ((-b + disc.sqrt()) / (2.0 * a)) as f32
}

/// Steihaug's truncated CG on `gᵀp + ½·pᵀHp` within `|p| ≤ radius`, with at most `max_iter`
/// products `hvp`; returns the path of iterates.
fn steihaug(
    g: &[f32],
    radius: f32,
    max_iter: usize,
    hvp: &mut dyn FnMut(&[f32]) -> Result<Vec<f32>>,
) -> Result<CgPath> {
    let n = g.len();
    let mut p = vec![0.0f32; n];
    let mut hp = vec![0.0f32; n];
    let mut path = CgPath {
        points: vec![p.clone()],
        products: vec![hp.clone()],
    };
    let mut r = g.to_vec();
    let mut d: Vec<f32> = g.iter().map(|v| -v).collect();
    let g_norm = norm(g);
    if g_norm == 0.0 {
        return Ok(path);
    }
    // Eisenstat–Walker-like forcing: a loose solve far from a stationary point.
    let tol = g_norm * 0.5f32.min(g_norm.sqrt());
    let mut rr = dot(&r, &r);
    for _ in 0..max_iter.max(1) {
        let hd = hvp(&d)?;
        let curvature = dot(&d, &hd);
        let alpha = if curvature > 0.0 {
            rr / curvature
        } else {
            f32::INFINITY
        };
        let to_edge = boundary_step(&p, &d, radius);
        let (step, done) = if alpha >= to_edge {
            (to_edge, true)
        } else {
            (alpha, false)
        };
        for ((pi, hpi), (di, hdi)) in p.iter_mut().zip(hp.iter_mut()).zip(d.iter().zip(&hd)) {
            *pi += step * di;
            *hpi += step * hdi;
        }
        path.points.push(p.clone());
        path.products.push(hp.clone());
        if done {
            break;
        }
        for (ri, hdi) in r.iter_mut().zip(&hd) {
            *ri += alpha * hdi;
        }
        let rr_new = dot(&r, &r);
        if rr_new.sqrt() <= tol {
            break;
        }
        let beta = rr_new / rr;
        rr = rr_new;
        for (di, ri) in d.iter_mut().zip(&r) {
            *di = -ri + beta * *di;
        }
    }
    Ok(path)
}

/// `x + δ` clipped to [-1, 1], unquantised: where gradients and products are taken.
fn point(x: &[f32], delta: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(delta)
        .map(|(a, d)| (a + d).clamp(-1.0, 1.0))
        .collect()
}

/// The variables the trust region is drawn in: `δ = W(S ⊙ u)`, with `W` the step space's map
/// to the waveform (the STFT domain's synthesis by default) and `S` a diagonal preconditioner,
/// RMSProp's inverse root mean square of the gradient in that space (damped, 1 at the mean), so
/// that the region is an ellipsoid shaped as PGD's Adam steps are.
struct Scaled {
    space: StepSpace,
    mean_square: Vec<f32>,
    scale: Vec<f32>,
    updates: i32,
}

impl Scaled {
    fn new(space: StepSpace) -> Self {
        Scaled {
            space,
            mean_square: Vec::new(),
            scale: Vec::new(),
            updates: 0,
        }
    }

    /// Take the gradient `g` (waveform) into the preconditioner, then return it in `u`.
    fn gradient(&mut self, g: &[f32]) -> Vec<f32> {
        const RHO: f32 = 0.9;
        let gp = self.space.to_params(g);
        if self.mean_square.len() != gp.len() {
            self.mean_square = vec![0.0; gp.len()];
        }
        self.updates += 1;
        let correction = 1.0 - RHO.powi(self.updates);
        for (m, gi) in self.mean_square.iter_mut().zip(&gp) {
            *m = RHO * *m + (1.0 - RHO) * gi * gi;
        }
        // Damped: relative to the mean square, so that a coordinate of average gradient gets
        // 1 and one of none at most 1/DAMPING (undamped, the coordinates without gradient take
        // over the region).
        let mean = (self.mean_square.iter().map(|m| *m as f64).sum::<f64>()
            / self.mean_square.len().max(1) as f64
            / correction as f64)
            .sqrt() as f32;
        let floor = DAMPING * mean.max(f32::MIN_POSITIVE);
        self.scale = self
            .mean_square
            .iter()
            .map(|m| mean / ((m / correction).sqrt() + floor))
            .collect();
        self.pull(&gp)
    }

    /// A waveform-space covector (gradient, product) in `u`: `S ⊙ Wᵀ(·)`, given `Wᵀ(·)`.
    fn pull(&self, params: &[f32]) -> Vec<f32> {
        params.iter().zip(&self.scale).map(|(a, s)| a * s).collect()
    }

    /// A step in `u` as a waveform step.
    fn wave(&self, u: &[f32]) -> Result<Vec<f32>> {
        let params: Vec<f32> = u.iter().zip(&self.scale).map(|(a, s)| a * s).collect();
        self.space.to_wave(&params)
    }
}

/// Run the attack on 16-kHz samples `x` (at most 30 s).
pub fn run_newton(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &NewtonConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<NewtonOutcome> {
    let mut track = Tracker::new(model, x, objective, &cfg.decode, Keep::LowestLoss)?;
    cfg.constraints.validate(x.len())?;
    if let Some(r) = cfg.initial_radius {
        if !(r.is_finite() && r > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "the trust radius must be a positive number, got {r}"
            )));
        }
    }
    let band = match cfg.constraints.band_hz {
        Some((lo, hi)) => Some(BandLimiter::new(lo, hi, crate::audio::SAMPLE_RATE)?),
        None => None,
    };
    let n = x.len();
    let mut scaled = Scaled::new(StepSpace::new(cfg.domain, n)?);
    let ball = cfg
        .constraints
        .max_l2(x)
        .map(|r| r as f32)
        .or_else(|| cfg.constraints.linf.map(|e| e * (n as f32).sqrt()));
    // The radius is kept in `u`; `wanted` is the first step's waveform norm, converted at the
    // first iteration by the map's gain along the first gradient.
    let wanted = cfg
        .initial_radius
        .or(ball.map(|b| 0.25 * b))
        .unwrap_or(0.001 * (n as f32).sqrt());
    let mut radius = f32::NAN;
    let views = track.view_count();
    let gated = track.lead_required();
    let mut gate = LeadGate::new(cfg.check_every.max(1));
    let iterations = cfg.iterations.max(1);
    let (mut hessian_products, mut rejected, mut taken) = (0usize, 0usize, 0usize);
    let mut delta = vec![0.0f32; n];
    // The evaluation at the current point under the view that scored it, when it can stand for
    // the next iteration's (one view: an accepted trial is the next point's gradient).
    let mut cached: Option<(usize, Evaluated)> = None;
    let evaluate = |front: &crate::mel::MelFrontEnd, prompt, wave: &candle_core::Tensor| {
        objective.evaluate_as(model, front, wave, prompt)
    };
    let mut min_radius = 0.0f32;
    for it in 1..=iterations {
        if track.stop_requested(cancel) {
            break;
        }
        taken = it;
        let view = (it - 1) % views;
        let here = point(x, &delta);
        let e = match cached.take() {
            Some((v, e)) if v == view => e,
            _ => track.probe_view(&here, view, evaluate)?,
        };
        let lead = track.note_lead(view, e.lead);
        let adv = quantized_sum_within(x, &delta, cfg.constraints.linf);
        let mut info = StepInfo {
            run: 0,
            step: it,
            steps: iterations,
            loss: e.loss,
            transcript: None,
        };
        let due = if gated {
            track.stand_by(&adv, e.loss, lead);
            gate.due(it, track.leads(lead))
        } else {
            it % cfg.check_every.max(1) == 0
        };
        if due {
            let transcript = track.transcribe(&adv)?;
            let success = if gated {
                track.judge(&adv, &transcript, lead)?
            } else {
                track.succeeds(&adv, &transcript)?
            };
            info.transcript = Some(transcript.clone());
            track.offer(adv, success, transcript, e.loss, e.loss);
            if success {
                on_step(&info);
                break;
            }
        }
        let g = scaled.gradient(&e.grad);
        let g_norm = norm(&g);
        if radius.is_nan() {
            let unit: Vec<f32> = g
                .iter()
                .map(|v| v / g_norm.max(f32::MIN_POSITIVE))
                .collect();
            let gain = norm(&scaled.wave(&unit)?).max(f32::MIN_POSITIVE);
            radius = wanted / gain;
            min_radius = 1e-4 * radius;
        }
        // The quadratic model's path in `u`, products at this point under this view: the
        // waveform product by a finite difference (see FD_SCALE), pulled back into `u`.
        let fd_wave = FD_SCALE * radius;
        let scaled_ref = &scaled;
        let mut hvp = |w: &[f32]| -> Result<Vec<f32>> {
            let v = scaled_ref.wave(w)?;
            let len = norm(&v);
            if len == 0.0 {
                return Ok(vec![0.0; w.len()]);
            }
            let h = fd_wave * norm(w) / len;
            let probe: Vec<f32> = here.iter().zip(&v).map(|(a, b)| a + h * b).collect();
            let gp = track.probe_view(&probe, view, evaluate)?.grad;
            hessian_products += 1;
            let hv: Vec<f32> = gp.iter().zip(&e.grad).map(|(a, b)| (a - b) / h).collect();
            Ok(scaled_ref.pull(&scaled_ref.space.to_params(&hv)))
        };
        let path = steihaug(&g, radius, cfg.cg_iterations, &mut hvp)?;
        for _ in 0..=MAX_RETRIES {
            let (u, hu) = path.at_radius(radius);
            let step = norm(&u);
            let predicted = -(dot(&g, &u) + 0.5 * dot(&u, &hu));
            if step == 0.0 {
                // No gradient under this view (a hinge at zero): nothing to do here.
                break;
            }
            if predicted.is_nan() || predicted <= 0.0 {
                radius *= 0.25;
                break;
            }
            let p = scaled.wave(&u)?;
            let mut trial: Vec<f32> = delta.iter().zip(&p).map(|(d, s)| d + s).collect();
            cfg.constraints.project(&mut trial, x, band.as_ref())?;
            let t = track.probe_view(&point(x, &trial), view, evaluate)?;
            let rho = (e.loss - t.loss) / predicted;
            if rho < 0.25 {
                radius = 0.25 * step;
            } else if rho > 0.75 && step >= 0.99 * radius {
                radius *= 2.0;
            }
            if rho > ETA {
                delta = trial;
                if views == 1 {
                    cached = Some((view, t));
                }
                break;
            }
            rejected += 1;
            if radius < min_radius {
                break;
            }
        }
        if it == iterations {
            let adv = quantized_sum_within(x, &delta, cfg.constraints.linf);
            let transcript = track.transcribe(&adv)?;
            let success = track.succeeds(&adv, &transcript)?;
            info.transcript = Some(transcript.clone());
            let loss = e.loss;
            track.offer(adv, success, transcript, loss, loss);
        }
        on_step(&info);
        if radius < min_radius {
            break;
        }
    }
    Ok(NewtonOutcome {
        attack: track.finish()?,
        iterations: taken,
        hessian_products,
        rejected,
        radius: (!radius.is_nan()).then_some(radius),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quadratic `½·pᵀAp + gᵀp` with diagonal A: Steihaug's path must solve the Newton
    /// equation to the forcing term when the region is large, and stop on the edge when it is
    /// not.
    #[test]
    fn steihaug_reaches_the_newton_point_or_the_edge() {
        let a = [4.0f32, 1.0, 0.25];
        let g = [1.0f32, -2.0, 0.5];
        let mut hvp =
            |v: &[f32]| -> Result<Vec<f32>> { Ok(v.iter().zip(&a).map(|(v, a)| v * a).collect()) };
        let path = steihaug(&g, 100.0, 10, &mut hvp).unwrap();
        let (p, _) = path.at_radius(100.0);
        // Inside a large region CG runs until the forcing term: the Newton equation's residual
        // `g + A·p` at most half of `|g|` (here `|g| > 1`).
        let residual: Vec<f32> = p
            .iter()
            .zip(&g)
            .zip(&a)
            .map(|((pi, gi), ai)| gi + ai * pi)
            .collect();
        assert!(norm(&residual) <= 0.5 * norm(&g) + 1e-5, "{p:?}");
        assert!(norm(&p) < 100.0);
        let (p, hp) = path.at_radius(0.5);
        assert!((norm(&p) - 0.5).abs() < 1e-4, "{p:?}");
        // The product stays H·p along the path.
        for ((h, pi), ai) in hp.iter().zip(&p).zip(&a) {
            assert!((h - pi * ai).abs() < 1e-4);
        }
        // The model decreases along the cut step.
        assert!(dot(&g, &p) + 0.5 * dot(&p, &hp) < 0.0);
    }

    #[test]
    fn negative_curvature_is_followed_to_the_edge() {
        let a = [-1.0f32, 2.0];
        let g = [0.1f32, 0.0];
        let mut hvp =
            |v: &[f32]| -> Result<Vec<f32>> { Ok(v.iter().zip(&a).map(|(v, a)| v * a).collect()) };
        let path = steihaug(&g, 3.0, 10, &mut hvp).unwrap();
        let (p, _) = path.at_radius(3.0);
        assert!((norm(&p) - 3.0).abs() < 1e-4 && p[0] < 0.0, "{p:?}");
    }

    #[test]
    fn the_boundary_step_lands_on_the_sphere() {
        let p = [0.3f32, 0.4];
        let d = [1.0f32, 1.0];
        let tau = boundary_step(&p, &d, 2.0);
        let q = [p[0] + tau * d[0], p[1] + tau * d[1]];
        assert!((norm(&q) - 2.0).abs() < 1e-5 && tau > 0.0);
    }
}
