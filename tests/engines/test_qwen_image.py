"""Qwen-Image with a tiny random-weight model through the orchestrator: txt2img, img2img and inpaint give the pixels of
Diffusers' own QwenImage pipelines on the same components with a scheduler built here from Diffusers' class; a
single transformer file (ComfyUI's qwen_image_bf16 layout, with and without its prefix) loads to the same pixels
with the rest taken from a Diffusers folder; sampler rules; detection of the folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError, UnsupportedSamplerError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.models.detect import detect_folder
from sdcodex.models.loader import load_model
from sdcodex.runtime import MediaSaver
from tests.helpers.inpaint_overlay import overlay
from tests.engines.test_video import FlowModels
from tests.helpers import flow_export as fx

PROMPT, NEGATIVE = "a lighthouse", "blurry"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qwen-models")
    build_demo_model("qwen_image", root)
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("qwen-inputs")
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 48, 48), fill=255)
    image.save(folder / "image.png")
    mask.save(folder / "mask.png")
    return {"init_image": str(folder / "image.png"), "mask": str(folder / "mask.png")}


@pytest.fixture(scope="module")
def provider(root) -> FlowModels:
    return FlowModels(root)


@pytest.fixture()
def orch(provider, tmp_path) -> Orchestrator:
    return Orchestrator(provider, MediaSaver(tmp_path / "out"), image_loader=lambda value, field: Image.open(value))


def req(task: str, **extra) -> dict:
    return {"task": task, "model": "qwen-image-demo", "prompt": PROMPT, "negative_prompt": NEGATIVE, "width": 64,
            "height": 64, "steps": 3, "cfg_scale": 4.0, "seed": 5, **extra}


def folder_modules(folder: Path) -> dict:
    """The transformer, VAE, text encoder and tokenizer of a Qwen-Image folder, each loaded by its own class (not
    through our loader), for Diffusers' reference pipelines."""
    import diffusers
    import transformers

    comps = {}
    for sub in ("transformer", "vae", "text_encoder"):
        cfg = json.loads((folder / sub / "config.json").read_text())
        name = cfg.get("_class_name") or cfg["architectures"][0]
        comps[sub] = (getattr(diffusers, name, None) or getattr(transformers, name)).from_pretrained(folder / sub).eval()
    comps["tokenizer"] = transformers.AutoTokenizer.from_pretrained(folder / "tokenizer")
    return comps


def reference(folder: Path, task: str, images: dict) -> np.ndarray:
    """Diffusers' own pipeline on the folder's modules (each loaded by its own class), with the published
    Qwen-Image scheduler settings given to FlowMatchEulerDiscreteScheduler here."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    comps = folder_modules(folder)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                                                max_image_seq_len=8192, shift_terminal=0.02)
    cls = {"txt2img": diffusers.QwenImagePipeline, "img2img": diffusers.QwenImageImg2ImgPipeline,
           "inpaint": diffusers.QwenImageInpaintPipeline}[task]
    pipe = cls(scheduler=scheduler, **comps)
    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt=PROMPT, negative_prompt=NEGATIVE, true_cfg_scale=4.0, num_inference_steps=3, width=64,
                height=64, generator=torch.Generator("cpu").manual_seed(5))
    if task != "txt2img":
        args.update(image=Image.open(images["init_image"]).convert("RGB"), strength=0.6)
    if task == "inpaint":  # our default mask blur is 4 (A1111's)
        args["mask_image"] = Image.open(images["mask"]).convert("L").filter(ImageFilter.GaussianBlur(4))
    out = pipe(**args).images[0]
    if task == "inpaint":  # A1111 pastes the original back outside the (blurred) mask
        out = overlay(out, args["image"], args["mask_image"])
    return np.asarray(out, dtype=np.int16)


def assert_same(ours: Image.Image, ref: np.ndarray) -> None:
    diff = np.abs(np.asarray(ours, dtype=np.int16) - ref)
    assert diff.max() <= 1, f"max pixel difference {diff.max()}"


@pytest.mark.parametrize("task", ["txt2img", "img2img", "inpaint"])
def test_qwen_image_tasks_equal_diffusers(orch, root, images, task):
    extra = {} if task == "txt2img" else {"init_image": images["init_image"], "denoising_strength": 0.6}
    if task == "inpaint":
        extra["mask"] = images["mask"]
    result = orch.run(req(task, **extra))
    assert result.info["engine"] == "qwen_image" and result.info["sampler_effective"] == "Euler"
    assert_same(result.pil_images[0], reference(root / "qwen-image-demo", task, images))


def test_folder_is_detected_as_qwen_image(root):
    found = detect_folder(root / "qwen-image-demo")
    assert found.family.value == "qwen_image" and found.variant["pipeline"] == "QwenImagePipeline"


def test_solvers_that_take_sigmas_run_and_heun_is_refused(orch):
    assert orch.run(req("txt2img", sampler="UniPC")).info["sampler_effective"] == "UniPC"
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(req("txt2img", sampler="Heun"))
    assert err.value.field == "sampler" and "Euler" in err.value.allowed


@pytest.fixture(scope="module")
def single(root, tmp_path_factory) -> Path:
    """A models folder with the Diffusers folder (the base) and the transformer as single files."""
    import diffusers

    models = tmp_path_factory.mktemp("qwen-single")
    shutil.copytree(root / "qwen-image-demo", models / "qwen-image-demo")
    module = diffusers.QwenImageTransformer2DModel.from_pretrained(root / "qwen-image-demo" / "transformer")
    for tag, prefix in (("bare", ""), ("comfy", "model.diffusion_model.")):
        fx.export_plain(module, models / "diffusion_models" / f"qwen_image_tiny_{tag}.safetensors", prefix)
    return models


@pytest.mark.parametrize("tag", ["bare", "comfy"])
def test_single_transformer_file_loads_to_the_same_pixels(single, root, images, tmp_path, tag):
    from types import SimpleNamespace

    loaded = load_model(single / "diffusion_models" / f"qwen_image_tiny_{tag}.safetensors", models_dir=single)
    assert loaded.family.value == "qwen_image" and loaded.variant["layout"] == "qwen_image"
    assert loaded.variant["base"].endswith("qwen-image-demo")

    class One:
        def resolve(self, ref, *, engine=None):
            return SimpleNamespace(name=loaded.name, path=loaded.path, family="qwen_image")

        def load(self, entry, **kw):
            return loaded

        def short_hash(self, entry):
            return None

    ours = Orchestrator(One(), MediaSaver(tmp_path / "out")).run(req("txt2img")).pil_images[0]
    assert_same(ours, reference(root / "qwen-image-demo", "txt2img", images))


def test_single_file_without_a_base_folder_says_what_it_needs(single, tmp_path):
    lone = tmp_path / "models"
    lone.mkdir()
    shutil.copy(single / "diffusion_models" / "qwen_image_tiny_bare.safetensors", lone / "q.safetensors")
    with pytest.raises(ModelLoadError) as err:
        load_model(lone / "q.safetensors", models_dir=lone)
    assert err.value.field == "model" and "qwen_image Diffusers folder" in str(err.value)
