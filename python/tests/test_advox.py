"""Tests of the advox Python package against the real model (tiny.en, `advox model fetch`).

Run by `cargo test` (tests/pytest.rs), or by hand after `pip install ./python`:
`python -m pytest python/tests` from the repository root.
"""

import ast
import inspect
import os
import pathlib
import threading
import time

import numpy as np
import pytest

import advox

REPO = pathlib.Path(os.environ.get("ADVOX_REPO", pathlib.Path(__file__).resolve().parents[2]))
SAMPLES = REPO / "samples"


def words(text):
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace()).split()


@pytest.fixture(scope="module")
def door():
    return advox.read_audio(SAMPLES / "open_the_front_door.wav")


def test_transcribes_a_command_at_16_and_48_khz(door):
    assert door.dtype == np.float32 and door.ndim == 1
    assert words(advox.transcribe(door)["text"]) == ["open", "the", "front", "door"]
    at_48k = advox.resample(door, 16000, 48000)
    assert abs(len(at_48k) - 3 * len(door)) <= 3
    # float64 and the host rate: cast and resampled back to 16 kHz.
    heard = advox.transcribe(at_48k.astype(np.float64), 48000, beam=1)
    assert words(heard["text"]) == ["open", "the", "front", "door"]
    assert advox.Model().id == advox.Model("tiny.en").id


def test_untargeted_pgd_moves_the_transcript_within_its_bound(door):
    example, report = advox.attack(door, untargeted=True, eps=0.01, steps=60, seed=1)
    assert example.dtype == np.float32 and example.shape == door.shape
    assert report["attack"] == "pgd" and report["success"], report["adversarial_transcript"]
    assert report["constraints"]["eps"] == pytest.approx(0.01)
    assert np.max(np.abs(example - door)) <= 0.01 + 1.5 / 32768
    assert "input" not in report
    # Heard again, from the returned samples: not the original sentence.
    again = advox.transcribe(example)["text"]
    assert words(again) != ["open", "the", "front", "door"], again
    assert again.strip() == report["adversarial_transcript"].strip()


def test_bad_arguments_raise_advox_errors_with_the_library_messages(door):
    with pytest.raises(advox.AdvoxError, match="--eot does not apply to cw"):
        advox.attack(door, untargeted=True, attack="cw", eot=True)
    with pytest.raises(advox.AdvoxError, match="epss"):
        advox.attack(door, untargeted=True, epss=0.1)
    with pytest.raises(advox.AdvoxError, match="choose one goal"):
        advox.attack(door, eps=0.01)
    with pytest.raises(advox.AdvoxError, match="choose one goal"):
        advox.attack(door, target="x", mute=True)
    with pytest.raises(advox.AdvoxError, match="apply to the black-box attacks"):
        advox.attack(door, untargeted=True, eps=0.01, asr="pocketsphinx")
    with pytest.raises(advox.AdvoxError, match="--surrogate attacks an external recogniser"):
        advox.attack(door, untargeted=True, attack="ga", surrogate=True)
    with pytest.raises(advox.AdvoxError, match="unknown rule"):
        advox.attack(door, untargeted=True, rule="newton")
    with pytest.raises(advox.AdvoxError, match="one channel"):
        advox.transcribe(np.stack([door, door]))
    with pytest.raises(advox.AdvoxError, match="NaN or infinite samples"):
        advox.attack(np.full(16000, np.nan, dtype=np.float32), untargeted=True, eps=0.01)
    with pytest.raises(advox.AdvoxError, match="no such model"):
        advox.Model("/nonexistent/model")
    with pytest.raises(advox.AdvoxError, match="unknown detector"):
        advox.detect(door, detectors=["psychic"])


def test_black_box_attacks_query_the_built_in_model_or_an_external_command(door):
    example, report = advox.attack(door, untargeted=True, attack="nes", eps=0.01, queries=30, seed=2)
    stats = report["black_box"]
    assert report["attack"] == "nes" and stats["score_based"]
    assert 0 < stats["queries"] <= stats["query_budget"] == 30
    assert np.max(np.abs(example - door)) <= 0.01 + 1.5 / 32768
    # An external recogniser that always hears the same words: the goal is never met.
    echo = "true {wav}; echo open the front door"
    _, report = advox.attack(door, untargeted=True, attack="ga", asr_cmd=echo, eps=0.01,
                             queries=6, population=3)
    assert not report["success"]
    assert report["original_transcript"] == "open the front door"
    assert report["black_box"]["queries"] <= 7 and "echo" in report["black_box"]["recognizer"]


def test_a_progress_callback_sees_steps_and_can_stop_an_attack(door):
    seen = []

    class Enough(Exception):
        pass

    def progress(step):
        seen.append(step)
        if len(seen) == 3:
            raise Enough()

    start = time.monotonic()
    with pytest.raises(Enough):
        advox.attack(door, target="turn off the lights", eps=0.02, steps=300, progress=progress)
    assert [s["step"] for s in seen] == [1, 2, 3]
    assert {"run", "step", "steps", "loss"} <= set(seen[0])
    assert time.monotonic() - start < 60


