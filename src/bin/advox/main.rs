//! `advox`: the command-line front end. Parses arguments, calls the core library, shows
//! progress and writes files; every algorithm lives in the library.

mod adv_train;
mod attack;
mod attack_args;
mod attack_blackbox;
mod attribute;
mod bench;
mod bench_cloak;
mod bench_compare;
mod bench_realtime;
mod bench_suite;
mod common;
mod defend;
mod detect;
mod distill;
mod eval;
mod held_out;
mod live;
#[cfg(feature = "audio-devices")]
mod live_devices;
mod live_model;
mod model_cmd;
mod plot;
mod transcribe;
mod transfer;
mod ultrasonic;
mod universal;
mod universal_cloak;

use clap::{Parser, Subcommand};

/// Adversarial attacks on speech recognisers (Whisper), and their detection and defence.
#[derive(Parser)]
#[command(name = "advox", version, about, long_about = None)]
struct Cli {
    /// Compute device: `cpu` (default) or `cuda` (needs a build with `--features cuda`).
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make an adversarial example against Whisper (FGSM, PGD, CW, DeepFool, JSMA, imperceptible).
    Attack(Box<attack::Args>),
    /// Which attack most likely made a recording (or none), from a classifier advox trains on
    /// its own examples; `attribute train` makes one.
    Attribute(attribute::Args),
    /// Transcribe audio files with Whisper (greedy or beam search, 30-s windows).
    Transcribe(transcribe::Args),
    /// Fetch, inspect and convert models.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Train a universal perturbation (additive or prefix-mute) on a set of utterances.
    Universal(universal::Args),
    /// Judge adversarial examples with another model or an external recogniser.
    Transfer(transfer::Args),
    /// Score files for adversarial perturbations, or calibrate the detectors on clean speech.
    Detect(detect::Args),
    /// Transcribe through a defence (purification, randomised smoothing, ensemble vote).
    Defend(defend::Args),
    /// Evaluate attacks × defences × detectors over a manifest (report.json + report.html).
    Eval(eval::Args),
    /// Plot a recording's spectrogram and masking threshold, and a perturbation against it.
    Plot(plot::Args),
    /// Benchmark transcription and one attack gradient step; prints a table or JSON.
    Bench(bench::Args),
    /// Cloak or Sentinel on a live stream (microphone → speakers or a file) or a WAV file.
    Live(live::Args),
    /// Emit a command on an ultrasonic carrier and simulate the microphone that demodulates it.
    Ultrasonic(ultrasonic::Args),
}

fn main() {
    common::tune_allocator();
    // A usage error is an error (exit 1), as every other: 2 is kept for a goal not met.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 1 } else { 0 })
    });
    let done = |r: anyhow::Result<()>| r.map(|()| common::Outcome::Done);
    let result = match cli.command {
        Command::Attack(args) => attack::run(*args, &cli.device),
        Command::Attribute(args) => done(attribute::run(args, &cli.device)),
        Command::Transcribe(args) => done(transcribe::run(args, &cli.device)),
        Command::Model(cmd) => done(model_cmd::run(cmd)),
        Command::Bench(args) => done(bench::run(args, &cli.device)),
        Command::Live(args) => done(live::run(args)),
        Command::Ultrasonic(args) => done(ultrasonic::run(args, &cli.device)),
        Command::Plot(args) => done(plot::run(args)),
        Command::Detect(args) => done(detect::run(args, &cli.device)),
        Command::Defend(args) => done(defend::run(args, &cli.device)),
        Command::Eval(args) => done(eval::run(args, &cli.device)),
        Command::Transfer(args) => done(transfer::run(args, &cli.device)),
        Command::Universal(args) => done(universal::run(args, &cli.device)),
    };
    // The exit codes: 0 done, 1 an error (usage errors too), 2 ran but its goal was not met.
    match result {
        Ok(common::Outcome::Done) => {}
        Ok(common::Outcome::GoalNotMet) => std::process::exit(2),
        Err(err) => {
            eprintln!("error: {}", common::error_text(&err));
            std::process::exit(1);
        }
    }
}
