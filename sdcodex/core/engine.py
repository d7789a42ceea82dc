"""The engine interface: an engine declares what it can do as class attributes and turns typed
params into frames. Engines never parse HTTP, Gradio or CLI input."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .enums import EngineKey, Mode, Prediction, Task
from .events import EventSink


@dataclass
class EngineOutput:
    """What an engine produced and what it really did."""

    images: list[Any] = field(default_factory=list)          # PIL images (image tasks)
    videos: list[list[Any]] = field(default_factory=list)    # one list of PIL frames per video
    seeds: list[int] = field(default_factory=list)           # seed of each image/video, same order
    #: one sound track per video, same order as `videos` (empty when the engine makes none): a float32 waveform
    #: [channels, samples] in [-1, 1] and its sample rate, or None for a video without sound
    audio: list[Any] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)       # sampler report, effective values...
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    interrupted: bool = False
    skipped: int = 0


class EngineInterface(ABC):
    """One model family. Subclasses declare capabilities; a shared base does the work."""

    key: ClassVar[EngineKey]
    label: ClassVar[str] = ""
    tasks: ClassVar[frozenset[Task]] = frozenset()
    modes: ClassVar[frozenset[Mode]] = frozenset({Mode.NORMAL})
    prediction: ClassVar[Prediction] = Prediction.EPSILON
    default_sampler: ClassVar[str] = "Automatic"
    default_scheduler: ClassVar[str] = "Automatic"
    size_multiple: ClassVar[int] = 8
    min_size: ClassVar[int] = 64
    max_size: ClassVar[int] = 4096
    #: (k, r): num_frames must satisfy num_frames % k == r (e.g. (4, 1) for "4k+1"); None for images
    frame_rule: ClassVar[tuple[int, int] | None] = None
    max_frames: ClassVar[int] = 0
    #: how many reference images (request key `images`) the engine takes; 0: none
    max_images: ClassVar[int] = 0
    #: each reference image's shortest side at least this many pixels, its aspect ratio at most this (0: no rule)
    reference_min_side: ClassVar[int] = 0
    reference_max_ratio: ClassVar[float] = 0
    #: values used when neither request nor preset gives them
    defaults: ClassVar[dict[str, Any]] = {}
    #: ControlNet units (request key `controls`) are taken
    supports_controls: ClassVar[bool] = False
    #: extra request keys this engine understands beyond the common ones
    extra_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, model: Any, *, device: str = "cpu") -> None:
        self.model = model
        self.device = device

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {
            "engine": cls.key.value,
            "label": cls.label or cls.key.value,
            "tasks": sorted(t.value for t in cls.tasks),
            "modes": sorted(m.value for m in cls.modes),
            "prediction": cls.prediction.value,
            "default_sampler": cls.default_sampler,
            "default_scheduler": cls.default_scheduler,
            "size_multiple": cls.size_multiple,
            "min_size": cls.min_size,
            "max_size": cls.max_size,
            "frame_rule": (f"{cls.frame_rule[0]}k+{cls.frame_rule[1]}" if cls.frame_rule else None),
            "max_frames": cls.max_frames or None,
            "max_images": cls.max_images or None,
            "extra_keys": sorted(cls.extra_keys),
            "controls": cls.supports_controls,
            "defaults": dict(cls.defaults),
        }

    @classmethod
    def prompt_tokens(cls, text: str, emphasis: str = "Original", steps: int = 20) -> tuple[int, int] | None:
        """(tokens used, counter limit) of a prompt as the UI's counter shows it ("12/75"); None: no counter."""
        return None

    @classmethod
    def model_limits(cls, entry: Any) -> dict[str, tuple[int, str]]:
        """Limits one model file sets beyond the family's rules, read from its config without loading it:
        {request key: (largest value, why)}; checked with the request (params.check_model_limits)."""
        return {}

    @classmethod
    def check_params(cls, params: Any) -> list[str]:
        """Family checks that need no model (run before it loads, so the API answers 422 at once)."""
        return []

    def validate(self, params: Any) -> list[str]:
        """Family checks that need the loaded model; returns warnings, raises ValidationError."""
        return []

    @abstractmethod
    def run(self, params: Any, events: EventSink) -> EngineOutput:
        """Generate; call events.step() after every sampling step."""
