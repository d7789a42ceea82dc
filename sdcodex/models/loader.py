"""Offline loading of SD1.5 / SD2 / SDXL models into Diffusers pipeline components.

Single files (.safetensors; pickle only on explicit opt-in) are converted from the LDM layout with our own
tables (convert_ldm.py); the file is privately memory-mapped and its pages made resident on a background thread
while every module is built with empty (meta) parameters from a bundled config; the weights are then assigned
straight from the map: no random init, no second copy. Diffusers folders load with
``from_pretrained(local_files_only=True)``. Nothing is ever fetched from a hub.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from sdcodex.core.enums import EngineKey, Prediction, Precision
from sdcodex.core.errors import CodexError, ModelLoadError, ModelNotFoundError, PickleRefusedError, ValidationError
from sdcodex.models import convert_ldm as cv
from sdcodex.models import shapes
from sdcodex.models import quantized
from sdcodex.models.build import build_module
from sdcodex.models.detect_rules import linear_projections
from sdcodex.models.model_configs import (CONFIG_ROOT, bundled_config, config_beside,  # noqa: F401  (re-exported)
                                          configs_from)
from sdcodex.models.safetensors_io import TensorView, open_mapped
from sdcodex.models.tokenizers import clip_tokenizer
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SUPPORTED = (EngineKey.SD15, EngineKey.SD2, EngineKey.SDXL)
V_PRED_MARKERS = ("v_pred",)
ZERO_SNR_MARKERS = ("ztsnr",)  # A1111's marker key: trained with zero terminal SNR
#: SD2 file-name hints where nothing else says the prediction type (SD 2.x "512" base files are epsilon, "768" v)
SD2_NAME_HINTS = (("768", Prediction.V_PREDICTION), ("-v.", Prediction.V_PREDICTION), ("_v.", Prediction.V_PREDICTION),
                  ("512", Prediction.EPSILON), ("base", Prediction.EPSILON))
SD2_CONTEXT = 1024  # OpenCLIP-H's width: the cross-attention width of SD2 UNets
BARE_UNET_MARKER = "input_blocks.0.0.weight"


@dataclass
class LoadedModel:
    """A model ready to become a pipeline: ``PipelineClass(**components)``."""

    name: str
    path: Path
    family: EngineKey
    components: dict[str, Any]
    prediction: Prediction = Prediction.EPSILON
    variant: dict[str, Any] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32
    short_hash: str | None = None
    scheduler_config: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- small helpers
def resolve_dtype(precision: str | Precision, device: str | torch.device) -> torch.dtype | None:
    """The dtype to load in; None keeps the file's dtype. fp16 needs CUDA (ValidationError field 'precision').

    "file" (a loader-level choice, not a request value) keeps each tensor's dtype from the file: the tensors
    stay zero-copy views of safetensors' memory map, which is what a GPU upload or a dtype-matched load wants."""
    if str(precision) == "file":
        return None
    try:
        precision = Precision(str(precision))
    except ValueError:
        raise ValidationError(f"unknown precision {precision!r}", field="precision", allowed=Precision.values())
    cuda = torch.device(device).type == "cuda"
    if precision is Precision.AUTO:
        return torch.float16 if cuda else torch.float32
    if precision is Precision.FP16 and not cuda:
        raise ValidationError("fp16 needs a CUDA device; use fp32 or bf16 on CPU", field="precision",
                              allowed=["auto", "fp32", "bf16"])
    return {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}[precision]


