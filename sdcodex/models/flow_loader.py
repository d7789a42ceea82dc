"""Offline loading of FLUX, SVD, HunyuanVideo (1.0/1.5) and WAN 2.2 models into pipeline components.

Diffusers folders load with ``from_pretrained(local_files_only=True)``; a tokenizer subfolder the folder lacks is
taken from ``<models_dir>/tokenizers/<name>/`` or named in a TokenizerMissingError with the command that fetches
it. Single files (a FLUX or WAN transformer in the original layout, plus separate VAE and text-encoder files
from the models folder) are handled by `flow_single` and end in the same LoadedModel. Separate text-encoder files
(`TEXT_ENCODER_SLOTS`): FLUX clip_l + t5xxl, WAN umt5, HunyuanVideo 1.0 llama (llava_llama3) + clip_l, Z-Image
qwen3_4b, Chroma t5xxl, Qwen-Image qwen_2.5_vl_7b, FLUX.2 dev mistral_3_small (as a text-only MistralModel),
FLUX.2 Klein qwen_3_4b / qwen_3_8b and LTX-2 gemma_3_12B (as a text-only Gemma3TextModel) (these with a Diffusers
folder of the model as the base, `NEEDS_BASE`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from sdcodex.core.enums import EngineKey, Prediction, Precision
from sdcodex.core.errors import ModelLoadError, TokenizerMissingError, ValidationError
from sdcodex.models.shapes import clip_text_config, decoder_lm_config, qwen_vl_config, t5_config
from sdcodex.models.build import build_module
from sdcodex.models.loader import LoadedModel, cached_short_hash, load_vae_file, resolve_dtype, resolve_ref
from sdcodex.models.processors import load_qwen_vl_processor
from sdcodex.models.model_configs import CONFIG_ROOT, bundled, configs_from
from sdcodex.models.safetensors_io import TensorView, open_mapped

FLOW_FAMILIES = (EngineKey.FLUX, EngineKey.SVD, EngineKey.HUNYUAN_VIDEO, EngineKey.HUNYUAN_VIDEO15,
                 EngineKey.WAN22_TI2V_5B, EngineKey.WAN22_T2V_A14B, EngineKey.WAN22_I2V_A14B, EngineKey.Z_IMAGE,
                 EngineKey.CHROMA, EngineKey.SD3, EngineKey.QWEN_IMAGE, EngineKey.QWEN_IMAGE_EDIT, EngineKey.FLUX2,
                 EngineKey.FLUX2_KLEIN, EngineKey.LTX2)
#: families whose VAE is the 2-D AutoencoderKL (a separate `vae` file loads with loader.load_vae_file)
KL_VAE_FAMILIES = (EngineKey.FLUX, EngineKey.Z_IMAGE, EngineKey.CHROMA, EngineKey.SD3)
#: families whose separate `vae` file is an AutoencoderKL-layout file of another class (FLUX.2: + batch-norm stats)
KL_LAYOUT_VAES: dict[EngineKey, str] = {EngineKey.FLUX2: "AutoencoderKLFlux2",
                                        EngineKey.FLUX2_KLEIN: "AutoencoderKLFlux2"}
#: tokenizer slot of a family -> the cache-models entry that fetches it (models/tokenizers/<name>/)
TOKENIZER_SOURCES: dict[tuple[EngineKey, str], str] = {
    (EngineKey.FLUX, "tokenizer_2"): "tokenizer-t5-xxl",
    (EngineKey.WAN22_TI2V_5B, "tokenizer"): "tokenizer-umt5-xxl",
    (EngineKey.WAN22_T2V_A14B, "tokenizer"): "tokenizer-umt5-xxl",
    (EngineKey.WAN22_I2V_A14B, "tokenizer"): "tokenizer-umt5-xxl",
    (EngineKey.HUNYUAN_VIDEO, "tokenizer"): "tokenizer-llama-hunyuan",
    (EngineKey.Z_IMAGE, "tokenizer"): "tokenizer-qwen3",
    (EngineKey.CHROMA, "tokenizer"): "tokenizer-t5-xxl",
    (EngineKey.SD3, "tokenizer_3"): "tokenizer-t5-xxl",  # SD3's T5-XXL tokenizer is FLUX's (google/t5-v1_1-xxl)
    (EngineKey.LTX2, "tokenizer"): "tokenizer-gemma3",  # Lightricks/LTX-2 tokenizer/ (Gemma 3)
}
_WAN = (EngineKey.WAN22_TI2V_5B, EngineKey.WAN22_T2V_A14B, EngineKey.WAN22_I2V_A14B)
#: text-encoder slots of the families that take separate text-encoder files:
#: slot -> (detection names it takes, architecture an unrecognised-size file must have, class)
TEXT_ENCODER_SLOTS: dict[EngineKey, dict[str, tuple[tuple[str, ...], str, str]]] = {
    EngineKey.FLUX: {"text_encoder": (("clip_l",), "clip", "CLIPTextModel"),
                     "text_encoder_2": (("t5xxl",), "t5", "T5EncoderModel")},
    **{fam: {"text_encoder": (("umt5",), "", "UMT5EncoderModel")} for fam in _WAN},
    EngineKey.HUNYUAN_VIDEO: {"text_encoder": (("llama",), "llama-type", "LlamaModel"),
                              "text_encoder_2": (("clip_l",), "clip", "CLIPTextModel")},
    EngineKey.Z_IMAGE: {"text_encoder": (("qwen3_4b",), "qwen3", "Qwen3Model")},
    # FLUX.2 dev: ComfyUI split_files/text_encoders/mistral_3_small_flux2_*.safetensors, the language model of
    # Mistral3ForConditionalGeneration; built as a MistralModel (text only): the pipeline reads its hidden states
    # only (the vision tower is for caption upsampling, which this app does not run)
    EngineKey.FLUX2: {"text_encoder": (("mistral3_small", "llama"), "llama-type", "MistralModel")},
    # LTX-2: ComfyUI text_encoders/gemma_3_12B_it*.safetensors, Gemma3ForConditionalGeneration's language model; built
    # as a Gemma3TextModel (text only): LTX2Pipeline reads the hidden states of every layer, nothing else
    EngineKey.LTX2: {"text_encoder": (("gemma3_12b",), "gemma", "Gemma3TextModel")},
    # FLUX.2 Klein 4B / 9B: ComfyUI split_files/text_encoders/qwen_3_4b.safetensors / qwen_3_8b*.safetensors
    EngineKey.FLUX2_KLEIN: {"text_encoder": (("qwen3_4b", "qwen3_8b"), "qwen3", "Qwen3ForCausalLM")},
    # Qwen-Image / Edit: ComfyUI split_files/text_encoders/qwen_2.5_vl_7b.safetensors (language model + vision tower)
    **{fam: {"text_encoder": (("qwen2_5_vl",), "llama-type", "Qwen2_5_VLForConditionalGeneration")}
       for fam in (EngineKey.QWEN_IMAGE, EngineKey.QWEN_IMAGE_EDIT)},
    EngineKey.CHROMA: {"text_encoder": (("t5xxl",), "t5", "T5EncoderModel")},
    # SD3/SD3.5: stabilityai/stable-diffusion-3.5-large text_encoders/clip_l, clip_g, t5xxl_fp16.safetensors
    EngineKey.SD3: {"text_encoder": (("clip_l",), "clip", "CLIPTextModelWithProjection"),
                    "text_encoder_2": (("clip_g",), "clip", "CLIPTextModelWithProjection"),
                    "text_encoder_3": (("t5xxl",), "t5", "T5EncoderModel")},
}
#: families whose separate files replace parts of a Diffusers folder of the model, which must be there (the
#: processor, tokenizer and text-encoder config come from it): a single transformer file needs that base too
NEEDS_BASE = (EngineKey.QWEN_IMAGE, EngineKey.QWEN_IMAGE_EDIT, EngineKey.FLUX2, EngineKey.FLUX2_KLEIN, EngineKey.LTX2)
#: text-only classes a multimodal text encoder's language-model file is built as: class -> its text config's model type
TEXT_ONLY_CLASSES = {"MistralModel": "mistral", "Gemma3TextModel": "gemma3_text"}
#: families whose VAE is a Wan 2.1-layout video VAE (a separate `vae` file loads with load_wan_vae_file): the class
WAN_LAYOUT_VAES: dict[EngineKey, str] = {EngineKey.WAN22_TI2V_5B: "AutoencoderKLWan",
                                         EngineKey.WAN22_T2V_A14B: "AutoencoderKLWan",
                                         EngineKey.WAN22_I2V_A14B: "AutoencoderKLWan",
                                         EngineKey.QWEN_IMAGE: "AutoencoderKLQwenImage",
                                         EngineKey.QWEN_IMAGE_EDIT: "AutoencoderKLQwenImage"}
#: families whose transformer reads several text-encoder layers side by side: (layers stacked, config key of the
#: transformer's text input width), so a text-encoder file of another width is refused at load, naming it
STACKED_TEXT_LAYERS: dict[EngineKey, tuple[int, str]] = {EngineKey.FLUX2: (3, "joint_attention_dim"),
                                                         EngineKey.FLUX2_KLEIN: (3, "joint_attention_dim")}
#: plain pipeline settings (not modules) that a pipeline needs again when rebuilt for another task
PIPELINE_SETTINGS = ("boundary_ratio", "expand_timesteps", "is_distilled")


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


def builtin_tokenizer(family: EngineKey, slot: str) -> Any | None:
    """The CLIP tokenizer a family's slot uses, built in from the bundled tokenizer config (pad token, length);
    None when the slot is not a bundled CLIP tokenizer (T5/UMT5/Llama/Qwen tokenizers come from models/tokenizers/)."""
    path = CONFIG_ROOT / family.value / slot / "tokenizer_config.json"
    if not path.is_file():
        return None
    from sdcodex.models.tokenizers import clip_tokenizer

    cfg = json.loads(path.read_text())
    return clip_tokenizer(pad_token=cfg.get("pad_token", "<|endoftext|>"),
                          model_max_length=int(cfg.get("model_max_length", 77)))


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
        raise ModelLoadError(f"{path}: not a FLUX/SVD/HunyuanVideo/WAN 2.2/Z-Image/Chroma/FLUX.2 model", field="family",
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
    elif family is EngineKey.SD3:
        variant["model"] = ("sd3_medium" if not config.get("qk_norm") else
                            "sd35_medium" if config.get("dual_attention_layers") else "sd35_large")
    elif family.value.startswith("wan"):
        variant["experts"] = 2 if components.get("transformer_2") is not None else 1
        variant["boundary_ratio"] = components.get("boundary_ratio")
    elif family is EngineKey.FLUX2_KLEIN:
        variant["step_distilled"] = bool(components.get("is_distilled", False))
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
            kwargs[slot] = builtin_tokenizer(fam, slot) or load_tokenizer(tokenizer_folder(fam, slot, models_dir))
    if index.get("processor", [None, None])[1] == "Qwen2VLProcessor" and "processor" not in kwargs:
        # transformers builds Qwen2VLProcessor only with torchvision (its video processor): ours is images-only
        kwargs["processor"] = load_qwen_vl_processor(path / "processor")
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
                       dtype=getattr(denoiser, "dtype", torch.float32), short_hash=cached_short_hash(path),
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
    resolved = resolve_ref(path, models_dir)
    text_encoders = [str(t) for t in text_encoders]
    check_component_files(text_encoders, vae, models_dir)
    if resolved.is_dir():
        loaded = load_flow_folder(resolved, family=wanted, dtype=dtype, device=device, models_dir=models_dir)
        if vae is not None or text_encoders:
            folder_configs = {**configs_from(resolved), **configs_from(configs)}
            parts = separate_components(loaded.family, text_encoders, vae, folder_configs, dtype, device, models_dir)
            loaded.components.update(parts)
            loaded.__dict__.pop("_pipelines", None)
            loaded.variant["separate_files"] = sorted(parts)
        return loaded
    from sdcodex.models.flow_single import load_single_file

    return load_single_file(resolved, wanted=wanted, text_encoders=text_encoders, vae=vae, dtype=dtype, device=device,
                            models_dir=models_dir, configs=configs_from(configs), transformer_2=transformer_2)


def component_path(ref: str | Path, kind: str, models_dir: str | Path | None) -> Path:
    """A separate component file: an existing path as is, else a name of that kind in the models folder."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    from sdcodex.core.errors import ModelNotFoundError
    from sdcodex.models.inventory import Inventory

    inventory = Inventory(models_dir)
    try:
        return Path(inventory.resolve(str(ref), kind=kind).path)
    except ModelNotFoundError:  # a file of another kind: found anyway, so the check can name its real kind
        return Path(inventory.resolve(str(ref), kind=None).path)


