"""Offline loading of FLUX, SVD, HunyuanVideo (1.0/1.5) and WAN 2.2 models into pipeline components.

Diffusers folders load with ``from_pretrained(local_files_only=True)``; a tokenizer subfolder the folder lacks is
taken from ``<models_dir>/tokenizers/<name>/`` or named in a TokenizerMissingError with the command that fetches
it. Single files (a FLUX or WAN transformer in the original layout, plus separate VAE and text-encoder files
from the models folder) are handled by `flow_single` and end in the same LoadedModel.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch

from sdcodex.core.enums import EngineKey, Prediction, Precision
from sdcodex.core.errors import ModelLoadError, TokenizerMissingError, ValidationError
from sdcodex.models.loader import LoadedModel, _resolve_ref, _short_hash, resolve_dtype

FLOW_FAMILIES = (EngineKey.FLUX, EngineKey.SVD, EngineKey.HUNYUAN_VIDEO, EngineKey.HUNYUAN_VIDEO15,
                 EngineKey.WAN22_TI2V_5B, EngineKey.WAN22_T2V_A14B, EngineKey.WAN22_I2V_A14B)
#: tokenizer slot of a family -> the cache-models entry that fetches it (models/tokenizers/<name>/)
TOKENIZER_SOURCES: dict[tuple[EngineKey, str], str] = {
    (EngineKey.FLUX, "tokenizer_2"): "tokenizer-t5-xxl",
    (EngineKey.WAN22_TI2V_5B, "tokenizer"): "tokenizer-umt5-xxl",
    (EngineKey.WAN22_T2V_A14B, "tokenizer"): "tokenizer-umt5-xxl",
    (EngineKey.WAN22_I2V_A14B, "tokenizer"): "tokenizer-umt5-xxl",
    (EngineKey.HUNYUAN_VIDEO, "tokenizer"): "tokenizer-llama-hunyuan",
}
#: plain pipeline settings (not modules) that a pipeline needs again when rebuilt for another task
PIPELINE_SETTINGS = ("boundary_ratio", "expand_timesteps")


def is_flow_family(family: EngineKey | str | None) -> bool:
    try:
        return EngineKey(str(family)) in FLOW_FAMILIES
    except ValueError:
        return False


def tokenizer_folder(family: EngineKey, slot: str, models_dir: str | Path | None) -> Path:
    """The local folder for a tokenizer no package ships; TokenizerMissingError names it and the fetch command."""
    name = TOKENIZER_SOURCES.get((family, slot), f"tokenizer-{family.value}-{slot}")
    root = Path(models_dir) if models_dir else Path("models")
    folder = root / "tokenizers" / name
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    raise TokenizerMissingError(
        f"the {family.value} {slot} is not in the model folder and {folder} does not exist; fetch it with "
        f"`sdcodex cache-models {name}` (or copy a tokenizer folder there)", field="model")


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many types for a broken folder
        raise TokenizerMissingError(f"{folder}: cannot read tokenizer ({str(exc)[:300]})", field="model") from exc


def folder_family(path: Path) -> tuple[EngineKey | None, dict[str, Any]]:
    from sdcodex.models.detect import detect_folder

    found = detect_folder(path)
    return found.family, dict(found.variant)


def sniff_family(path: Path) -> EngineKey | None:
    """The family of a folder or file from its content (None when it cannot be told)."""
    from sdcodex.models.detect import detect_path

    try:
        return detect_path(path).family
    except Exception:  # noqa: BLE001 - an unreadable file is the SD loader's error to report
        return None


def _check_family(path: Path, found: EngineKey | None, wanted: EngineKey | None) -> EngineKey:
    fam = wanted or found
    if found is not None and wanted is not None and found != wanted:
        raise ModelLoadError(f"{path}: this is a {found.value} model, it cannot be loaded as {wanted.value}",
                             field="family", allowed=[found.value])
    if fam is None or fam not in FLOW_FAMILIES:
        raise ModelLoadError(f"{path}: not a FLUX/SVD/HunyuanVideo/WAN 2.2 model", field="family",
                             allowed=[f.value for f in FLOW_FAMILIES])
    return fam


def describe(family: EngineKey, components: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    """Facts the engines need, read from the component configs (guidance embedding, task type, experts)."""
    transformer = components.get("transformer")
    config = dict(getattr(transformer, "config", {}) or {})
    if family is EngineKey.FLUX:
        variant["guidance_embed"] = bool(config.get("guidance_embeds", False))
        variant["type"] = "dev" if variant["guidance_embed"] else "schnell"
    elif family is EngineKey.HUNYUAN_VIDEO:
        variant["image_condition_type"] = config.get("image_condition_type")
        variant["i2v"] = config.get("image_condition_type") is not None
    elif family is EngineKey.HUNYUAN_VIDEO15:
        variant["i2v"] = config.get("task_type") == "i2v" and components.get("image_encoder") is not None
    elif family.value.startswith("wan"):
        variant["experts"] = 2 if components.get("transformer_2") is not None else 1
        variant["boundary_ratio"] = components.get("boundary_ratio")
    return variant


def _prediction(family: EngineKey, scheduler_config: dict[str, Any]) -> Prediction:
    if family is EngineKey.SVD:
        return Prediction(scheduler_config.get("prediction_type", "v_prediction"))
    return Prediction.FLOW


def load_flow_folder(path: Path, *, family: EngineKey | None, dtype: torch.dtype | None, device: str,
                     models_dir: str | Path | None, overrides: dict[str, Any] | None = None) -> LoadedModel:
    """A Diffusers folder of one of the flow/video families, offline; missing tokenizers from models/tokenizers.
    `overrides` are ready components (e.g. a converted single-file transformer) the folder's own replace."""
    import diffusers

    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a Diffusers folder (model_index.json missing or invalid: {exc})",
                             field="model") from exc
    found, variant = folder_family(path)
    fam = _check_family(path, found, family)
    kwargs: dict[str, Any] = dict(overrides or {})
    for slot, value in index.items():
        if (slot.startswith("tokenizer") and slot not in kwargs and isinstance(value, list) and value[0]
                and not (path / slot).is_dir()):
            kwargs[slot] = load_tokenizer(tokenizer_folder(fam, slot, models_dir))
    cls = getattr(diffusers, str(index.get("_class_name")), None)
    if cls is None:
        raise ModelLoadError(f"{path}: pipeline class {index.get('_class_name')!r} is not in this Diffusers",
                             field="model")
    try:
        pipe = cls.from_pretrained(path, local_files_only=True, dtype=dtype, **kwargs)
    except TokenizerMissingError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load Diffusers folder ({str(exc)[:400]})", field="model") from exc
    components = dict(pipe.components)
    for name in PIPELINE_SETTINGS:
        if name in pipe.config:
            components[name] = pipe.config[name]
    for name, module in components.items():
        if isinstance(module, torch.nn.Module):
            components[name] = module.to(device).eval()
    sched_cfg = dict(components["scheduler"].config)
    sched_cfg["_class_name"] = type(components["scheduler"]).__name__
    variant.update(format="diffusers", pipeline=index.get("_class_name"))
    denoiser = components.get("transformer") or components.get("unet")
    return LoadedModel(name=path.name, path=path, family=fam, components=components,
                       prediction=_prediction(fam, sched_cfg), variant=describe(fam, components, variant),
                       dtype=getattr(denoiser, "dtype", torch.float32), short_hash=_short_hash(path),
                       scheduler_config=sched_cfg)


