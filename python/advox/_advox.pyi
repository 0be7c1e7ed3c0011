"""Type stubs of the compiled module ``advox._advox`` (re-exported by ``advox``)."""

from os import PathLike
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

AudioLike = npt.ArrayLike
"""One channel of samples: any 1-D array-like of numbers (cast to float32)."""
Signal = Union[npt.ArrayLike, str, PathLike]
"""One channel of samples, or an audio file's path."""
ModelLike = Union["Model", str, None]
"""An ``advox.Model``, a known model name (``tiny.en``, ``base``) or a model directory."""
Report = Dict[str, Any]
Progress = Callable[[Dict[str, Any]], Any]

SAMPLE_RATE: int
"""The rate every model runs at and every result is returned at (16 000 Hz)."""

class AdvoxError(Exception):
    """An error of the advox library, with its message."""

class Model:
    """A Whisper model, loaded once per process (the default: tiny.en)."""

    def __init__(self, name: Optional[str] = None) -> None: ...
    @property
    def id(self) -> str: ...
    @property
    def path(self) -> Path: ...

def read_audio(path: Union[str, PathLike]) -> npt.NDArray[np.float32]:
    """Any audio file as 16-kHz mono float32 samples."""

def resample(audio: AudioLike, from_hz: int, to_hz: int) -> npt.NDArray[np.float32]:
    """One channel resampled from ``from_hz`` to ``to_hz``."""

def transcribe(
    audio: AudioLike,
    sample_rate: int = 16000,
    *,
    beam: int = 5,
    timestamps: bool = False,
    language: Optional[str] = None,
    model: ModelLike = None,
) -> Report:
    """``text``, ``tokens``, ``language``, ``avg_logprob`` (and ``segments`` with timestamps)."""

def attack(
    audio: AudioLike,
    sample_rate: int = 16000,
    *,
    target: Optional[str] = None,
    untargeted: bool = False,
    mute: bool = False,
    min_wer: float = 0.5,
    model: ModelLike = None,
    verify: Optional[Sequence[str]] = None,
    progress: Optional[Progress] = None,
    asr: Optional[str] = None,
    asr_cmd: Optional[str] = None,
    asr_server: Optional[str] = None,
    timeout_s: Optional[float] = None,
    attack: str = "pgd",
    eps: Optional[float] = None,
    l2: Optional[float] = None,
    snr_db: Optional[float] = None,
    band: Optional[Tuple[float, float]] = None,
    speech_only: bool = False,
    masking_margin_db: Optional[float] = None,
    domain: Optional[str] = None,
    steps: Optional[int] = None,
    step_size: Optional[float] = None,
    rule: Optional[str] = None,
    schedule: Optional[str] = None,
    random_start: bool = False,
    restarts: Optional[int] = None,
    eot: bool = False,
    eot_samples: Optional[int] = None,
    rir: Optional[Union[str, PathLike]] = None,
    c: Optional[float] = None,
    kappa: Optional[float] = None,
    search_steps: Optional[int] = None,
    lr: Optional[float] = None,
    max_bins: Optional[float] = None,
    bins_per_iteration: Optional[float] = None,
    bin_amplitude: Optional[float] = None,
    overshoot: Optional[float] = None,
    stage2_steps: Optional[int] = None,
    stage2_lr: Optional[float] = None,
    masked_share: Optional[float] = None,
    alpha: Optional[float] = None,
    cg_iterations: Optional[int] = None,
    trust_radius: Optional[float] = None,
    check_every: Optional[int] = None,
    beam: Optional[int] = None,
    seed: int = 0,
    margin: Optional[float] = None,
    front_ends: Optional[Sequence[str]] = None,
    plain_prompt_only: bool = False,
    queries: Optional[int] = None,
    population: Optional[int] = None,
    sigma: Optional[float] = None,
    tile: Optional[int] = None,
    surrogate: bool = False,
    surrogate_rounds: Optional[int] = None,
    quiet_prior: bool = False,
    quiet_rounds: Optional[int] = None,
) -> Tuple[npt.NDArray[np.float32], Report]:
    """Any attack of ``advox attack`` — white-box (fgsm, pgd, cw, deepfool, jsma, imperceptible,
    newton) or black-box (ga, nes, spsa; against the built-in model, or ``asr``/``asr_cmd``/
    ``asr_server``): the example at 16 kHz and the report. Options as ``advox attack`` names
    them."""

def detect(
    audio: AudioLike,
    sample_rate: int = 16000,
    *,
    detectors: Optional[Sequence[str]] = None,
    calibration: Optional[Union[str, PathLike, Dict[str, float]]] = None,
    beam: int = 1,
    model: ModelLike = None,
) -> Report:
    """``scores``, ``thresholds``, ``verdicts``, ``flagged_by``, ``adversarial``, ``transcript``."""

def defend(
    audio: AudioLike,
    sample_rate: int = 16000,
    *,
    defense: str = "purify:lowpass-4000",
    samples: Optional[int] = None,
    alpha: Optional[float] = None,
    seed: Optional[int] = None,
    beam: int = 1,
    models: Union[ModelLike, List[ModelLike]] = None,
) -> Report:
    """``text``, ``abstained``, ``agreement``, ``certified_radius``, ``defense``."""

def purify(
    audio: AudioLike, sample_rate: int = 16000, *, transforms: str = "lowpass-4000"
) -> npt.NDArray[np.float32]:
    """The signal through input transformations (``lowpass-4000+quantize-8``), at 16 kHz."""

def evaluate(
    audios: Sequence[Signal],
    sample_rate: int = 16000,
    *,
    references: Optional[Sequence[Optional[str]]] = None,
    target: Optional[str] = None,
    untargeted: bool = False,
    mute: bool = False,
    min_wer: float = 0.5,
    attacks: Optional[Sequence[str]] = None,
    eps: Optional[Sequence[float]] = None,
    snr_db: Optional[Sequence[float]] = None,
    steps: int = 50,
    defenses: Optional[Sequence[str]] = None,
    detectors: Optional[Sequence[str]] = None,
    beam: int = 1,
    seed: int = 0,
    adaptive: bool = True,
    adaptive_samples: Optional[int] = None,
    models: Union[ModelLike, List[ModelLike]] = None,
    progress: Optional[Progress] = None,
) -> Report:
    """``advox eval``'s report (settings, cells, defences, detectors, examples)."""

def universal(
    train: Sequence[Signal],
    sample_rate: int = 16000,
    *,
    eval: Optional[Sequence[Signal]] = None,
    mode: str = "additive",
    target: Optional[str] = None,
    untargeted: bool = False,
    mute: bool = False,
    min_wer: float = 0.5,
    eps: Optional[float] = None,
    length_s: Optional[float] = None,
    steps: int = 100,
    batch: int = 2,
    step_size: Optional[float] = None,
    seed: int = 0,
    snr_db: Optional[float] = None,
    masking_margin_db: Optional[float] = None,
    timestamps: bool = False,
    beam: int = 5,
    front_ends: Optional[Sequence[str]] = None,
    max_shift_s: Optional[float] = None,
    decodings: Optional[Sequence[str]] = None,
    model: Union[ModelLike, List[ModelLike]] = None,
    progress: Optional[Progress] = None,
) -> Tuple[npt.NDArray[np.float32], Report]:
    """A universal perturbation (16 kHz) and the sidecar ``advox universal`` writes (a list of
    models, mute modes: one segment for all, the others judged in ``other_models``)."""
