"""advox: adversarial attacks on speech recognisers, their detection and defence.

The advox Rust library with numpy in and out. Audio is one channel
as a 1-D array (any dtype, cast to float32) at ``sample_rate`` (resampled to 16 kHz), or, where
a list of signals is taken, audio files by path. Reports are dicts, the same JSON the ``advox``
command line writes. Errors raise :class:`AdvoxError` with the library's messages. Every
computation releases the GIL; Ctrl-C stops an attack at its next step.

>>> import advox
>>> x = advox.read_audio("samples/open_the_front_door.wav")
>>> advox.transcribe(x)["text"]
'Open the front door.'
>>> example, report = advox.attack(x, target="turn off the lights", snr_db=30, eps=0.02)
"""

from ._advox import (
    SAMPLE_RATE,
    AdvoxError,
    Model,
    attack,
    defend,
    detect,
    evaluate,
    purify,
    read_audio,
    resample,
    transcribe,
    universal,
)

__all__ = [
    "SAMPLE_RATE",
    "AdvoxError",
    "Model",
    "attack",
    "defend",
    "detect",
    "evaluate",
    "purify",
    "read_audio",
    "resample",
    "transcribe",
    "universal",
]
