"""Small string-keyed registries with aliases: engines, pipeline factories, samplers, model loaders."""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ValidationError

T = TypeVar("T")


def _norm(key: str) -> str:
    return str(key).strip().lower().replace("-", "_").replace(" ", "_")


class Registry(Generic[T]):
    """Maps a canonical key (and aliases, case-insensitive) to an object; `@registry.register(key)`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, key: str, *aliases: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(key, obj, *aliases)
            return obj
        return deco

    def add(self, key: str, obj: T, *aliases: str) -> None:
        key = str(key)
        self._items[key] = obj
        for name in (key, *aliases):
            self._aliases[_norm(name)] = key

    def canonical(self, key: str, *, field: str | None = None) -> str:
        name = self._aliases.get(_norm(key))
        if name is None:
            raise ValidationError(f"unknown {self.what} {key!r}", field=field or self.what,
                                  allowed=sorted(self._items))
        return name

    def get(self, key: str, *, field: str | None = None) -> T:
        return self._items[self.canonical(key, field=field)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _norm(key) in self._aliases

    def keys(self) -> list[str]:
        return list(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())


#: engine key -> EngineInterface subclass (filled when sdcodex.engines is imported)
ENGINES: Registry[type] = Registry("engine")
#: pipeline key ("sd15.txt2img", ...) -> factory(components, **kw) returning a Diffusers pipeline
PIPELINES: Registry[Callable[..., Any]] = Registry("pipeline")


def create_pipeline(key: str, **kw: Any) -> Any:
    """Build the Diffusers pipeline registered under key (e.g. 'sd15.img2img') from components."""
    return PIPELINES.get(key, field="pipeline")(**kw)


def get_engine(key: str) -> type:
    """The engine class for key (engines register themselves when `sdcodex.engines` is imported)."""
    return ENGINES.get(key, field="engine")
