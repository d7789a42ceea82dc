"""Submit-time checks of a request against this server: text is proper Unicode, names (sampler, schedule,
VAE, LoRAs, text encoders, upscalers) resolve now rather than after the job waited in the queue, and a
path given where a name is expected stays inside the models folder. Each failure names the JSON path."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from sdcodex.core.errors import CodexError, ValidationError
from sdcodex.core.prompt_syntax import lora_tag_names
from sdcodex.core.request import json_path

#: A1111's latent upscale modes (hires `upscaler` values that need no model file)
LATENT_UPSCALE_MODES = ("Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                        "Latent (nearest)", "Latent (nearest-exact)")


def check_unicode(value: Any, path: tuple[Any, ...] = ()) -> None:
    """Refuse strings that cannot be stored as UTF-8 (a lone surrogate such as "\\ud800"), keys included."""
    if isinstance(value, str):
        bad = _surrogate_at(value)
        if bad is not None:
            raise ValidationError(f"is not valid Unicode text (lone surrogate {value[bad]!r} at character {bad})",
                                  field=json_path(path) if path else "(request)",
                                  allowed="text without unpaired surrogates")
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and _surrogate_at(k) is not None:
                raise ValidationError("a key is not valid Unicode text (lone surrogate)",
                                      field=json_path(path + ("(key)",)), allowed="text without unpaired surrogates")
            check_unicode(v, path + (k,))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_unicode(v, path + (i,))


def _surrogate_at(text: str) -> int | None:
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        return exc.start


def looks_like_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.startswith("~") or os.path.isabs(ref)


def confine(ref: str, models_dir: Path, field: str) -> str:
    """The reference to use for `ref`: a name is returned as is; a path must lead inside the models folder
    (no `..`, no `~`, no other folder, never the server's working directory) and comes back absolute.
    The error never says where the path led."""
    if not looks_like_path(ref):
        return ref
    root = Path(os.path.abspath(models_dir))
    if not ref.startswith("~") and "\x00" not in ref:
        try:  # lexical: `..` cannot climb out; links the owner put inside the folder are followed
            target = Path(os.path.abspath(ref if os.path.isabs(ref) else root / ref))
            target.relative_to(root)
            if target.exists() or os.path.isabs(ref):
                return str(target)
            if not Path(ref).exists():  # a relative name such as "sub/model" that the resolver matches
                return ref
        except (ValueError, OSError, RuntimeError):
            pass
    raise ValidationError(f"{ref[:200]!r} is not in the models folder; give a name from the list or a path "
                          f"inside the models folder", field=field, allowed="names listed by /api/v1/models")


class NameChecker:
    """Resolves the names of one request against a model provider (LocalModels) before it is queued."""

    def __init__(self, models: Any) -> None:
        self.models = models
        self.models_dir = Path(getattr(models, "models_dir", "models"))

    def confine_paths(self, request: dict[str, Any]) -> dict[str, Any]:
        """A copy of `request` whose path-like references are checked (and made absolute) against the models
        folder. Runs before the model is resolved, so no reference is looked up relative to the server's
        working directory."""
        out = dict(request)
        root = self.models_dir
        for key in ("model", "vae", "upscaler"):
            if isinstance(out.get(key), str):
                out[key] = confine(out[key], root, key)
        if isinstance(out.get("text_encoders"), list):
            out["text_encoders"] = [confine(r, root, f"text_encoders[{i}]") if isinstance(r, str) else r
                                    for i, r in enumerate(out["text_encoders"])]
        if isinstance(out.get("loras"), list):
            out["loras"] = [dict(lo, name=confine(lo["name"], root, f"loras[{i}].name"))
                            if isinstance(lo, dict) and isinstance(lo.get("name"), str) else lo
                            for i, lo in enumerate(out["loras"])]
        if isinstance(out.get("hires"), dict) and isinstance(out["hires"].get("upscaler"), str):
            out["hires"] = dict(out["hires"], upscaler=confine(out["hires"]["upscaler"], root, "hires.upscaler"))
        return out

    def check(self, request: dict[str, Any], engine_cls: Any) -> None:
        """Every name in `request` (after `confine_paths`) resolves, or a 422 names the field."""
        prediction = getattr(engine_cls, "prediction", None)
        hires = request.get("hires") if isinstance(request.get("hires"), dict) else {}
        for where, block in (("", request), ("hires.", hires)):
            if block.get("sampler") is not None:
                check_sampler(str(block["sampler"]), prediction, where + "sampler")
            if block.get("scheduler") is not None:
                check_schedule(str(block["scheduler"]), where + "scheduler")
        vae = request.get("vae")
        if isinstance(vae, str) and vae.strip().lower() not in ("", "automatic", "auto", "none"):
            self._resolve(vae, "vae", "vae")
        for i, lora in enumerate(request.get("loras") or []):
            if isinstance(lora, dict) and isinstance(lora.get("name"), str):
                self._resolve(lora["name"], "lora", f"loras[{i}].name")
        if isinstance(request.get("prompt"), str):
            for name in lora_tag_names(request["prompt"]):  # `<lora:name:w>` tags in the prompt
                confine(name, self.models_dir, "prompt")
                self._resolve(name, "lora", "prompt")
        for i, ref in enumerate(request.get("text_encoders") or []):
            if isinstance(ref, str):
                self._convert(lambda r=ref: self.models.resolve_text_encoder(r), f"text_encoders[{i}]",
                              "text_encoder")
        if isinstance(request.get("upscaler"), str):
            self.check_upscaler(request["upscaler"], "upscaler", latent=False)
        if isinstance(hires.get("upscaler"), str):
            self.check_upscaler(hires["upscaler"], "hires.upscaler", latent=True)

    def _resolve(self, ref: str, kind: str, field: str) -> None:
        inventory = getattr(self.models, "inventory", None)
        if inventory is None:
            return
        self._convert(lambda: inventory.resolve(ref, kind=kind), field, kind)

    def _convert(self, resolve: Any, field: str, kind: str) -> None:
        """Run a resolver; its not-found error becomes a 422 on `field` listing the names of `kind`."""
        try:
            resolve()
        except CodexError as exc:
            allowed = exc.allowed if exc.allowed else self._names(kind)
            raise ValidationError(f"{exc.message}", field=field, allowed=allowed) from None

    def _names(self, kind: str) -> list[str]:
        try:
            return sorted({e.name for e in self.models.entries(kind=kind)}, key=str.lower)
        except CodexError:
            return []

    def upscaler_names(self, latent: bool) -> list[str]:
        from sdcodex.models.upscalers import PACKAGED, RESIZE_ONLY

        names = list(LATENT_UPSCALE_MODES) if latent else []
        return names + list(RESIZE_ONLY) + list(PACKAGED) + self._names("upscaler")

    def check_upscaler(self, name: str, field: str, *, latent: bool) -> None:
        allowed = self.upscaler_names(latent)
        if name in allowed or (looks_like_path(name) and Path(name).is_file()):  # a path: confined already
            return
        raise ValidationError(f"unknown upscaler {name[:200]!r}", field=field, allowed=allowed)


def check_sampler(name: str, prediction: Any, field: str) -> None:
    """A sampler name (A1111 spelling, alias, or "DPM++ 2M Karras" style) that exists and has a form for
    the engine's prediction type."""
    from sdcodex.core.sampler_table import has_no_equivalent, is_automatic, lookup_sampler, split_legacy_name
    from sdcodex.core.samplers import list_samplers

    part, _schedule = split_legacy_name(name)
    if is_automatic(part):
        return
    spec = lookup_sampler(part)
    allowed = ["Automatic"] + [s["name"] for s in list_samplers(prediction)]
    if spec is None:
        why = "has no Diffusers equivalent" if has_no_equivalent(part) else "is not a known sampler"
        raise ValidationError(f"sampler {name[:200]!r} {why}", field=field, allowed=allowed)
    if spec.name not in allowed:
        raise ValidationError(f"sampler {spec.name!r} cannot run on this engine's models", field=field,
                              allowed=allowed)


def check_schedule(name: str, field: str) -> None:
    from sdcodex.core.sampler_table import is_automatic, lookup_schedule
    from sdcodex.core.samplers import list_schedulers

    if is_automatic(name) or lookup_schedule(name) is not None:
        return
    raise ValidationError(f"schedule type {name[:200]!r} is not known", field=field,
                          allowed=["Automatic"] + [s["label"] for s in list_schedulers()])


def prompt_texts(request: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(JSON path, text) of every prompt in a request."""
    for key in ("prompt", "negative_prompt"):
        if isinstance(request.get(key), str):
            yield key, request[key]
    hires = request.get("hires")
    if isinstance(hires, dict):
        for key in ("prompt", "negative_prompt"):
            if isinstance(hires.get(key), str):
                yield f"hires.{key}", hires[key]
