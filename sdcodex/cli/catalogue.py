"""Catalogue of the official Hugging Face repositories for each family, for `sdcodex cache-models`.

Each entry names the repository and allow-patterns of ONLY the files a diffusers folder needs (configs,
safetensors weights in the default precision, tokenizer files): no single-file checkpoints, no fp16/ema
variants, no *.bin/*.ckpt/*.pt/*.msgpack/*.onnx. `required` lists pattern groups of which at least one file must
exist, which is how a download is verified and how a changed repository layout is noticed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Used for a repository that is not in the catalogue.
DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = (
    "*.json", "*.safetensors", "*.txt", "*.model", "*tokenizer*",
)
DEFAULT_IGNORE_PATTERNS: tuple[str, ...] = (
    "*.bin", "*.ckpt", "*.pt", "*.pth", "*.msgpack", "*.onnx", "*.onnx_data", "*.h5", "*.gguf", ".gitattributes",
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass(frozen=True)
class Part:
    """One folder of a diffusers repository: which files to take and which must be present."""

    patterns: tuple[str, ...]
    required: tuple[tuple[str, ...], ...]


def _diffusers_model(folder: str) -> Part:
    w = f"{folder}/diffusion_pytorch_model"
    return Part((f"{folder}/config.json", f"{w}.safetensors", f"{w}-*-of-*.safetensors", f"{w}.safetensors.index.json"),
                ((f"{folder}/config.json",), (f"{w}.safetensors", f"{w}-*-of-*.safetensors")))


def _transformers_model(folder: str) -> Part:
    w = f"{folder}/model"
    return Part((f"{folder}/config.json", f"{w}.safetensors", f"{w}-*-of-*.safetensors", f"{w}.safetensors.index.json"),
                ((f"{folder}/config.json",), (f"{w}.safetensors", f"{w}-*-of-*.safetensors")))


def _tokenizer(folder: str) -> Part:
    pats = (f"{folder}/*.json", f"{folder}/*.txt", f"{folder}/*.model")
    vocab = (f"{folder}/tokenizer.json", f"{folder}/vocab.json", f"{folder}/spiece.model", f"{folder}/tokenizer.model")
    return Part(pats, (vocab,))


_FLUX2_TOK = Part(("tokenizer/*.json", "tokenizer/*.txt", "tokenizer/*.model", "tokenizer/*.jinja"),
                  (("tokenizer/tokenizer.json", "tokenizer/vocab.json", "tokenizer/tokenizer.model"),))


def _configs(folder: str) -> Part:
    return Part((f"{folder}/*.json",), ((f"{folder}/*.json",),))


def _optional(part: Part) -> Part:
    return Part(part.patterns, ())


_INDEX = Part(("model_index.json",), (("model_index.json",),))


@dataclass(frozen=True)
class CatalogueEntry:
    """A downloadable model: where it lives on the hub, what to take from it, and where it goes locally."""

    name: str
    repo_id: str
    allow_patterns: tuple[str, ...]
    required: tuple[tuple[str, ...], ...] = ()
    kind: str = "diffusers"              # "diffusers" -> <models>/diffusers/<name>; "tokenizer" -> <models>/tokenizers/<name>;
    #                                      "annotators" -> <models>/annotators (ControlNet preprocessor weights);
    #                                      "annotator_model" -> <models>/annotators/<subfolder of name: dest_folder>
    family: str | None = None
    subfolder: str | None = None         # tokenizer entries: this repo folder becomes the destination's root
    ignore_patterns: tuple[str, ...] = DEFAULT_IGNORE_PATTERNS
    gated: bool = False
    licence: str = ""
    note: str = ""
    dest_folder: str | None = None       # annotator_model entries: the folder under <models>/annotators

    def dest(self, models_dir: Path | str) -> Path:
        """Destination folder under the models directory."""
        if self.kind == "annotators":
            return Path(models_dir) / "annotators"
        if self.kind == "annotator_model":
            return Path(models_dir) / "annotators" / (self.dest_folder or self.name)
        sub = "tokenizers" if self.kind == "tokenizer" else "diffusers"
        return Path(models_dir) / sub / self.name

    def licence_url(self, endpoint: str = "https://huggingface.co") -> str:
        return f"{endpoint.rstrip('/')}/{self.repo_id}"


def _pipeline(name: str, repo_id: str, family: str, parts: list[Part], **kw: Any) -> CatalogueEntry:
    parts = [_INDEX, *parts]
    return CatalogueEntry(
        name=name, repo_id=repo_id, family=family,
        allow_patterns=tuple(p for part in parts for p in part.patterns),
        required=tuple(r for part in parts for r in part.required), **kw)


def _tokenizer_only(name: str, repo_id: str, folder: str, **kw: Any) -> CatalogueEntry:
    part = _tokenizer(folder)
    return CatalogueEntry(name=name, repo_id=repo_id, kind="tokenizer", subfolder=folder,
                          allow_patterns=part.patterns, required=part.required, **kw)


_SCHED = _configs("scheduler")
_CLIP_TE, _CLIP_TOK = _transformers_model("text_encoder"), _tokenizer("tokenizer")
_SDXL_TE2, _SDXL_TOK2 = _transformers_model("text_encoder_2"), _tokenizer("tokenizer_2")
_WAN_COMMON = [_SCHED, _transformers_model("text_encoder"), _tokenizer("tokenizer"), _diffusers_model("transformer"),
               _diffusers_model("vae")]
_OPENRAIL = "CreativeML Open RAIL-M"
_WAN_LICENCE = "Apache-2.0"

# ControlNet preprocessor weights (controlnet-aux's files; .pth state dicts read with weights_only=True), the ones
# sdcodex/engines/preprocessors.py lists: HED, PiDiNet, lineart (fine, coarse), lineart_anime, openpose, MLSD.
ANNOTATOR_FILES: tuple[str, ...] = (
    "ControlNetHED.pth", "table5_pidinet.pth", "sk_model.pth", "sk_model2.pth", "netG.pth",
    "body_pose_model.pth", "hand_pose_model.pth", "facenet.pth", "mlsd_large_512_fp32.pth",
)

_ENTRIES: list[CatalogueEntry] = [
    _pipeline("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15",
              [_SCHED, _CLIP_TE, _CLIP_TOK, _diffusers_model("unet"), _diffusers_model("vae"),
               _optional(_configs("feature_extractor"))],
              licence=_OPENRAIL,
              note="safety_checker is not downloaded (1.2 GB); load with safety_checker=None"),
    _pipeline("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl",
              [_SCHED, _CLIP_TE, _CLIP_TOK, _SDXL_TE2, _SDXL_TOK2, _diffusers_model("unet"), _diffusers_model("vae")],
              licence="CreativeML Open RAIL++-M"),
    _pipeline("sdxl-refiner", "stabilityai/stable-diffusion-xl-refiner-1.0", "sdxl",
              [_SCHED, _SDXL_TE2, _SDXL_TOK2, _diffusers_model("unet"), _diffusers_model("vae")],
              licence="CreativeML Open RAIL++-M"),
    _pipeline("flux-schnell", "black-forest-labs/FLUX.1-schnell", "flux",
              [_SCHED, _CLIP_TE, _CLIP_TOK, _SDXL_TE2, _SDXL_TOK2, _diffusers_model("transformer"),
               _diffusers_model("vae")],
              licence="Apache-2.0"),
    _pipeline("flux-dev", "black-forest-labs/FLUX.1-dev", "flux",
              [_SCHED, _CLIP_TE, _CLIP_TOK, _SDXL_TE2, _SDXL_TOK2, _diffusers_model("transformer"),
               _diffusers_model("vae")],
              gated=True, licence="FLUX.1 [dev] Non-Commercial License (accept it on the model page)"),
    _pipeline("svd-xt", "stabilityai/stable-video-diffusion-img2vid-xt", "svd",
              [_SCHED, _transformers_model("image_encoder"), _configs("feature_extractor"),
               _diffusers_model("unet"), _diffusers_model("vae")],
              gated=True, licence="Stability AI Community License (accept it on the model page)"),
    _pipeline("hunyuan-video", "hunyuanvideo-community/HunyuanVideo", "hunyuan_video",
              [_SCHED, _transformers_model("text_encoder"), _tokenizer("tokenizer"), _SDXL_TE2, _SDXL_TOK2,
               _diffusers_model("transformer"), _diffusers_model("vae")],
              licence="Tencent Hunyuan Community License"),
    _pipeline("wan22-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "wan22", list(_WAN_COMMON),
              licence=_WAN_LICENCE),
    _pipeline("wan22-t2v-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "wan22",
              [*_WAN_COMMON, _diffusers_model("transformer_2")], licence=_WAN_LICENCE),
    _pipeline("wan22-i2v-a14b", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", "wan22",
              [*_WAN_COMMON, _diffusers_model("transformer_2"), _optional(_transformers_model("image_encoder")),
               _optional(_configs("image_processor"))], licence=_WAN_LICENCE),
    _pipeline("z-image-turbo", "Tongyi-MAI/Z-Image-Turbo", "z_image",
              [_SCHED, _transformers_model("text_encoder"), _tokenizer("tokenizer"), _diffusers_model("transformer"),
               _diffusers_model("vae")], licence="Apache-2.0"),
    _pipeline("z-image", "Tongyi-MAI/Z-Image", "z_image",
              [_SCHED, _transformers_model("text_encoder"), _tokenizer("tokenizer"), _diffusers_model("transformer"),
               _diffusers_model("vae")], licence="Apache-2.0"),
    _pipeline("chroma1-hd", "lodestones/Chroma1-HD", "chroma",
              [_SCHED, _transformers_model("text_encoder"), _tokenizer("tokenizer"), _diffusers_model("transformer"),
               _diffusers_model("vae")], licence="Apache-2.0"),
    *[_pipeline(name, repo, "sd3",
                [_SCHED, _CLIP_TE, _CLIP_TOK, _SDXL_TE2, _SDXL_TOK2, _transformers_model("text_encoder_3"),
                 _tokenizer("tokenizer_3"), _diffusers_model("transformer"), _diffusers_model("vae")],
                gated=True, licence="Stability AI Community License (accept it on the model page)")
      for name, repo in (("sd35-large", "stabilityai/stable-diffusion-3.5-large"),
                         ("sd35-large-turbo", "stabilityai/stable-diffusion-3.5-large-turbo"),
                         ("sd35-medium", "stabilityai/stable-diffusion-3.5-medium"))],
    # FLUX.2: the tokenizer folders keep their chat template in chat_template.jinja (dev's is a Pixtral processor)
    _pipeline("flux2-dev", "black-forest-labs/FLUX.2-dev", "flux2",
              [_SCHED, _transformers_model("text_encoder"), _FLUX2_TOK, _diffusers_model("transformer"),
               _diffusers_model("vae")],
              gated=True, licence="FLUX [dev] Non-Commercial License (accept it on the model page)"),
    *[_pipeline(name, repo, "flux2_klein",
                [_SCHED, _transformers_model("text_encoder"), _FLUX2_TOK, _diffusers_model("transformer"),
                 _diffusers_model("vae")], licence=licence)
      for name, repo, licence in (
          ("flux2-klein-4b", "black-forest-labs/FLUX.2-klein-4B", "Apache-2.0"),
          ("flux2-klein-base-4b", "black-forest-labs/FLUX.2-klein-base-4B", "Apache-2.0"),
          ("flux2-klein-9b", "black-forest-labs/FLUX.2-klein-9B", "FLUX Non-Commercial License"),
          ("flux2-klein-base-9b", "black-forest-labs/FLUX.2-klein-base-9B", "FLUX Non-Commercial License"))],
    # LTX-2: the Diffusers subfolders only (the repo root also holds the all-in-one ltx-2-19b-*.safetensors files)
    _pipeline("ltx2", "Lightricks/LTX-2", "ltx2",
              [_SCHED, _transformers_model("text_encoder"), _tokenizer("tokenizer"), _diffusers_model("transformer"),
               _diffusers_model("vae"), _diffusers_model("audio_vae"), _diffusers_model("connectors"),
               _diffusers_model("vocoder")],
              licence="LTX-2 Community License (see the model page)"),
    CatalogueEntry(name="annotators", repo_id="lllyasviel/Annotators", kind="annotators",
                   allow_patterns=ANNOTATOR_FILES, required=tuple((f,) for f in ANNOTATOR_FILES), ignore_patterns=(),
                   licence="Apache-2.0 / per annotator (see the model page)",
                   note="ControlNet preprocessor weights -> <models>/annotators"),
    # depth / normal / segmentation preprocessors: transformers models (sdcodex/engines/preprocessors_hf.py)
    *[CatalogueEntry(name=name, repo_id=repo, kind="annotator_model", dest_folder=folder,
                     allow_patterns=("config.json", "model.safetensors", "preprocessor_config.json"),
                     required=(("config.json",), ("model.safetensors",)), licence=licence,
                     note=f"ControlNet preprocessor {modules} -> <models>/annotators/{folder}")
      for name, repo, folder, modules, licence in (
          ("annotator-depth-midas", "Intel/dpt-hybrid-midas", "dpt_hybrid_midas", "depth_midas, normal_midas",
           "Apache-2.0"),
          ("annotator-depth-anything", "LiheYoung/depth-anything-large-hf", "depth_anything", "depth_anything",
           "Apache-2.0"),
          ("annotator-depth-anything-v2", "depth-anything/Depth-Anything-V2-Large-hf", "depth_anything_v2",
           "depth_anything_v2", "CC-BY-NC-4.0"),
          ("annotator-depth-zoe", "Intel/zoedepth-nyu", "zoedepth_nyu", "depth_zoe", "MIT"),
          ("annotator-seg-ade20k", "openmmlab/upernet-convnext-small", "upernet_ade20k", "seg_ufade20k",
           "MIT"))],
    _tokenizer_only("tokenizer-t5-xxl", "black-forest-labs/FLUX.1-schnell", "tokenizer_2",
                    licence="Apache-2.0", note="T5-XXL tokenizer used by FLUX, Chroma and SD3.5"),
    _tokenizer_only("tokenizer-umt5-xxl", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "tokenizer",
                    licence=_WAN_LICENCE, note="UMT5-XXL tokenizer used by WAN 2.2"),
    _tokenizer_only("tokenizer-qwen3", "Tongyi-MAI/Z-Image-Turbo", "tokenizer",
                    licence="Apache-2.0", note="Qwen3 tokenizer used by Z-Image"),
    _tokenizer_only("tokenizer-gemma3", "Lightricks/LTX-2", "tokenizer",
                    licence="Gemma Terms of Use", note="Gemma 3 tokenizer used by LTX-2"),
    _tokenizer_only("tokenizer-llama-hunyuan", "hunyuanvideo-community/HunyuanVideo", "tokenizer",
                    licence="Tencent Hunyuan Community License", note="Llama tokenizer used by HunyuanVideo"),
]

CATALOGUE: dict[str, CatalogueEntry] = {e.name: e for e in _ENTRIES}


def names() -> list[str]:
    return list(CATALOGUE)


def is_repo_id(text: str) -> bool:
    """True for an `owner/name` shaped string."""
    return bool(_REPO_ID.match(text)) and ".." not in text


def entry_for_repo(repo_id: str) -> CatalogueEntry:
    """An ad-hoc entry for a repository that is not in the catalogue: default patterns, no required groups
    except that at least one file must match."""
    owner, name = repo_id.split("/", 1)
    return CatalogueEntry(name=f"{owner}--{name}", repo_id=repo_id, allow_patterns=DEFAULT_ALLOW_PATTERNS,
                          required=(DEFAULT_ALLOW_PATTERNS,), note="not in the catalogue: default patterns")


def lookup(target: str) -> CatalogueEntry:
    """Catalogue name, catalogue repo id, or any `owner/name` repo id -> entry. Raises KeyError otherwise."""
    if target in CATALOGUE:
        return CATALOGUE[target]
    lowered = target.lower()
    for entry in _ENTRIES:
        if entry.kind == "diffusers" and entry.repo_id.lower() == lowered:
            return entry
    if is_repo_id(target):
        return entry_for_repo(target)
    raise KeyError(target)


def resolve_models_dir(models_dir: str | Path | None = None) -> Path:
    """--models-dir, else $SDCODEX_MODELS_DIR, else the inventory's default, else ./models."""
    if models_dir:
        return Path(models_dir).expanduser()
    env = os.environ.get("SDCODEX_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    try:
        from sdcodex.models.inventory import default_models_dir
        return Path(default_models_dir())
    except Exception:  # the inventory module may not exist yet or may fail; fall back to ./models
        return Path("models")