def _materialize(source: Any, keys: Mapping[str, str], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Read (and cast) a component's tensors with one worker per torch thread: the cast of a large
    checkpoint is bound by page faults of the new memory, which threads overlap."""
    lazy = TensorView(source, keys, dtype)
    names = list(keys)
    workers = int(os.environ.get("SDCODEX_LOAD_WORKERS", "0")) or max(1, min(4, torch.get_num_threads()))
    if dtype is None or workers == 1 or len(names) < 8:  # no cast: views of the map, nothing to overlap
        return {name: lazy[name] for name in names}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="sdcodex-load") as pool:
        return dict(zip(names, pool.map(lazy.__getitem__, names)))


def _open_safetensors(path: Path):
    handle = open_mapped(path)
    return handle, handle.keys()


def _open_pickle(path: Path, allow_pickle: bool):
    if not allow_pickle:
        raise PickleRefusedError(
            f"{path}: pickle checkpoints ({path.suffix}) can run code when loaded and are refused; convert it to "
            ".safetensors or pass --allow-pickle (allow_pickle=True) if you trust the file", field="allow_pickle")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot read pickle checkpoint with weights_only=True ({exc})") from exc
    while isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: pickle checkpoint does not hold a state dict")
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    return tensors, list(tensors)


def _family_from_keys(keys: list[str], root: str, context: int | None = None) -> EngineKey | None:
    """SD1.5 vs SD2 vs SDXL from structure: SDXL has a second (OpenCLIP) text encoder and a label_emb UNet input; SD2
    an OpenCLIP text tower under cond_stage_model.model (or, for a UNet alone, a cross-attention width of 1024)."""
    parts = cv.split_components(keys, root)
    if "text_encoder_2" in parts or any(k.startswith("label_emb.") for k in parts.get("unet", {})):
        return EngineKey.SDXL
    if "unet" not in parts:
        return None
    te = parts.get("text_encoder")
    if (te and cv.is_open_clip(te)) or (te is None and context == SD2_CONTEXT):
        return EngineKey.SD2
    return EngineKey.SD15


def _unet_context(source: Any, keys: Iterable[str]) -> int | None:
    """The cross-attention width of an LDM UNet (its first attn2.to_k input width), None without attention."""
    key = next((k for k in sorted(keys) if k.endswith(".attn2.to_k.weight") and "time_stack" not in k), None)
    if key is None:
        return None
    shape = source.shape(key) if hasattr(source, "shape") else list(source[key].shape)
    return int(shape[1])


def _linear_projections(source: Any, keys: Iterable[str]) -> bool:
    """Linear attention projections (SD2's; SD1.x UNets have 1x1 convolutions): see detect_rules.linear_projections."""
    shape = (lambda k: source.shape(k)) if hasattr(source, "shape") else (lambda k: list(source[k].shape))
    return linear_projections({k: shape(k) for k in keys if k.endswith(".proj_in.weight")})


def sd2_prediction(path: Path, in_channels: int) -> tuple[Prediction, str]:
    """An SD2 file's prediction type where neither a config beside it, a marker key nor its metadata says one, and
    why: inpainting UNets (9 channels) are epsilon; else the file name (SD 2.x '512'/'base' files are epsilon, '768'
    or '-v' files v-prediction); else v-prediction, the 768-v flagship (Diffusers' single-file loader assumes the
    same for SD2 without a training step count)."""
    if in_channels == 9:
        return Prediction.EPSILON, "inpainting"
    name = path.name.lower()
    for hint, prediction in SD2_NAME_HINTS:
        if hint in name:
            return prediction, f"file name ({hint.strip('._')!r})"
    return Prediction.V_PREDICTION, "default for SD2 (768-v)"


def _metadata_prediction(source: Any) -> Prediction | None:
    value = str((getattr(source, "metadata", None) or {}).get("modelspec.prediction_type", "")).lower()
    return {"v": Prediction.V_PREDICTION, "v_prediction": Prediction.V_PREDICTION,
            "epsilon": Prediction.EPSILON, "eps": Prediction.EPSILON}.get(value)


def _detect_family(path: Path, keys: list[str], root: str) -> EngineKey:
    """Our structural check decides SD1.5/SDXL; detect.py (when present) names any other family for the error."""
    found = _family_from_keys(keys, root)
    if found is not None:
        return found
    other = None
    try:
        from sdcodex.models.detect import detect_file

        other = detect_file(path).family
    except Exception:  # detection is a nicety here; the error below stands without it
        pass
    what = f"a {other} model" if other else "not an SD1.5/SD2/SDXL checkpoint (no model.diffusion_model.* keys)"
    raise ModelLoadError(f"{path}: {what}; this loader handles SD1.5, SD2 and SDXL", field="family",
                         allowed=list(map(str, SUPPORTED)))


def cached_short_hash(path: Path, models_dir: str | Path | None = None) -> str | None:
    """The A1111 short hash if the models folder's hash cache already knows it. Loading never hashes a
    file (that costs seconds per GB); the inventory computes and caches hashes when they are asked for."""
    if models_dir is None:
        return None
    try:
        from sdcodex.models import hashing

        sha = hashing.HashCache(Path(models_dir) / hashing.CACHE_FILENAME).cached(path)
        return hashing.short_hash(sha) if sha else None
    except Exception:  # a hash is metadata; never fail a load for it
        return None


def resolve_ref(ref: str | Path, models_dir: str | Path | None) -> Path:
    path = Path(ref).expanduser()
    if path.exists():
        return path
    try:
        from sdcodex.models.inventory import Inventory  # type: ignore[import-not-found]
    except ImportError:
        raise ModelNotFoundError(f"model {str(ref)!r} not found: no such file or folder", field="model")
    found = Inventory(models_dir).resolve(str(ref))
    if found is None:
        raise ModelNotFoundError(f"model {str(ref)!r} not found in the models folder", field="model")
    return Path(getattr(found, "path", found))


# ------------------------------------------------------------------------------------------ building modules
def has_text_model_prefix(module: torch.nn.Module) -> bool:
    return any(k.startswith("text_model.") for k, _ in module.named_parameters())


def scheduler_from_config(config: dict):
    """A Diffusers scheduler from a config dict that names its class (`_class_name`, PNDM when absent)."""
    import diffusers

    cls = getattr(diffusers, config.get("_class_name", "PNDMScheduler"))
    return cls.from_config(config)


def load_vae_file(path: str | Path, config: dict, dtype: torch.dtype | None, device: str = "cpu",
                  model_class: str = "AutoencoderKL"):
    """An AutoencoderKL from a separate VAE file (LDM or Diffusers layout, optional 'first_stage_model.' prefix).
    `model_class` AutoencoderKLFlux2: FLUX.2's VAE (black-forest-labs flux2 ae.safetensors, ComfyUI's
    flux2-vae.safetensors), an AutoencoderKL plus the latents' batch-norm statistics (`bn.running_mean/var`)."""
    path = Path(path)
    if path.is_dir():
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(path, local_files_only=True, dtype=dtype).to(device).eval()
    source, keys = (_open_pickle(path, False) if path.suffix in PICKLE_SUFFIXES else _open_safetensors(path))
    local = {}
    for key in keys:
        for prefix in ("first_stage_model.", "vae."):
            if key.startswith(prefix):
                local[key[len(prefix):]] = key
                break
        else:
            if key.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "bn.")):
                local[key] = key
    if not local:
        raise ModelLoadError(f"{path}: no VAE weights found (expected encoder.*/decoder.* keys)", field="vae")
    try:  # widths and depth from the file; scaling factor and the rest from `config`
        config = shapes.kl_vae_config({k: list(source.shape(v) if hasattr(source, "shape") else source[v].shape)
                                       for k, v in local.items()}, config)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc.message}", field="vae") from None
    state = cv.convert_vae(TensorView(source, local, dtype), config)
    if "bn.running_mean" in state:  # a counter the files leave out; BatchNorm in eval mode never reads it
        state.setdefault("bn.num_batches_tracked", torch.tensor(0))
    return build_module(model_class, config, state, source=path, component="vae", device=device)