def test_compute_releases_the_gil(door):
    long = np.tile(door, 8)  # ~14 s: a beam-5 decode of a second or more
    done = threading.Event()

    def work():
        advox.transcribe(long, beam=5)
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.05)
    spins = 0
    while not done.is_set():
        spins += 1
    thread.join()
    # With the GIL held by the decode this loop could not run until it ended.
    assert spins > 10_000, spins


def test_detect_defend_and_purify(door):
    names = ["high-band", "entropy", "consistency:lowpass-4000"]
    found = advox.detect(door, detectors=names)
    assert set(found["scores"]) == set(names)
    assert found["thresholds"]["high-band"] is None
    assert words(found["transcript"]) == ["open", "the", "front", "door"]
    flagged = advox.detect(door, detectors=["high-band"], calibration={"high-band": -1e9})
    assert flagged["adversarial"] and flagged["flagged_by"] == ["high-band"]
    defended = advox.defend(door)
    assert defended["defense"] == "purify:lowpass-4000" and not defended["abstained"]
    # The defence is the purification, then a greedy decode (which hears "floor" here).
    purified = advox.purify(door, transforms="lowpass-4000")
    assert defended["text"] == advox.transcribe(purified, beam=1)["text"]
    assert advox.defend(door, defense="none")["text"] == advox.transcribe(door, beam=1)["text"]
    with pytest.raises(advox.AdvoxError, match="smoothing only"):
        advox.defend(door, samples=8)
    low = advox.purify(door, transforms="lowpass-4000")
    assert low.shape == door.shape and not np.allclose(low, door)


def test_universal_trains_and_judges_next_to_noise():
    train = [SAMPLES / "call_my_mother.wav", advox.read_audio(SAMPLES / "play_some_music.wav")]
    delta, sidecar = advox.universal(train, steps=2, batch=1, length_s=0.5, beam=1, seed=3,
                                     front_ends=["openai", "faster-whisper"])
    assert delta.shape == (8000,) and np.max(np.abs(delta)) <= 0.02 + 1e-6
    assert sidecar["mode"] == "additive" and sidecar["steps"] == 2
    judged = sidecar["train"]
    assert len(judged["perturbation"]["results"]) == 2
    assert set(judged) == {"perturbation", "random_noise"}
    assert sidecar["eval"] is None
    assert sidecar["front_ends"] == ["openai", "faster-whisper"]
    with pytest.raises(advox.AdvoxError, match="overlay-mute mute"):
        advox.universal(train, mode="prefix-mute", target="hello", steps=1)
    with pytest.raises(advox.AdvoxError, match="applies to the mute modes"):
        advox.universal(train, max_shift_s=0.1, steps=1)
    with pytest.raises(advox.AdvoxError, match="--decodings applies to the mute modes"):
        advox.universal(train, decodings=["plain"], steps=1)
    with pytest.raises(advox.AdvoxError, match="unknown decoding"):
        advox.universal(train, mode="prefix-mute", decodings=["segments"], steps=1)
    # Several models at once: the mute modes only, the others judged in other_models.
    with pytest.raises(advox.AdvoxError, match="several models at once applies to the mute"):
        advox.universal(train, steps=1, model=["tiny.en", "tiny.en"])
    _, both = advox.universal(train, mode="prefix-mute", steps=1, batch=1, beam=1,
                              model=["tiny.en", "tiny.en"])
    assert [m["model"] for m in both["other_models"]] == ["tiny.en"]
    assert [d["decoding"] for d in both["other_models"][0]["decodings"]] == ["timestamps"]


def test_evaluate_reports_the_matrix():
    report = advox.evaluate(
        [str(SAMPLES / "call_my_mother.wav")],
        references=["call my mother"],
        attacks=["fgsm"],
        eps=[0.01],
        defenses=["none"],
        detectors=["high-band"],
        adaptive=False,
    )
    assert report["settings"]["attacks"] == ["fgsm"]
    assert report["examples"] == 1 and len(report["records"]) == 1
    example = report["records"][0]
    assert example["clean_wer"] == 0.0
    assert [a["attack"] for a in example["attacks"]] == ["fgsm"]
    assert report["cells"][0]["attack"] == "fgsm"


def test_the_stubs_name_every_function_and_parameter():
    stubs = ast.parse((pathlib.Path(advox.__file__).parent / "_advox.pyi").read_text())
    stubbed = {
        node.name: node
        for node in stubs.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }
    public = {name for name in advox.__all__ if name != "SAMPLE_RATE"}
    assert public == set(stubbed)
    for name in public - {"AdvoxError", "Model"}:
        real = inspect.signature(getattr(advox, name))
        stub = stubbed[name].args
        stub_names = [a.arg for a in stub.posonlyargs + stub.args + stub.kwonlyargs]
        real_names = [p.name for p in real.parameters.values() if p.kind != p.VAR_KEYWORD]
        # attack's **kwargs are typed one by one in the stub.
        assert stub_names[: len(real_names)] == real_names, name
