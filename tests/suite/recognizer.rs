//! External recognisers behind a command template: a working one, and ones that fail, hang or
//! print garbage, each giving a clear error.

use crate::common;

use advox::audio::read_audio_16k_mono;
use advox::recognizer::{CommandRecognizer, Recognizer};
use advox::text::normalize_transcript;
use std::time::{Duration, Instant};

fn sample() -> Vec<f32> {
    read_audio_16k_mono(&common::root().join("samples/open_the_front_door.wav")).unwrap()
}

#[test]
fn a_command_that_runs_advox_transcribe_is_a_recogniser() {
    let template = format!(
        "ADVOX_MODEL='{}' '{}' transcribe {{wav}}",
        common::model_dir().display(),
        env!("CARGO_BIN_EXE_advox")
    );
    let mut asr = CommandRecognizer::new(&template, Duration::from_secs(120)).unwrap();
    let text = asr.transcribe(&sample()).unwrap();
    assert_eq!(normalize_transcript(&text), "open the front door");
    assert_eq!(asr.queries(), 1);
    assert!(asr.describe().contains("transcribe"));
}

#[test]
fn failing_hanging_and_garbage_commands_are_clear_errors() {
    let x = sample();
    let mut failing =
        CommandRecognizer::new("echo broken >&2; exit 3 # {wav}", Duration::from_secs(10)).unwrap();
    let e = failing.transcribe(&x).unwrap_err().to_string();
    assert!(e.contains("exit") && e.contains("broken"), "{e}");

    let mut hanging =
        CommandRecognizer::new("sleep 30 # {wav}", Duration::from_millis(500)).unwrap();
    let start = Instant::now();
    let e = hanging.transcribe(&x).unwrap_err().to_string();
    assert!(e.contains("no answer within 0.5 s"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the timeout did not kill it"
    );

    let mut garbage = CommandRecognizer::new("head -c 200 {wav}", Duration::from_secs(10)).unwrap();
    let e = garbage.transcribe(&x).unwrap_err().to_string();
    assert!(
        e.contains("not UTF-8") || e.contains("control characters"),
        "{e}"
    );
    assert_eq!(garbage.queries(), 1);

    let mut silent = CommandRecognizer::new("true {wav}", Duration::from_secs(10)).unwrap();
    assert_eq!(
        silent.transcribe(&x).unwrap(),
        "",
        "no output is an empty transcript"
    );

    assert!(CommandRecognizer::new("my-asr", Duration::from_secs(1)).is_err());
    assert!(CommandRecognizer::new("my-asr {wav}", Duration::ZERO).is_err());
}

#[test]
fn pocketsphinx_is_shipped_as_a_verifier_and_as_an_external_recogniser() {
    use advox::verify::{asr_command, Verifier};
    // Real speech by a speaker none of advox's tuning used (LibriVox, 16 kHz).
    let clip =
        common::shared().join("corpus/librivox/sense_and_sensibility_01_austen_64kb-0920.wav");
    let heard = Verifier::PocketSphinx
        .transcribe_files(
            &common::model_dir(),
            std::slice::from_ref(&clip),
            None,
            &mut |m| eprintln!("{m}"),
        )
        .unwrap();
    assert_eq!(heard.len(), 1);
    assert_eq!(
        heard[0].len(),
        1,
        "one verdict: no beam or timestamp settings"
    );
    let text = heard[0][0].text.clone().unwrap();
    assert_eq!(heard[0][0].setting(), "pocketsphinx");
    // "Had he married a more amiable woman, he might have been made still more respectable…"
    assert!(
        normalize_transcript(&text).contains("amiable woman"),
        "{text}"
    );
    // The same recogniser as a command (`--asr pocketsphinx`), one process per query: the same
    // words (a fresh decoder per file, so order does not matter).
    let template = asr_command("pocketsphinx", &mut |m| eprintln!("{m}")).unwrap();
    let mut r = CommandRecognizer::new(&template, Duration::from_secs(120)).unwrap();
    let again = r.transcribe(&read_audio_16k_mono(&clip).unwrap()).unwrap();
    assert_eq!(normalize_transcript(&again), normalize_transcript(&text));
    // Other languages and other names are clear errors.
    let other = Verifier::PocketSphinx
        .transcribe_files(&common::model_dir(), &[clip], Some("de"), &mut |_| {})
        .unwrap();
    assert!(other[0][0]
        .text
        .as_ref()
        .unwrap_err()
        .contains("English only"));
    assert!(asr_command("kaldi", &mut |_| {})
        .unwrap_err()
        .to_string()
        .contains("pocketsphinx"));
}
