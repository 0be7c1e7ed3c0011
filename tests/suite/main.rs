//! The integration tests, one module per area, in one test binary: the real model is loaded
//! once, and the two test threads stay busy across areas instead of idling at the end of each
//! binary (about a minute of the suite; the build took as long as with one binary per area, one
//! link instead of nineteen but one crate compiled instead of nineteen in parallel). Run one area
//! with `cargo test --test suite attack::`.
//!
//! The tests that count allocations (`masking_alloc.rs`, `stream_alloc.rs`) stay binaries of their
//! own: they install a global allocator.

#[path = "../common/mod.rs"]
mod common;

mod attack;
mod attribute;
mod audio_io;
mod blackbox;
mod cli;
mod cloak_bench;
mod decode;
mod defend;
mod detect;
mod dsp;
mod imperceptible;
mod live;
mod loaders;
mod masking;
mod model_reference;
mod perturb;
mod recognizer;
mod robustness;
mod slurm;
mod small_model;
mod stream;
mod universal;
mod verify;
