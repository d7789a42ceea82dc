"""Progress events and the interrupt/skip control that every face shares."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


class Interrupted(Exception):
    """Stop now; outputs already finished are kept."""


class Skipped(Exception):
    """Drop the current image (or batch) and go on with the next."""


class Control:
    """Flags a face sets from another thread; the engine checks them between steps. Whoever runs the job
    elsewhere (a Ray replica) hears of each request through `on_signal`."""

    def __init__(self) -> None:
        self._interrupt = threading.Event()
        self._skip = threading.Event()
        self._listeners: list[Callable[[str], None]] = []

    def on_signal(self, listener: Callable[[str], None]) -> None:
        """Call `listener("interrupt")` / `listener("skip")` whenever a face asks for it."""
        self._listeners.append(listener)

    def _signal(self, what: str) -> None:
        for listener in list(self._listeners):
            listener(what)

    def interrupt(self) -> None:
        self._interrupt.set()
        self._signal("interrupt")

    def skip(self) -> None:
        self._skip.set()
        self._signal("skip")

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def check(self) -> None:
        """Raise Interrupted or Skipped if a face asked for it (skip is consumed once)."""
        if self._interrupt.is_set():
            raise Interrupted()
        if self._skip.is_set():
            self._skip.clear()
            raise Skipped()


@dataclass
class Event:
    kind: str  # "start" | "progress" | "image" | "stage" | "warning" | "done"
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


Listener = Callable[[Event], None]


class EventSink:
    """Collects listeners and tracks step progress with it/s and ETA."""

    def __init__(self, listeners: list[Listener] | None = None, control: Control | None = None, *,
                 preview_every: int = 0) -> None:
        self.listeners: list[Listener] = list(listeners or [])
        self.control = control or Control()
        #: make a live preview every N steps (0: none); a listener that shows previews asks for them
        self.preview_every = max(int(preview_every or 0), 0)
        self._step_times: list[float] = []
        self.total_steps = 0
        self.done_steps = 0

    def emit(self, kind: str, **data: Any) -> None:
        event = Event(kind, data)
        for listener in self.listeners:
            listener(event)

    def plan(self, total_steps: int) -> None:
        """Announce the total number of steps of the whole job (all images, all passes)."""
        self.total_steps = max(int(total_steps), 1)
        self.done_steps = 0
        self._step_times = [time.perf_counter()]

    def step(self, step: int, steps: int, *, image_index: int = 0, images: int = 1,
             preview: Callable[[], Any] | None = None, **extra: Any) -> None:
        """Called after every sampling step; emits a progress event (and every `preview_every` steps a
        "preview" event with the PIL image that `preview()` makes, when it makes one), then honours
        interrupt/skip."""
        self.done_steps += 1
        now = time.perf_counter()
        self._step_times.append(now)
        window = self._step_times[-9:]
        rate = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 and window[-1] > window[0] else 0.0
        remaining = max(self.total_steps - self.done_steps, 0)
        eta = remaining / rate if rate > 0 else None
        self.emit("progress", step=step, steps=steps, image_index=image_index, images=images,
                  done=self.done_steps, total=self.total_steps,
                  progress=min(self.done_steps / self.total_steps, 1.0), it_per_s=rate, eta=eta, **extra)
        if preview is not None and self.preview_every and self.done_steps % self.preview_every == 0:
            image = preview()
            if image is not None:
                self.emit("preview", image=image, step=step, steps=steps, done=self.done_steps,
                          image_index=image_index)
        self.control.check()