def load_flow_model(path: str | Path, *, family: EngineKey | str | None = None, text_encoders: Iterable[str] = (),
                    vae: str | Path | None = None, precision: str | Precision = "auto", device: str = "cpu",
                    models_dir: str | Path | None = None, configs: str | Path | Mapping[str, dict] | None = None,
                    transformer_2: str | Path | None = None) -> LoadedModel:
    """Load a FLUX/SVD/HunyuanVideo/WAN 2.2 Diffusers folder or a FLUX/WAN single transformer file (offline).

    `text_encoders` and `vae` name separate files (paths or models-folder names); they replace the folder's or the
    base folder's own components. `configs` (a mapping or a Diffusers folder) overrides the component configs a
    single file is built with. `transformer_2` names the low-noise expert of a WAN A14B file explicitly (otherwise
    it is found by the `high_noise`/`low_noise` naming rule, see `expert_pair`).
    """
    dtype = resolve_dtype(precision, device)
    wanted = None
    if family is not None:
        try:
            wanted = EngineKey(str(family))
        except ValueError:
            raise ValidationError(f"unknown family {family!r}", field="family", allowed=EngineKey.values()) from None
    resolved = _resolve_ref(path, models_dir)
    text_encoders = [str(t) for t in text_encoders]
    check_component_files(text_encoders, vae, models_dir)
    if resolved.is_dir():
        loaded = load_flow_folder(resolved, family=wanted, dtype=dtype, device=device, models_dir=models_dir)
        if vae is not None or text_encoders:
            folder_configs = {**_configs_from(resolved), **_configs_from(configs)}
            parts = separate_components(loaded.family, text_encoders, vae, folder_configs, dtype, device, models_dir)
            loaded.components.update(parts)
            loaded.__dict__.pop("_pipelines", None)
            loaded.variant["separate_files"] = sorted(parts)
        return loaded
    from sdcodex.models.flow_single import load_single_file

    return load_single_file(resolved, wanted=wanted, text_encoders=text_encoders, vae=vae, dtype=dtype, device=device,
                            models_dir=models_dir, configs=_configs_from(configs), transformer_2=transformer_2)
