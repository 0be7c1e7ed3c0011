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
    use advox::recognizer::server::ServerRecognizer;
    use advox::verify::{asr_server_command, Verifier};
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
    // The same recogniser as a server (`--asr pocketsphinx`): started once, the same words
    // for the same file on every query (a fresh decoder per file, so order does not matter).
    let command = asr_server_command("pocketsphinx", None, &mut |m| eprintln!("{m}")).unwrap();
    let mut r = ServerRecognizer::new(&command, Duration::from_secs(120)).unwrap();
    let samples = read_audio_16k_mono(&clip).unwrap();
    let again = r.transcribe(&samples).unwrap();
    assert_eq!(normalize_transcript(&again), normalize_transcript(&text));
    let other = r.transcribe(&sample()).unwrap();
    assert_eq!(r.transcribe(&samples).unwrap(), again);
    assert_ne!(other, again);
    assert_eq!((r.queries(), r.starts()), (3, 1));
    // Other languages and other names are clear errors.
    let other = Verifier::PocketSphinx
        .transcribe_files(&common::model_dir(), &[clip], Some("de"), &mut |_| {})
        .unwrap();
    assert!(other[0][0]
        .text
        .as_ref()
        .unwrap_err()
        .contains("English only"));
    assert!(asr_server_command("kaldi", None, &mut |_| {})
        .unwrap_err()
        .to_string()
        .contains("pocketsphinx"));
}

#[test]
fn faster_whisper_serves_as_an_external_recogniser_loading_its_model_once() {
    use advox::recognizer::server::ServerRecognizer;
    use advox::verify::asr_server_command;
    let clip =
        common::shared().join("corpus/librivox/sense_and_sensibility_01_austen_64kb-0920.wav");
    let command = asr_server_command("faster-whisper", Some(&common::model_dir()), &mut |m| {
        eprintln!("{m}")
    })
    .unwrap();
    let mut r = ServerRecognizer::new(&command, Duration::from_secs(300)).unwrap();
    let samples = read_audio_16k_mono(&clip).unwrap();
    let first = r.transcribe(&samples).unwrap();
    assert!(
        normalize_transcript(&first).contains("amiable woman"),
        "{first}"
    );
    // Later queries reuse the loaded model: well under the first (which loaded it).
    let start = Instant::now();
    assert_eq!(r.transcribe(&samples).unwrap(), first);
    eprintln!("second query {:.2} s", start.elapsed().as_secs_f64());
    assert_eq!(r.starts(), 1);
    // It needs a model; unknown names list the shipped ones.
    let e = asr_server_command("faster-whisper", None, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("model"), "{e}");
}