def check_component_files(text_encoders: Iterable[str], vae: str | Path | None,
                          models_dir: str | Path | None) -> None:
    """Each separate file must be what its request key says (a text encoder, a VAE), from its header."""
    from sdcodex.models.detect import detect_path

    wanted = [(f"text_encoders[{i}]", ref, "text_encoder") for i, ref in enumerate(text_encoders)]
    if vae is not None:
        wanted.append(("vae", vae, "vae"))
    for field, ref, kind in wanted:
        path = component_path(ref, kind, models_dir)
        found = detect_path(path)
        if found.kind != kind:
            raise ModelLoadError(f"{path}: is a {found.kind} file, not a {kind.replace('_', ' ')}", field=field,
                                 allowed=[kind])


def _architecture(keys: list[str]) -> str:
    if any(k.endswith("self_attn.q_proj.weight") for k in keys) and any("position_embedding" in k for k in keys):
        return "clip"
    if any(k.endswith("SelfAttention.q.weight") for k in keys):
        return "t5"
    if any(k.endswith("mlp.gate_proj.weight") for k in keys):
        if any(k.endswith("pre_feedforward_layernorm.weight") for k in keys):
            return "gemma"
        return "qwen3" if any(k.endswith("self_attn.q_norm.weight") for k in keys) else "llama-type"
    return "unknown"


