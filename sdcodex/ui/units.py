"""Panels made of units: an image, a model from the models folder and a few numbers (the ControlNet units, the
IP-Adapter). A panel is declared as a table of `Field`s; one builder lays its units out, one wiring fills the model
lists (when the tab opens and on ↻, which rescans), and one reader turns a unit into its part of the request."""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from itertools import groupby
from typing import Any, Callable

import gradio as gr


@dataclass(frozen=True)
class Field:
    """One input of a unit. `key` is the request key (and the unit dict's key); `make` the Gradio component class;
    fields with the same `row` share a gr.Row. `missing` is what the request gets when the value is empty
    (None: the key is left out); `cast` converts a value that is there. `models` names the inventory kind whose
    entries fill this dropdown (`blank` puts an empty choice first)."""

    key: str
    make: Callable[..., Any]
    label: str
    id: str
    value: Any = None
    row: int | None = None
    kwargs: dict[str, Any] = dc_field(default_factory=dict)
    missing: Any = None
    cast: Callable[[Any], Any] | None = None
    models: str | None = None
    blank: bool = False
    request: bool = True  # False: the field is read by the panel itself (e.g. `enabled`), not sent as a key


@dataclass
class UnitsPanel:
    """The built panel: its ↻ button and one dict (field key -> component) per unit."""

    refresh: Any
    fields: tuple[Field, ...]
    units: list[dict[str, Any]] = dc_field(default_factory=list)

    @property
    def components(self) -> list[Any]:
        return [c for unit in self.units for c in unit.values()]


def image_field(label: str) -> Field:
    return Field("image", gr.Image, label, "image", request=False,
                 kwargs={"type": "pil", "height": 200, "sources": ["upload", "clipboard"]})


def enabled_field() -> Field:
    return Field("enabled", gr.Checkbox, "Enable", "enabled", value=False, request=False)


def build_unit(fields: tuple[Field, ...], prefix: str) -> dict[str, Any]:
    """Lay out one unit's fields (inside a gr.Blocks context); elem_ids are `<prefix>-<field id>`."""
    unit: dict[str, Any] = {}
    for row, group in groupby(fields, key=lambda f: f.row):
        items = list(group)
        if row is None:
            for f in items:
                unit[f.key] = _make(f, prefix)
        else:
            with gr.Row():
                for f in items:
                    unit[f.key] = _make(f, prefix)
    return unit


def _make(f: Field, prefix: str) -> Any:
    kwargs = dict(f.kwargs)
    if f.models is not None:
        kwargs.setdefault("choices", [])
        kwargs.setdefault("allow_custom_value", True)
    if f.value is not None:
        kwargs["value"] = f.value
    return f.make(label=f.label, elem_id=f"{prefix}-{f.id}", **kwargs)


def model_names(models: Any, kind: str) -> list[str]:
    """The names of the models folder's entries of `kind` ([] when the inventory cannot say)."""
    try:
        return [e.name for e in models.entries(kind=kind)]
    except Exception:  # noqa: BLE001 - a panel without choices still takes a typed name
        return []


def wire_models(tabs: dict[str, Any], attr: str, models: Any) -> None:
    """Fill the model dropdowns of each tab's panel `attr` when the tab opens and on its ↻ button (rescanning
    the models folder)."""
    for tab in tabs.values():
        panel = getattr(tab, attr, None)
        if panel is None:
            continue
        targets = [(unit[f.key], f) for unit in panel.units for f in panel.fields if f.models is not None]

        def fill(rescan: bool = False, _targets: list[tuple[Any, Field]] = targets) -> list[Any]:
            if rescan and hasattr(models, "refresh"):
                models.refresh()
            found: dict[str, list[str]] = {}
            for _c, f in _targets:
                if f.models not in found:
                    found[f.models] = model_names(models, f.models)  # type: ignore[index]
            return [gr.update(choices=([""] if f.blank else []) + found[f.models]) for _c, f in _targets]

        outputs = [c for c, _f in targets]
        panel.refresh.click(lambda: fill(True), None, outputs, show_progress="hidden")
        tab.tab.select(lambda: fill(False), None, outputs, show_progress="hidden", queue=False)


def image_value(image: Any, *, encode: bool, placeholder: str) -> str:
    """A unit image for the request: base64 PNG when `encode` (submit), else `placeholder` formatted with its
    size (`{w}`, `{h}`) for the JSON preview."""
    if encode:
        from .request import encode_png

        return encode_png(image.convert("RGB"))
    return placeholder.format(w=image.size[0], h=image.size[1])


def read_unit(panel: UnitsPanel, unit: dict[str, Any], data: dict[Any, Any],
              skip: Callable[[Field], bool] | None = None) -> dict[str, Any]:
    """A unit's request keys from the event's `data` (fields with `request=False`, or `skip(field)`, left out)."""
    out: dict[str, Any] = {}
    for f in panel.fields:
        if not f.request or (skip is not None and skip(f)):
            continue
        value = data.get(unit[f.key])
        if value is None or value == "":
            if f.missing is not None:
                out[f.key] = f.missing
            continue
        out[f.key] = f.cast(value) if f.cast is not None else value
    return out


__all__ = ["Field", "UnitsPanel", "build_unit", "image_field", "enabled_field", "model_names", "wire_models",
           "image_value", "read_unit"]
