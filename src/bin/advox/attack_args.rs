//! The arguments of `advox attack` as the command line gives them, and their translation
//! into the library's [`AttackOptions`] (what was set, nothing else: the library fills in its
//! defaults and refuses an option that does not apply).

use crate::common;
use advox::attack::plan::AttackOptions;
use advox::attack::{AttackKind, Rule, Schedule};
use advox::perturb::Domain;
use advox::verify::Verifier;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use std::path::PathBuf;

/// The independent recognisers of `--verify`.
#[derive(Clone, Debug)]
pub struct Verifiers(pub Vec<Verifier>);

/// `--verify faster-whisper,transformers,pocketsphinx,cmd:...`.
pub(crate) fn parse_verifiers(s: &str) -> Result<Verifiers, String> {
    Verifier::parse_list(s)
        .map(Verifiers)
        .map_err(|e| e.to_string())
}

/// `--attack` / `--blackbox`: the library's attack names of that kind.
pub(crate) fn kind_parser(black_box: bool) -> impl TypedValueParser<Value = AttackKind> {
    PossibleValuesParser::new(AttackKind::names(black_box))
        .try_map(|name| name.parse::<AttackKind>())
}

/// A value the library parses from one of `names` (listed by `--help` and in errors).
fn named<T, const N: usize>(names: [&'static str; N]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = advox::Error> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).try_map(|name| name.parse::<T>())
}

/// Make an adversarial example against Whisper (white-box, gradient-based), or against any
/// recogniser with --blackbox.
///
/// Writes OUT.wav (16-bit), the perturbation as OUT.perturbation.wav (32-bit float) and a JSON
/// report OUT.json. Success is judged on the 16-bit example as written. Ctrl-C stops the attack
/// and keeps the best result so far. An option that does not apply to the chosen attack is an
/// error; exit code 2 means the attack ran but did not succeed.
#[derive(clap::Args)]
pub struct Args {
    /// Input audio (any format advox reads). White box: longer than 30 s, attacked window by
    /// window (untargeted and mute goals); black box: at most 30 s.
    #[arg(required_unless_present = "manifest", conflicts_with = "manifest")]
    pub(crate) input: Option<PathBuf>,
    /// Attack every input of a manifest (CSV with an `input` column and optional `target` and
    /// `goal` columns, or JSON lines with the same keys); -o is then an output directory.
    #[arg(long, conflicts_with = "blackbox")]
    pub(crate) manifest: Option<PathBuf>,
    /// Output WAV (with --manifest: output directory).
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// White-box attack algorithm.
    #[arg(long, value_parser = kind_parser(false), default_value = "pgd", conflicts_with = "blackbox")]
    attack: AttackKind,
    #[command(flatten)]
    pub(crate) goals: common::GoalArgs,
    /// L-infinity bound on the perturbation (full scale = 1; black-box default 0.02).
    #[arg(long)]
    eps: Option<f32>,
    /// L2 bound on the perturbation.
    #[arg(long)]
    l2: Option<f32>,
    /// Minimum signal-to-perturbation ratio in dB.
    #[arg(long)]
    snr_db: Option<f32>,
    /// Only perturb this band, in Hz, e.g. 300-8000.
    #[arg(long, value_parser = common::parse_band)]
    band: Option<(f32, f32)>,
    /// Only perturb where there is sound (frames within 40 dB of the loudest).
    #[arg(long)]
    speech_only: bool,
    /// Black-box attack (no gradients; scores from the built-in model, transcripts from
    /// --asr-cmd): `ga`, a genetic algorithm with momentum mutation; `nes` / `spsa`, gradient
    /// estimation from Gaussian / ±1 directions with signed steps.
    #[arg(long, value_parser = kind_parser(true))]
    pub(crate) blackbox: Option<AttackKind>,
    /// Black-box: attack an external recogniser, a shell command with `{wav}` where the audio
    /// path goes, printing the transcript (default: the built-in model as an opaque box).
    #[arg(long, group = "external", requires = "blackbox", conflicts_with_all = ["beam", "model"])]
    pub(crate) asr_cmd: Option<String>,
    /// Black-box: attack an external recogniser started once: a shell command that reads one
    /// WAV path per line on stdin and prints one transcript line for each (its model loads
    /// once, not per query).
    #[arg(long, group = "external", requires = "blackbox", conflicts_with_all = ["beam", "model"])]
    pub(crate) asr_server: Option<String>,
    /// Black-box: attack a shipped recogniser, started once as a server: `faster-whisper`
    /// (CTranslate2 on the default model's weights, beam 5, plain) or `pocketsphinx` (CMU
    /// Sphinx with its bundled English model); installed into a venv under the advox cache on
    /// first use.
    #[arg(long, group = "external", requires = "blackbox", conflicts_with_all = ["beam", "model"])]
    pub(crate) asr: Option<String>,
    /// Black-box: seconds before the external recogniser is killed (default 60).
    #[arg(long, requires = "external")]
    pub(crate) timeout_s: Option<f64>,
    /// Black-box: query budget (default 300).
    #[arg(long)]
    queries: Option<usize>,
    /// Black-box: candidates per generation (ga), directions per gradient estimate (nes/spsa,
    /// two queries each); default 10.
    #[arg(long)]
    population: Option<usize>,
    /// Black-box nes/spsa: finite-difference radius (default eps/4).
    #[arg(long)]
    sigma: Option<f32>,
    /// Black-box nes/spsa: samples per estimated coordinate, linear in between (default 8).
    #[arg(long)]
    tile: Option<usize>,
    /// Keep every T-F bin of the perturbation this many dB under the input's psychoacoustic
    /// masking threshold (FGSM, PGD, CW, imperceptible; negative: that much over). The
    /// imperceptible attack without it tries stage 1 at 1 dB, then at -6 dB.
    #[arg(long, allow_negative_numbers = true)]
    masking_margin_db: Option<f32>,
    /// Imperceptible: stage-2 steps, masking loss + network loss (default 200).
    #[arg(long)]
    stage2_steps: Option<usize>,
    /// Imperceptible: largest sample change of one stage-2 Adam step (default 2e-4).
    #[arg(long)]
    stage2_lr: Option<f32>,
    /// Imperceptible: stage 2 stops at the first success with this share of δ's energy under
    /// the masking threshold (default 0.99; above 1: every stage-2 step).
    #[arg(long)]
    masked_share: Option<f64>,
    /// Imperceptible: initial weight α of the masking loss (default: balance the gradients).
    #[arg(long)]
    alpha: Option<f32>,
    /// Newton: Hessian–vector products (CG iterations) per trust-region iteration (default 6;
    /// each costs one gradient).
    #[arg(long)]
    cg_iterations: Option<usize>,
    /// Newton: first trust radius, the L2 norm of a step in waveform units (default a quarter
    /// of the L2 norm the bounds allow).
    #[arg(long)]
    trust_radius: Option<f32>,
    /// Domain the steps are formed in (default stft; FGSM, PGD, CW, imperceptible); `phase`
    /// (FGSM, PGD) changes only the phases of the input's STFT (Hann 512 / hop 128), within the
    /// phase bound that keeps --snr-db (its only bound).
    #[arg(long, value_parser = named::<Domain, 3>(Domain::NAMES))]
    domain: Option<Domain>,
    /// Steps: PGD's per run (default 300), CW's per value of c (default 40; 100 under a
    /// bound), DeepFool's most linearisations (default 50), JSMA's most iterations (default
    /// 100), the imperceptible attack's stage 1 (default 300; its first masked try gets half),
    /// Newton's most trust-region iterations (default 50).
    #[arg(long)]
    steps: Option<usize>,
    /// CW: first value of the trade-off constant c (default 0.1; 10 under a bound).
    #[arg(long)]
    c: Option<f32>,
    /// CW: confidence margin κ of the tokens, in logits (default: the success margin + 1, at
    /// least 1).
    #[arg(long)]
    kappa: Option<f32>,
    /// CW: values of c tried by the binary search (default 3).
    #[arg(long)]
    search_steps: Option<usize>,
    /// JSMA: largest share of the STFT bins that may be perturbed, the L0 budget (default 0.1).
    #[arg(long)]
    max_bins: Option<f32>,
    /// JSMA: share of the bins switched on per iteration (default 0.005).
    #[arg(long)]
    bins_per_iteration: Option<f32>,
    /// JSMA: largest waveform amplitude one bin may contribute (default 0.002).
    #[arg(long)]
    bin_amplitude: Option<f32>,
    /// DeepFool: relative overshoot past each linearised boundary (default 0.5).
    #[arg(long)]
    overshoot: Option<f32>,
    /// CW: largest sample change of one Adam step (default 0.002).
    #[arg(long)]
    lr: Option<f32>,
    /// Step size (L-infinity of a step for sign/adam, L2 for l2); default eps/10, else 0.001
    /// (black-box nes/spsa: eps/5).
    #[arg(long)]
    step_size: Option<f32>,
    /// Step rule (PGD, imperceptible; default adam): adam, sign, l2, rmsprop or momentum
    /// (SGD with heavy-ball momentum 0.9); every rule but l2 scales the step's largest sample
    /// to the step size.
    #[arg(long, value_parser = named::<Rule, 5>(Rule::NAMES))]
    rule: Option<Rule>,
    /// Step-size schedule (PGD, imperceptible; default constant).
    #[arg(long, value_parser = named::<Schedule, 2>(Schedule::NAMES))]
    schedule: Option<Schedule>,
    /// Start from a random point of the L-infinity ball (PGD, imperceptible).
    #[arg(long)]
    random_start: bool,
    /// Extra runs from random starts while unsuccessful (PGD, imperceptible; default 0).
    #[arg(long)]
    restarts: Option<usize>,
    /// Expectation over transformation: average the loss over random gain, delay, noise,
    /// band-pass filtering and synthetic rooms so the example survives playback (FGSM, PGD).
    #[arg(long)]
    eot: bool,
    /// EOT: transformations averaged per step (default 4).
    #[arg(long)]
    eot_samples: Option<usize>,
    /// EOT: measured room impulse responses (a WAV, or a directory of them) drawn in place of
    /// the synthetic rooms (each from its direct path, at most 1 s, unit energy).
    #[arg(long)]
    rir: Option<std::path::PathBuf>,
    /// Decode every N steps to test for success (default 5; JSMA 2, the imperceptible
    /// attack's stage 2 twice N). Targeted and mute: at most every N steps, and only where the
    /// goal's tokens lead under teacher forcing, which success requires.
    #[arg(long)]
    check_every: Option<usize>,
    /// Beam size of every decode (1 = greedy; default 5).
    #[arg(long)]
    beam: Option<usize>,
    /// Seed of every random choice (recorded in the report).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model directory or known name.
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// Judge the written example with independent recognisers too: `faster-whisper` (the same
    /// weights in CTranslate2, installed into a venv under the advox cache on first use;
    /// greedy and beam 5, plain and timestamps), `transformers` (Hugging Face, PyTorch: the
    /// same settings; a ~3 GB install on first use), `pocketsphinx` (CMU Sphinx, not Whisper:
    /// its bundled English model, one verdict) and/or `cmd:COMMAND` with `{wav}`. The report
    /// gets `verified_by` and `verified`; success then needs them all.
    #[arg(long, value_parser = parse_verifiers)]
    pub(crate) verify: Option<Verifiers>,
    /// White box: the logit margin κ by which a targeted or mute goal's tokens (and
    /// end-of-text) must lead their best rivals under teacher forcing before the attack stops
    /// (default 1; 0 stops at the first decode that meets the goal, which other Whisper
    /// implementations often do not hear).
    #[arg(long)]
    margin: Option<f32>,
    /// White box: the front ends whose decodes must all meet the goal, taking turns for the
    /// gradient steps: `openai` (padded audio: OpenAI's whisper, transformers, whisper.cpp)
    /// and `faster-whisper` (zero-padded features). Default both.
    #[arg(long, value_delimiter = ',', value_parser = common::front_end_parser())]
    front_ends: Option<Vec<advox::mel::FrontEnd>>,
    /// White box, targeted: success need not also hold under timestamp decoding (by default
    /// the target is also scored and judged as one timestamped segment, the default decoding
    /// of OpenAI's `transcribe` and faster-whisper).
    #[arg(long)]
    plain_prompt_only: bool,
    /// Black-box: a surrogate prior. The built-in model (`--model`) is attacked white-box
    /// first (PGD under the same bounds), and its result is sent to the target as one query;
    /// rounds that do not fool the target ask the surrogate for more (untargeted: WER
    /// threshold +0.25; targeted or mute: twice the margin), then the search goes on from the
    /// best of them with the queries left.
    #[arg(long)]
    surrogate: bool,
    /// Black-box with --surrogate: surrogate rounds, one query each (default 3).
    #[arg(long)]
    surrogate_rounds: Option<usize>,
    /// Black-box: a quiet-frame prior. Candidates spend the whole bound as noise in the
    /// input's quietest 20-ms frames (a share of them: half, then fewer and more, then near
    /// the best), one query each, after any surrogate rounds; the search goes on from the
    /// best of them. Needs no model: for recognisers unlike Whisper (e.g. PocketSphinx).
    #[arg(long)]
    quiet_prior: bool,
    /// Black-box with --quiet-prior: candidates, one query each (default 20).
    #[arg(long)]
    quiet_rounds: Option<usize>,
}

impl Args {
    /// The library's view of the options: what was set, and nothing else.
    pub(crate) fn options(&self) -> anyhow::Result<AttackOptions> {
        let rirs = match &self.rir {
            Some(path) => Some(advox::attack::eot::load_rirs(path)?),
            None => None,
        };
        Ok(AttackOptions {
            rirs,
            kind: Some(self.blackbox.unwrap_or(self.attack)),
            eps: self.eps,
            l2: self.l2,
            snr_db: self.snr_db,
            band: self.band,
            speech_only: self.speech_only,
            masking_margin_db: self.masking_margin_db,
            domain: self.domain,
            steps: self.steps,
            step_size: self.step_size,
            rule: self.rule,
            schedule: self.schedule,
            random_start: self.random_start,
            restarts: self.restarts,
            eot: self.eot,
            eot_samples: self.eot_samples,
            c: self.c,
            kappa: self.kappa,
            search_steps: self.search_steps,
            lr: self.lr,
            max_bins: self.max_bins,
            bins_per_iteration: self.bins_per_iteration,
            bin_amplitude: self.bin_amplitude,
            overshoot: self.overshoot,
            stage2_steps: self.stage2_steps,
            stage2_lr: self.stage2_lr,
            masked_share: self.masked_share,
            alpha: self.alpha,
            cg_iterations: self.cg_iterations,
            trust_radius: self.trust_radius,
            queries: self.queries,
            population: self.population,
            sigma: self.sigma,
            tile: self.tile,
            check_every: self.check_every,
            beam: self.beam,
            seed: self.seed,
            margin: self.margin,
            front_ends: self.front_ends.clone(),
            no_timestamp_prompt: self.plain_prompt_only,
            surrogate: self.surrogate,
            surrogate_rounds: self.surrogate_rounds,
            quiet_prior: self.quiet_prior,
            quiet_rounds: self.quiet_rounds,
        })
    }
}
