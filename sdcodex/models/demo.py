"""Tiny random-weight demo models (Diffusers folders) for tests, smoke runs and the UI's first start.

Each family has a small builder function in a registry; the result is deterministic (seeded) and written with
``save_pretrained(safe_serialization=True)``. The weights are random: outputs are noise-like, by design.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from sdcodex.models.declared import DECLARED_FILE, write_declared
from sdcodex.models.tokenizers import clip_tokenizer

DEMO_SEED = 0
README = """{name}: a tiny Codex demo model with RANDOM weights (seed {seed}).

It exists so that tests, benchmarks and a first start work without downloading anything.
Its images are noise-like by design; it is not a trained model. Rebuild with build_demo_models().
"""
#: what every demo model declares in its codex.json: sizes and steps small enough that a fresh demo install
#: generates at the page's defaults in seconds on a CPU (64 px suits every family's size rule; 9 frames is 4k+1)
DEMO_DEFAULTS = {"width": 64, "height": 64, "steps": 4, "num_frames": 9, "fps": 8.0}
Builder = Callable[[], Any]  # returns a Diffusers pipeline with save_pretrained()
DEMO_BUILDERS: dict[str, tuple[str, Builder]] = {}  # family key -> (folder name, builder)
#: modules whose import registers more demo builders (one per group of families); a new family's demo module is
#: listed here, and every caller gets it through `load_demo_builders()`
DEMO_MODULES: tuple[str, ...] = ("sdcodex.models.demo_video", "sdcodex.models.demo_image", "sdcodex.models.demo_sd3",
                                  "sdcodex.models.demo_qwen",
                                  "sdcodex.models.demo_flux2", "sdcodex.models.demo_ltx2")


def register_demo(family: str, folder: str) -> Callable[[Builder], Builder]:
    """Register a builder for a demo family; `folder` is the name of the folder it is written to."""
    def wrap(fn: Builder) -> Builder:
        DEMO_BUILDERS[family] = (folder, fn)
        return fn
    return wrap


def load_demo_builders() -> dict[str, tuple[str, Builder]]:
    """Every registered demo builder, after importing the demo modules (a module whose Diffusers pipelines this
    Diffusers lacks is skipped with a log line)."""
    import importlib
    import logging

    for name in DEMO_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an older Diffusers without these pipelines
            logging.getLogger("sdcodex.models.demo").warning("demo module %s not loaded: %s", name, exc)
    return DEMO_BUILDERS


def _bundled_scheduler(family: str):
    from diffusers import EulerDiscreteScheduler, PNDMScheduler

    path = Path(__file__).parent / "configs" / family / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    cls = {"PNDMScheduler": PNDMScheduler, "EulerDiscreteScheduler": EulerDiscreteScheduler}[config["_class_name"]]
    return cls.from_config(config)


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


def tiny_clip(with_projection: bool = False, hidden_act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    # vocab_size covers the real CLIP tokenizer; eos_token_id=2 keeps CLIP's legacy argmax pooling like SD1.5/SDXL.
    config = CLIPTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, intermediate_size=37,
                            num_attention_heads=4, num_hidden_layers=2, vocab_size=49408, projection_dim=32,
                            max_position_embeddings=77, hidden_act=hidden_act, layer_norm_eps=1e-5)
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    return model.eval()


_tiny_clip = tiny_clip  # the name other demo modules used before it was public


def _tiny_unet(in_channels: int = 4, xl: bool = False):
    from diffusers import UNet2DConditionModel

    common = dict(block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=in_channels,
                  out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    if not xl:
        return UNet2DConditionModel(cross_attention_dim=32, **common)
    # SDXL shape rules: text_time embedding of 6 size/crop numbers + the pooled bigG projection (32).
    return UNet2DConditionModel(cross_attention_dim=64, attention_head_dim=(2, 4), use_linear_projection=True,
                                addition_embed_type="text_time", addition_time_embed_dim=8,
                                transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
                                norm_num_groups=32, **common)


@register_demo("sd15", "sd15-demo")
def build_sd15():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=_tiny_vae(), text_encoder=tiny_clip(), tokenizer=clip_tokenizer(),
                                   unet=_tiny_unet(), scheduler=_bundled_scheduler("sd15"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


@register_demo("sd15_inpaint", "sd15-inpaint-demo")
def build_sd15_inpaint():
    from diffusers import StableDiffusionInpaintPipeline

    return StableDiffusionInpaintPipeline(vae=_tiny_vae(), text_encoder=tiny_clip(), tokenizer=clip_tokenizer(),
                                          unet=_tiny_unet(in_channels=9), scheduler=_bundled_scheduler("sd15"),
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@register_demo("sd2", "sd2-demo")
def build_sd2():
    """SD 2.x 768-v in miniature: an OpenCLIP-style (gelu) text encoder, linear projections, v-prediction."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from sdcodex.models.model_configs import bundled_config

    unet = UNet2DConditionModel(cross_attention_dim=32, attention_head_dim=(1, 1), use_linear_projection=True,
                                block_out_channels=(32, 64), layers_per_block=2, sample_size=32,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    return StableDiffusionPipeline(vae=_tiny_vae(), text_encoder=tiny_clip(hidden_act="gelu"),
                                   tokenizer=clip_tokenizer(pad_token="!"), unet=unet.eval(),
                                   scheduler=DDIMScheduler.from_config(bundled_config("sd2", "scheduler_v_prediction")),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@register_demo("sdxl", "sdxl-demo")
def build_sdxl():
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(vae=_tiny_vae(), text_encoder=tiny_clip(),
                                     text_encoder_2=tiny_clip(with_projection=True, hidden_act="gelu"),
                                     tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(pad_token="!"),
                                     unet=_tiny_unet(xl=True), scheduler=_bundled_scheduler("sdxl"))


def is_valid_demo(folder: Path) -> bool:
    """A demo folder is complete when model_index.json, README.txt and every listed component folder exist."""
    index = folder / "model_index.json"
    if not (index.is_file() and (folder / "README.txt").is_file()):
        return False
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError):
        return False
    for name, value in data.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if not (folder / name).is_dir():
            return False
    return True


def build_demo_model(family: str, dest: Path, *, force: bool = False) -> Path:
    """Build one demo family into dest/<folder>; skipped when already present and valid (unless `force`)."""
    if family not in DEMO_BUILDERS:
        load_demo_builders()
    if family not in DEMO_BUILDERS:
        from sdcodex.core.errors import ValidationError

        raise ValidationError(f"unknown demo family {family!r}", field="families", allowed=sorted(DEMO_BUILDERS))
    folder_name, builder = DEMO_BUILDERS[family]
    dest = Path(dest)
    target = dest / folder_name
    if not force and is_valid_demo(target):
        if not (target / DECLARED_FILE).is_file():  # a demo folder built before models declared defaults
            write_declared(target, DEMO_DEFAULTS)
        return target
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder_name}-", dir=dest))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(DEMO_SEED)
            pipe = builder()
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / "README.txt").write_text(README.format(name=folder_name, seed=DEMO_SEED))
        write_declared(tmp, DEMO_DEFAULTS)
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_demo_models(dest: Path, families: Iterable[str] = ("sd15", "sdxl", "sd15_inpaint"), *,
                      force: bool = False) -> dict[str, Path]:
    """Build (or reuse) the demo folders: {family: folder}, e.g. models/demo/sd15-demo."""
    return {family: build_demo_model(family, Path(dest), force=force) for family in families}