# ------------------------------------------------------------------------------------------------ public API
def load_model(ref: str | Path, *, family: EngineKey | str | None = None, vae: str | Path | None = None,
               precision: str | Precision = "auto", device: str = "cpu", allow_pickle: bool = False,
               models_dir: str | Path | None = None, configs: str | Path | Mapping[str, dict] | None = None,
               text_encoders: Iterable[str] = (), weights_dtype: str = "auto") -> LoadedModel:
    """Load an SD1.5/SDXL single file or Diffusers folder (offline). `configs` overrides bundled component configs.
    FLUX/SVD/HunyuanVideo/WAN load through flow_loader.load_flow_model (`text_encoders`: separate files).
    Single files may be .safetensors (plain, fp8, ComfyUI fp8_scaled) or .gguf (quantized weights stay quantized);
    `weights_dtype="fp8"` stores the denoiser's and text encoders' weights in fp8 (quantized.py).
    `variant["weights"]` says how the weights are stored."""
    if str(weights_dtype) not in quantized.WEIGHTS_DTYPES:
        raise ValidationError(f"unknown weights_dtype {weights_dtype!r}", field="weights_dtype",
                              allowed=list(quantized.WEIGHTS_DTYPES))
    from sdcodex.models import flow_loader  # FLUX / SVD / HunyuanVideo / WAN 2.2 load there
    if flow_loader.is_flow_family(family) or (family is None and flow_loader.is_flow_family(
            flow_loader.sniff_family(resolve_ref(ref, models_dir)))):
        loaded = flow_loader.load_flow_model(ref, family=family, vae=vae, precision=precision, device=device,
                                             models_dir=models_dir, configs=configs, text_encoders=text_encoders)
        return _weights_storage(loaded, str(weights_dtype))
    dtype = resolve_dtype(precision, device)
    path = resolve_ref(ref, models_dir)
    wanted = None
    if family is not None:
        try:
            wanted = EngineKey(str(family))
        except ValueError:
            raise ValidationError(f"unknown family {family!r}", field="family", allowed=EngineKey.values())
        if wanted not in SUPPORTED:
            raise ValidationError(f"this loader handles SD1.5, SD2 and SDXL, not {wanted}", field="family",
                                  allowed=list(map(str, SUPPORTED)))
    if path.is_dir():
        loaded = _load_folder(path, wanted, dtype, device, models_dir)
    else:
        loaded = _load_single_file(path, wanted, dtype, device, allow_pickle, configs_from(configs), models_dir)
    if vae is not None:
        vae_config = dict(loaded.components["vae"].config)
        loaded.components["vae"] = load_vae_file(Path(vae), vae_config, loaded.dtype, device)
        loaded.variant["vae"] = str(vae)
    return _weights_storage(loaded, str(weights_dtype))