def text_encoder_slot(family: EngineKey, path: Path, field: str, taken: Iterable[str] = ()) -> tuple[str, str]:
    """(slot, prefix) a text-encoder file fills for `family`; a file of another kind is refused naming its kind."""
    from sdcodex.models.detect import detect_file

    slots = TEXT_ENCODER_SLOTS.get(family)
    if not slots:
        raise ModelLoadError(f"{family.value} takes no separate text-encoder files", field=field)
    det = detect_file(path)
    name = str(det.variant.get("text_encoder") or "unknown")
    handle = open_mapped(path)
    keys = handle.keys()
    arch = _architecture(keys)
    if "text_encoders" in det.variant:
        raise ModelLoadError(f"{path}: holds several text encoders ({', '.join(det.variant['text_encoders'])}); "
                             "give one file per text encoder", field=field)
    for slot, (names, size_free_arch, _) in slots.items():
        # a file of no known size fills the first free slot of its architecture (`taken`: slots already filled), so
        # two such CLIP files given in order fill SD3's CLIP-L then CLIP-G slots
        if name in names or (name == "unknown" and size_free_arch and arch == size_free_arch and slot not in taken):
            return slot, det.prefix
    real = name if name != "unknown" else f"{arch} (of no known size)"
    takes = [n for names, _, _ in slots.values() for n in names]
    raise ModelLoadError(f"{path}: is a {real} text encoder; {family.value} takes {' + '.join(takes)}", field=field,
                         allowed=takes)


