"""An in-process LRU cache of loaded models, so a server keeps its last few models warm.

Thread-safe: a model is loaded at most once per key even when requests race; when more than `max_loaded`
models are held, the least recently used one is dropped and memory is given back (gc + CUDA cache).
"""
from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable

from sdcodex.core.errors import ValidationError


def cache_key(path: str | Path, *, vae: str | Path | None = None, precision: str = "auto", device: str = "cpu",
              **extra: Any) -> tuple:
    """The key a loaded model is cached under: what was loaded, with which VAE, in which precision, where."""
    return (str(path), str(vae) if vae else None, str(precision), str(device),
            tuple(sorted((k, str(v)) for k, v in extra.items())))


def free_memory() -> None:
    """Collect garbage and empty the CUDA cache when CUDA is in use."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - torch missing or CUDA in a bad state; nothing more to free
        pass


class ModelCache:
    """LRU cache: ``get(key, loader)`` returns the held model or calls ``loader()`` and keeps its result."""

    def __init__(self, max_loaded: int = 2) -> None:
        if max_loaded < 1:
            raise ValidationError("must be at least 1", field="max_loaded", allowed=">= 1")
        self.max_loaded = max_loaded
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        """The model under `key`, loading it with `loader()` on a miss (one load per key at a time)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # other keys keep being served while this one loads
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            try:
                model = loader()
            except BaseException:
                with self._lock:
                    self._key_locks.pop(key, None)
                raise
            with self._lock:
                self._items[key] = model
                self._items.move_to_end(key)
                self._key_locks.pop(key, None)
                evicted = self._trim_locked()
            if evicted:
                free_memory()
            return model

    def resize(self, max_loaded: int) -> None:
        """Hold at most `max_loaded` models from now on; the least recently used ones beyond it are dropped."""
        if max_loaded < 1:
            raise ValidationError("must be at least 1", field="max_loaded", allowed=">= 1")
        with self._lock:
            self.max_loaded = int(max_loaded)
            evicted = self._trim_locked()
        if evicted:
            free_memory()

    def _trim_locked(self) -> bool:
        """Drop the least recently used models beyond `max_loaded` (the lock held); True when any went."""
        evicted = False
        while len(self._items) > self.max_loaded:
            self._items.popitem(last=False)
            evicted = True
        return evicted

    def evict(self, key: Hashable) -> bool:
        """Drop one model; True when it was held."""
        with self._lock:
            found = self._items.pop(key, None) is not None
        if found:
            free_memory()
        return found

    def clear(self) -> None:
        """Drop every model and free memory."""
        with self._lock:
            self._items.clear()
        free_memory()

    def loaded_keys(self) -> list[Hashable]:
        """Keys held, least recently used first."""
        with self._lock:
            return list(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