def _weights_storage(loaded: LoadedModel, weights_dtype: str) -> LoadedModel:
    """Apply `weights_dtype` and record in variant["weights"] how the weights are stored (for the job info)."""
    if weights_dtype == "fp8":
        for name in quantized.FP8_COMPONENTS:
            module = loaded.components.get(name)
            if isinstance(module, torch.nn.Module):
                quantized.store_fp8(module)
    weights: dict[str, Any] = {"weights_dtype": weights_dtype}
    described = quantized.describe(loaded.components)
    if described:
        weights["quantized"] = described
    if loaded.path.is_file():
        from sdcodex.models.safetensors_io import read_shapes
        from sdcodex.models.weights_io import storage_facts

        try:
            shapes, dtypes, meta = read_shapes(loaded.path)
            weights["file_quantization"] = storage_facts(loaded.path, shapes, dtypes, meta)["quantization"]
        except CodexError:
            pass
    loaded.variant["weights"] = weights
    return loaded


def _load_single_file(path: Path, wanted: EngineKey | None, dtype: torch.dtype | None, device: str,
                      allow_pickle: bool, overrides: dict[str, dict],
                      models_dir: str | Path | None) -> LoadedModel:
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} not found", field="model")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        source, keys = _open_pickle(path, allow_pickle)
    elif path.suffix.lower() in (".safetensors", ".sft", ".gguf"):
        source, keys = _open_safetensors(path)
    else:
        raise ModelLoadError(f"{path}: unsupported file type {path.suffix!r}", field="model",
                             allowed=[".safetensors", ".gguf", "diffusers folder", *PICKLE_SUFFIXES])
    if BARE_UNET_MARKER in keys:  # a UNet alone without prefix (ComfyUI's GGUF UNets, diffusion_models files)
        fam = (EngineKey.SDXL if any(k.startswith("label_emb.") for k in keys) else
               EngineKey.SD2 if _unet_context(source, keys) == SD2_CONTEXT or _linear_projections(source, keys)
               else EngineKey.SD15)
        if wanted is not None and fam != wanted:
            raise ModelLoadError(f"{path}: this is a {fam} UNet, it cannot be loaded as {wanted}", field="family",
                                 allowed=[str(fam)])
        return _load_unet_only(path, fam, source, {k: k for k in keys}, dtype, device, overrides, models_dir)
    root = cv.find_root_prefix(keys)
    found = _detect_family(path, keys, root)
    if wanted is not None and found != wanted:
        raise ModelLoadError(f"{path}: this is a {found} checkpoint, it cannot be loaded as {wanted}",
                             field="family", allowed=[str(found)])
    fam = wanted or found
    if fam not in SUPPORTED:
        raise ModelLoadError(f"{path}: family {fam} is not loaded by the SD loader", field="family",
                             allowed=list(map(str, SUPPORTED)))
    parts = cv.split_components(keys, root)
    if "unet" in parts and not {"vae", "text_encoder", "text_encoder_2"} & set(parts):
        return _load_unet_only(path, fam, source, parts["unet"], dtype, device, overrides, models_dir)
    for needed in ("unet", "vae", "text_encoder") + (("text_encoder_2",) if fam is EngineKey.SDXL else ()):
        if needed not in parts:
            raise ModelLoadError(f"{path}: no {needed} weights in this file; a full {fam} checkpoint is needed "
                                 "(UNet-only files need a separate loader)", field="model")

    def config(name: str) -> dict:
        return dict(overrides.get(name) or bundled_config(fam, name))

    def shape(key: str) -> list[int]:
        return source.shape(key) if hasattr(source, "shape") else list(source[key].shape)

    local_shapes = {comp: {local: shape(full) for local, full in names.items()} for comp, names in parts.items()
                    if comp in shapes.SD_COMPONENTS}
    beside, beside_source = config_beside(path, fam.value)
    given = {**beside, **overrides}
    try:
        built, read = shapes.sd_configs(local_shapes, fam.value, given)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc.message}", field=exc.field) from None
    unet_cfg, vae_cfg = built["unet"], built["vae"]
    in_channels = int(unet_cfg["in_channels"])
    prediction, prediction_source = _prediction(path, source, keys, root, fam, in_channels, given)
    v_pred = prediction is Prediction.V_PREDICTION
    sched_cfg = dict(given.get("scheduler") or config("scheduler_v_prediction" if v_pred else "scheduler"))
    sched_cfg["prediction_type"] = prediction.value
    if any(k[len(root):] in ZERO_SNR_MARKERS for k in keys):
        sched_cfg["rescale_betas_zero_snr"] = True

    view = lambda name: _materialize(source, parts[name], dtype)  # noqa: E731
    unet_names = {ours: parts["unet"][local] for ours, local in cv.convert_unet(
        {local: local for local in parts["unet"]}, unet_cfg).items() if local in parts["unet"]}
    unet = build_module("UNet2DConditionModel", unet_cfg, cv.convert_unet(view("unet"), unet_cfg), source=path,
                        component="unet", names=unet_names)
    vae = build_module("AutoencoderKL", vae_cfg, cv.convert_vae(view("vae"), vae_cfg), source=path, component="vae")
    if cv.is_open_clip(parts["text_encoder"]):  # SD2: OpenCLIP-H, its layers up to the penultimate one
        parts["text_encoder"] = cv.open_clip_layers(parts["text_encoder"], built["text_encoder"]["num_hidden_layers"])
        convert_te = cv.convert_open_clip
    else:
        convert_te = cv.convert_clip_l
    te = build_module("CLIPTextModel", built["text_encoder"], lambda m: convert_te(
        view("text_encoder"), text_model_prefix=has_text_model_prefix(m)), source=path, component="text_encoder")
    components: dict[str, Any] = {"unet": unet, "vae": vae, "text_encoder": te,
                                  "tokenizer": _tokenizer(fam, "tokenizer")}
    if fam is EngineKey.SDXL:
        components["text_encoder_2"] = build_module(
            "CLIPTextModelWithProjection", built["text_encoder_2"], lambda m: cv.convert_open_clip(
                view("text_encoder_2"), text_model_prefix=has_text_model_prefix(m)), source=path,
            component="text_encoder_2")
        components["tokenizer_2"] = _tokenizer(fam, "tokenizer_2")
    else:
        components.update(safety_checker=None, feature_extractor=None)
    components["scheduler"] = scheduler_from_config(sched_cfg)
    components["image_encoder"] = None
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if name in components:
            components[name] = components[name].to(device)
    return LoadedModel(name=path.stem, path=path, family=fam, components=components,
                       prediction=Prediction.V_PREDICTION if v_pred else Prediction.EPSILON,
                       variant={"inpaint": in_channels == 9, "in_channels": in_channels, "format": "single_file",
                                "prefix": root, "architecture": read, "prediction": prediction.value,
                                "prediction_source": prediction_source,
                                "config_source": "configs" if overrides else beside_source or "shapes"},
                       dtype=unet.dtype, short_hash=cached_short_hash(path, models_dir), scheduler_config=dict(sched_cfg))