def _state(handle: Any, keymap: dict[str, str], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Tensors for a key map; two names of one file tensor (tied weights) share one tensor."""
    view, by_file, out = TensorView(handle, keymap, dtype), {}, {}
    for local, file_key in keymap.items():
        if file_key not in by_file:
            by_file[file_key] = view[local]
        out[local] = by_file[file_key]
    return out


def load_text_encoder_file(path: Path, slot_class: str, prefix: str, config: dict[str, Any],
                           dtype: torch.dtype | None, device: str) -> torch.nn.Module:
    """A CLIP-L, T5-XXL, UMT5, Llama (HunyuanVideo's llava_llama3) or Qwen3 (Z-Image) text encoder from its own file,
    built empty from `config` (the base folder's text-encoder config)."""
    from sdcodex.models.convert_flow import text_encoder_keys

    handle = open_mapped(path)
    keys = handle.keys()
    if slot_class in TEXT_ONLY_CLASSES and "text_config" in config:  # the folder's multimodal config: its language model
        config = {**config["text_config"], "model_type": TEXT_ONLY_CLASSES[slot_class]}
    kind = {"CLIPTextModel": "clip", "CLIPTextModelWithProjection": "clip", "LlamaModel": "llama",
            "MistralModel": "llama", "Gemma3TextModel": "llama", "Qwen3Model": "llama", "Qwen3ForCausalLM": "llama_causal",
            "Qwen2_5_VLForConditionalGeneration": "qwen_vl"}.get(slot_class, "t5")
    rule = {"clip": clip_text_config, "t5": t5_config, "llama": decoder_lm_config, "llama_causal": decoder_lm_config,
            "qwen_vl": qwen_vl_config}.get(kind)
    if kind == "qwen_vl":  # detection's prefix is the language model's; the vision tower sits beside it (`visual.`)
        for tail in ("model.language_model.", "model."):
            if prefix.endswith(tail):
                prefix = prefix[: -len(tail)]
                break
    if rule is not None:  # widths, layers and heads from the file; the rest from `config`
        local = {k[len(prefix):]: handle.shape(k) for k in keys if k.startswith(prefix)}
        try:
            config = rule(local, config)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{path}: {exc.message}", field=exc.field) from None

    def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        expected = set(module.state_dict())
        out = _state(handle, text_encoder_keys(keys, prefix, kind, expected), dtype)
        if "text_projection.weight" in expected and "text_projection.weight" not in out:
            # a CLIP-L file saved without its projection (FLUX-style clip_l): SD3 then uses the pooled output as is,
            # which is what an identity projection gives (ComfyUI does the same)
            width = int(config["hidden_size"])
            out["text_projection.weight"] = torch.eye(int(config.get("projection_dim", width)), width,
                                                      dtype=dtype or torch.float32)
        return out

    module = build_module(slot_class, config, state, source=path, component=slot_class)
    return module.to(device=device, dtype=dtype).eval() if dtype is not None else module.to(device).eval()


def load_wan_vae_file(path: Path, config: dict[str, Any], dtype: torch.dtype | None, device: str,
                      family: str | None = None, model_class: str = "AutoencoderKLWan") -> torch.nn.Module:
    """An AutoencoderKLWan from a separate file: the Diffusers layout, or the original Wan-Video layout of
    ComfyUI's wan_2.1_vae / wan2.2_vae.safetensors (converted by `convert_flow.wan_vae_keymap`, its config read
    from the shapes). Optional 'vae.' / 'first_stage_model.' prefix. A VAE whose latent channels are not the
    model's (`config` z_dim) is refused naming both. `model_class` AutoencoderKLQwenImage: Qwen-Image's VAE, which
    has the Wan 2.1 VAE's modules and names (ComfyUI's qwen_image_vae.safetensors is in the Wan-Video layout)."""
    from sdcodex.models import convert_flow as cv

    handle = open_mapped(path)
    keys = handle.keys()
    original = next((p for p in ("", "vae.", "first_stage_model.") if f"{p}decoder.middle.0.residual.0.gamma" in keys),
                    None)
    if original is not None:
        local = {k[len(original):]: k for k in keys if k.startswith(original)}
        shapes = {k: handle.shape(v) for k, v in local.items()}
        _fits(path, shapes["conv2.weight"][0] if "conv2.weight" in shapes else None, config, family)
        try:
            config = cv.wan_vae_config(shapes, config)
            keymap = {ours: local[theirs] for ours, theirs in cv.wan_vae_keymap(list(local)).items()}
        except ModelLoadError as exc:
            raise ModelLoadError(f"{path}: {exc.message}", field="vae") from exc
    else:
        prefix = next((p for p in ("vae.", "first_stage_model.", "") if f"{p}decoder.conv_in.weight" in keys), None)
        if prefix is None:
            raise ModelLoadError(f"{path}: no WAN VAE weights (decoder.conv_in.weight or decoder.conv1.weight) in "
                                 "this file", field="vae")
        keymap = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
        _fits(path, handle.shape(f"{prefix}post_quant_conv.weight")[0]
              if f"{prefix}post_quant_conv.weight" in keys else None, config, family)
    if model_class != "AutoencoderKLWan":  # the Wan 2.1 form only: keep the fields the class takes
        import inspect

        from sdcodex.models.build import model_class as class_of

        accepted = set(inspect.signature(class_of(model_class).__init__).parameters) | {"_class_name"}
        config = {k: v for k, v in config.items() if k in accepted}
    return build_module(model_class, config, _state(handle, keymap, dtype), source=path, component="vae",
                        device=device)


def load_ltx2_vae_file(path: Path, config: dict[str, Any], dtype: torch.dtype | None, device: str) -> torch.nn.Module:
    """LTX-2's video VAE (AutoencoderKLLTX2Video) from its own file: Lightricks' layout (the all-in-one file's `vae.`
    part, bare or under `vae.`; converted by `convert_flow.ltx2_vae_keymap`) or Diffusers' names. Built with the
    model's VAE config (the base folder's): a file of another shape is named tensor by tensor by the builder."""
    from sdcodex.models import convert_flow as cv

    handle = open_mapped(path)
    keys = handle.keys()
    prefix = next((p for p in ("vae.", "") if f"{p}decoder.conv_in.conv.weight" in keys), None)
    if prefix is None:
        raise ModelLoadError(f"{path}: no LTX-2 video VAE weights (decoder.conv_in.conv.weight) in this file",
                             field="vae")
    local = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
    original = any(k in local for k in cv.LTX2_VAE_STATS)
    keymap = ({ours: local[theirs] for ours, theirs in cv.ltx2_vae_keymap(list(local)).items()} if original
              else local)
    return build_module("AutoencoderKLLTX2Video", config, _state(handle, keymap, dtype), source=path, component="vae",
                        device=device)


def _fits(path: Path, latent_channels: int | None, config: Mapping[str, Any], family: str | None) -> None:
    """A WAN VAE whose latent channels are not the model's is a ModelLoadError naming both."""
    wanted = config.get("z_dim")
    if latent_channels is None or wanted is None or int(latent_channels) == int(wanted):
        return
    kind = {16: "Wan 2.1 (16-channel)", 48: "Wan 2.2 (48-channel)"}.get(int(latent_channels),
                                                                       f"{latent_channels}-channel")
    raise ModelLoadError(f"{path}: is a {kind} VAE; {family or 'this model'} takes a {wanted}-channel VAE "
                         f"({'wan2.2_vae' if int(wanted) == 48 else 'wan_2.1_vae'})", field="vae",
                         allowed=[f"{wanted} latent channels"])


def separate_components(family: EngineKey, text_encoders: list[str], vae: str | Path | None,
                        configs: Mapping[str, dict], dtype: torch.dtype | None, device: str,
                        models_dir: str | Path | None) -> dict[str, Any]:
    """Pipeline components from separate files: {'vae': ..., 'text_encoder': ..., 'text_encoder_2': ...}.
    Configs come from `configs` (the base folder's or the caller's) or the bundled real-model configs."""
    def config(slot: str) -> dict[str, Any]:
        found = configs.get(slot) or bundled(family, slot)
        if found is None:
            raise ModelLoadError(f"no config for the {family.value} {slot}", field="model")
        return dict(found)

    out: dict[str, Any] = {}
    for i, ref in enumerate(text_encoders):
        field = f"text_encoders[{i}]"
        path = component_path(ref, "text_encoder", models_dir)
        slot, prefix = text_encoder_slot(family, path, field, taken=out)
        if slot in out:
            raise ModelLoadError(f"{path}: a second file for the {slot} slot", field=field)
        cls, cfg = TEXT_ENCODER_SLOTS[family][slot][2], config(slot)
        if cls == "LlamaModel" and cfg.get("model_type", "llama") != "llama":  # HunyuanVideo-I2V's LLaVA encoder
            raise ModelLoadError(f"{path}: this model's text encoder is a {cfg.get('model_type')} model (text + "
                                 "vision tower), not a plain Llama; a Llama text-encoder file cannot replace it",
                                 field=field, allowed=["llama"])
        out[slot] = load_text_encoder_file(path, cls, prefix, cfg, dtype, device)
        stacked = STACKED_TEXT_LAYERS.get(family)
        wanted = (configs.get("transformer") or {}).get(stacked[1]) if stacked else None
        width = getattr(getattr(out[slot], "config", None), "hidden_size", None)
        if wanted and width and stacked[0] * int(width) != int(wanted):
            raise ModelLoadError(f"{path}: a text encoder {width} wide; this {family.value} transformer reads "
                                 f"{stacked[0]} layers of a {int(wanted) // stacked[0]}-wide one", field=field,
                                 allowed=[f"hidden size {int(wanted) // stacked[0]}"])
    if vae is not None:
        path = component_path(vae, "vae", models_dir)
        if family in KL_VAE_FAMILIES:
            out["vae"] = load_vae_file(path, config("vae"), dtype, device)
        elif family in KL_LAYOUT_VAES:
            out["vae"] = load_vae_file(path, config("vae"), dtype, device, KL_LAYOUT_VAES[family])
        elif family is EngineKey.LTX2:
            out["vae"] = load_ltx2_vae_file(path, config("vae"), dtype, device)
        elif family in WAN_LAYOUT_VAES:
            out["vae"] = load_wan_vae_file(path, config("vae"), dtype, device, family.value, WAN_LAYOUT_VAES[family])
        else:
            raise ModelLoadError(f"{family.value} takes no separate VAE file yet", field="vae")
    return out


__all__ = ["load_flow_model", "load_flow_folder", "tokenizer_folder", "is_flow_family", "FLOW_FAMILIES",
           "TOKENIZER_SOURCES", "sniff_family", "check_component_files", "separate_components", "TEXT_ENCODER_SLOTS",
           "text_encoder_slot", "bundled", "component_path", "builtin_tokenizer", "load_text_encoder_file", "NEEDS_BASE",
           "WAN_LAYOUT_VAES", "load_wan_vae_file", "load_ltx2_vae_file"]