def _prediction(path: Path, source: Any, keys: list[str], root: str, fam: EngineKey, in_channels: int,
                given: Mapping[str, Mapping[str, Any]]) -> tuple[Prediction, str]:
    """The prediction type of a single file and where it was read: a `v_pred` marker key, a config beside the file or
    given (`parameterization: v` in NAME.yaml), the file's modelspec metadata; for SD2 then `sd2_prediction`; else
    epsilon."""
    if any(k[len(root):] in V_PRED_MARKERS for k in keys):
        return Prediction.V_PREDICTION, "v_pred key"
    declared = (given.get("scheduler") or {}).get("prediction_type")
    if declared in ("epsilon", "v_prediction"):
        return Prediction(declared), "config"
    meta = _metadata_prediction(source)
    if meta is not None:
        return meta, "metadata"
    if fam is EngineKey.SD2:
        return sd2_prediction(path, in_channels)
    return Prediction.EPSILON, "default"


def _load_unet_only(path: Path, fam: EngineKey, source: Any, keymap: dict[str, str], dtype: torch.dtype | None,
                    device: str, overrides: dict[str, dict], models_dir: str | Path | None) -> LoadedModel:
    """A UNet-only file (LDM layout): the UNet from the file, every other component from the first Diffusers folder
    of the same family in the models folder (the rule single FLUX/WAN transformer files follow)."""
    from sdcodex.models.flow_single import find_base

    base = find_base(fam, models_dir)
    if base is None:
        raise ModelLoadError(f"{path}: a UNet-only {fam} file needs the rest of its pipeline (VAE, text encoders): put "
                             f"a {fam} Diffusers folder in the models folder to take them from", field="model")
    unet_cfg = dict(overrides.get("unet") or json.loads((base / "unet" / "config.json").read_text()))
    try:  # the architecture the file's shapes show, from the base's config
        unet_cfg = shapes.unet_config({k: list(source.shape(v) if hasattr(source, "shape") else source[v].shape)
                                       for k, v in keymap.items()}, unet_cfg)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc.message}", field=exc.field) from None
    unet = build_module("UNet2DConditionModel", unet_cfg, cv.convert_unet(_materialize(source, keymap, dtype), unet_cfg),
                        source=path, component="unet", device=device)
    loaded = _load_folder(base, fam, dtype, device, models_dir, overrides={"unet": unet})
    loaded.name, loaded.path, loaded.short_hash = path.stem, path, cached_short_hash(path, models_dir)
    loaded.variant.update(format="single_file", unet_only=True, base=str(base))
    return loaded


def _tokenizer(family: EngineKey, slot: str):
    cfg = bundled_config(family, slot)
    return clip_tokenizer(pad_token=cfg.get("pad_token", "<|endoftext|>"),
                          model_max_length=int(cfg.get("model_max_length", 77)))


def _folder_family(path: Path, index: dict) -> EngineKey:
    name = str(index.get("_class_name", ""))
    if name.startswith("StableDiffusionXL") or "text_encoder_2" in index:
        return EngineKey.SDXL
    if name.startswith("StableDiffusion"):
        from sdcodex.models.detect import is_sd2_folder

        return EngineKey.SD2 if is_sd2_folder(path) else EngineKey.SD15
    raise ModelLoadError(f"{path}: pipeline {name or '(unknown)'} is not an SD1.5/SD2/SDXL Diffusers folder",
                         field="model", allowed=list(map(str, SUPPORTED)))


def _load_folder(path: Path, wanted: EngineKey | None, dtype: torch.dtype | None, device: str,
                 models_dir: str | Path | None, overrides: dict[str, Any] | None = None) -> LoadedModel:
    """A Diffusers folder via from_pretrained(local_files_only=True); our tokenizer fills a missing one; `overrides`
    are ready components that replace the folder's own."""
    import diffusers

    index_file = path / "model_index.json"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a Diffusers folder (model_index.json missing or invalid: {exc})",
                             field="model") from exc
    fam = _folder_family(path, index)
    if wanted is not None and fam != wanted:
        raise ModelLoadError(f"{path}: this is a {fam} model, it cannot be loaded as {wanted}", field="family",
                             allowed=[str(fam)])
    kwargs: dict[str, Any] = dict(overrides or {})
    for slot in ("tokenizer", "tokenizer_2"):
        if slot in index and not (path / slot).is_dir():
            kwargs[slot] = _tokenizer(fam, slot)
    for slot in ("safety_checker", "feature_extractor", "image_encoder"):
        if slot in index and not (path / slot).is_dir():
            kwargs[slot] = None
    cls = getattr(diffusers, str(index.get("_class_name")), diffusers.DiffusionPipeline)
    try:
        pipe = cls.from_pretrained(path, local_files_only=True, dtype=dtype, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load Diffusers folder ({str(exc)[:400]})", field="model") from exc
    components = dict(pipe.components)
    for slot in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if components.get(slot) is not None:
            components[slot] = components[slot].to(device).eval()
    sched_cfg = dict(components["scheduler"].config)
    in_channels = int(components["unet"].config.in_channels)
    return LoadedModel(
        name=path.name, path=path, family=fam, components=components,
        prediction=Prediction(sched_cfg.get("prediction_type") or "epsilon")
        if sched_cfg.get("prediction_type") in ("epsilon", "v_prediction") else Prediction.EPSILON,
        variant={"inpaint": in_channels == 9, "in_channels": in_channels, "format": "diffusers"},
        dtype=components["unet"].dtype, short_hash=cached_short_hash(path, models_dir), scheduler_config=sched_cfg)
