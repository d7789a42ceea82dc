"""Stable Diffusion 3.5 with tiny random-weight models (Large-shaped and Medium/MMDiT-X-shaped) through the
orchestrator: every task gives the pixels of Diffusers' own StableDiffusion3 pipelines on the same components with a
scheduler built here from Diffusers' class; the single-file layouts (sd3.5_large.safetensors with its VAE, separate
clip_l / clip_g / t5xxl files, an all-in-one file) load to the same pixels; flow sampler rules; the turbo presets."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import UnsupportedSamplerError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.models.detect import detect_folder
from sdcodex.models.loader import load_model
from sdcodex.runtime import MediaSaver
from tests.helpers.inpaint_overlay import overlay
from tests.engines.test_video import FlowModels
from tests.helpers import flow_export as fx
from tests.helpers.ldm_export import vae_to_ldm

PROMPT, NEGATIVE = "a lighthouse", "blurry"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sd3-models")
    for family in ("sd3", "sd3_medium"):
        build_demo_model(family, root)
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("sd3-inputs")
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


def req(task: str, model: str = "sd35-large-demo", **extra) -> dict:
    return {"task": task, "model": model, "prompt": PROMPT, "negative_prompt": NEGATIVE, "width": 64, "height": 64,
            "steps": 3, "cfg_scale": 4.0, "seed": 7, **extra}


def _components(folder: Path) -> dict:
    """The demo folder's modules, each loaded by its own Diffusers/transformers class (not through our loader)."""
    import diffusers
    import transformers

    out = {}
    for sub in ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        cfg = json.loads((folder / sub / "config.json").read_text())
        name = cfg.get("_class_name") or cfg["architectures"][0]
        out[sub] = (getattr(diffusers, name, None) or getattr(transformers, name)).from_pretrained(folder / sub).eval()
    for sub in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        out[sub] = transformers.AutoTokenizer.from_pretrained(folder / sub)
    return out


def reference(folder: Path, task: str, images: dict, **kw) -> np.ndarray:
    """Diffusers' own pipeline, with FlowMatchEulerDiscreteScheduler(shift=3.0) built here."""
    from diffusers import (FlowMatchEulerDiscreteScheduler, StableDiffusion3Img2ImgPipeline,
                           StableDiffusion3InpaintPipeline, StableDiffusion3Pipeline)

    cls = {"txt2img": StableDiffusion3Pipeline, "img2img": StableDiffusion3Img2ImgPipeline,
           "inpaint": StableDiffusion3InpaintPipeline}[task]
    pipe = cls(scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0), **_components(folder))
    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=3, guidance_scale=4.0,
                generator=torch.Generator("cpu").manual_seed(7), **kw)
    if task != "img2img":
        args.update(width=64, height=64)
    if task != "txt2img":
        args.update(image=Image.open(images["init_image"]).convert("RGB"), strength=0.6)
    if task == "inpaint":  # our default mask blur is 4 (A1111's)
        from PIL import ImageFilter

        args["mask_image"] = Image.open(images["mask"]).convert("L").filter(ImageFilter.GaussianBlur(4))
    out = pipe(**args).images[0]
    if task == "inpaint":  # A1111 pastes the original back outside the (blurred) mask
        out = overlay(out, args["image"], args["mask_image"])
    return np.asarray(out, dtype=np.int16)


def assert_same(ours: Image.Image, ref: np.ndarray) -> None:
    diff = np.abs(np.asarray(ours, dtype=np.int16) - ref)
    assert diff.max() <= 1, f"max pixel difference {diff.max()}"


@pytest.mark.parametrize("task", ["txt2img", "img2img", "inpaint"])
def test_sd35_tasks_equal_diffusers(orch, root, images, task):
    extra = {} if task == "txt2img" else {"init_image": images["init_image"], "denoising_strength": 0.6}
    if task == "inpaint":
        extra["mask"] = images["mask"]
    result = orch.run(req(task, **extra))
    assert result.info["sampler_effective"] == "Euler" and result.info["engine"] == "sd3"
    assert_same(result.pil_images[0], reference(root / "sd35-large-demo", task, images))


def test_sd35_medium_mmditx_equals_diffusers(orch, root, images):
    result = orch.run(req("txt2img", model="sd35-medium-demo"))
    assert_same(result.pil_images[0], reference(root / "sd35-medium-demo", "txt2img", images))


def test_infotext_and_request_reproduce_the_image(orch):
    from sdcodex.media.reader import read_info

    first = orch.run(req("txt2img"))
    info = read_info(first.images[0])
    assert (info["parsed"]["Steps"], info["parsed"]["Sampler"], info["parsed"]["Seed"]) == ("3", "Euler", "7")
    again = orch.run({k: v for k, v in info["request"].items() if k != "info"})  # what `generate --from` runs
    assert np.array_equal(np.asarray(again.pil_images[0]), np.asarray(first.pil_images[0]))


def test_demo_folders_are_detected_as_sd3(root):
    large, medium = detect_folder(root / "sd35-large-demo"), detect_folder(root / "sd35-medium-demo")
    assert (large.family.value, large.variant["model"]) == ("sd3", "sd35_large")
    assert (medium.family.value, medium.variant["model"]) == ("sd3", "sd35_medium")


def test_flow_solver_runs_txt2img_and_img2img_needs_scale_noise(orch, images):
    assert orch.run(req("txt2img", sampler="DPM++ 2M")).info["sampler_effective"] == "DPM++ 2M"
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(req("img2img", sampler="UniPC", init_image=images["init_image"]))
    assert err.value.field == "sampler" and "scale_noise" in str(err.value)
    assert "Euler" in err.value.allowed and "UniPC" not in err.value.allowed


def test_classic_sampler_is_refused(orch):
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(req("txt2img", sampler="DDIM"))
    assert "flow-matching" in str(err.value)


def test_turbo_mode_applies_to_a_turbo_model_only(orch, root):
    shutil.copytree(root / "sd35-large-demo", root / "sd35-large-turbo-demo", dirs_exist_ok=True)
    raw = req("txt2img", model="sd35-large-turbo-demo", mode="turbo")
    for key in ("steps", "cfg_scale"):
        del raw[key]
    turbo = orch.run(raw)
    assert turbo.info["applied_preset_patch"]["steps"] == 4 and turbo.info["applied_preset_patch"]["cfg_scale"] == 1.0
    assert turbo.info["mode_ignored_reason"] is None
    normal = orch.run({**raw, "model": "sd35-large-demo"})
    assert normal.info["applied_preset_patch"]["steps"] == 28
    assert "not turbo-distilled" in normal.info["mode_ignored_reason"]


# ---- single files ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single(root, tmp_path_factory) -> dict[str, Path]:
    """A models folder with no Diffusers folder: sd3.5_large.safetensors-shaped file (MMDiT + VAE), the three
    text-encoder files, an all-in-one file, and the T5 tokenizer under models/tokenizers/."""
    comps = _components(root / "sd35-large-demo")
    models = tmp_path_factory.mktemp("sd3-single")
    vae = {f"first_stage_model.{k}": v for k, v in vae_to_ldm(comps["vae"].state_dict(),
                                                               dict(comps["vae"].config)).items()}
    main = fx.export_sd3(comps["transformer"], models / "sd3.5_tiny.safetensors", "model.diffusion_model.", vae)
    tes = [fx.export_plain(comps["text_encoder"], models / "text_encoders" / "clip_l_tiny.safetensors"),
           fx.export_plain(comps["text_encoder_2"], models / "text_encoders" / "clip_g_tiny.safetensors"),
           fx.export_t5(comps["text_encoder_3"], models / "text_encoders" / "t5xxl_tiny.safetensors")]
    inside = dict(vae)
    for name, sub in (("clip_l", "text_encoder"), ("clip_g", "text_encoder_2"), ("t5xxl", "text_encoder_3")):
        state = comps[sub].state_dict()
        inside.update({f"text_encoders.{name}.transformer.{k}": v for k, v in state.items()
                       if k != "encoder.embed_tokens.weight"})
    aio = fx.export_sd3(comps["transformer"], models / "sd3.5_tiny_aio.safetensors", "model.diffusion_model.", inside)
    shutil.copytree(root / "sd35-large-demo" / "tokenizer_3", models / "tokenizers" / "tokenizer-t5-xxl")
    return {"models": models, "main": main, "aio": aio, "tes": tes}


def _txt2img(loaded, tmp_path) -> Image.Image:
    from types import SimpleNamespace

    class One:
        def resolve(self, ref, *, engine=None):
            return SimpleNamespace(name=loaded.name, path=loaded.path, family="sd3")

        def load(self, entry, **kw):
            return loaded

        def short_hash(self, entry):
            return None

    return Orchestrator(One(), MediaSaver(tmp_path / "out")).run(req("txt2img")).pil_images[0]


@pytest.mark.parametrize("layout", ["separate_text_encoders", "all_in_one"])
def test_single_files_load_to_the_same_pixels(single, root, images, tmp_path, layout):
    if layout == "all_in_one":
        loaded = load_model(single["aio"], models_dir=single["models"], configs=root / "sd35-large-demo")
        assert loaded.variant["embedded"] == ["text_encoder", "text_encoder_2", "text_encoder_3", "vae"]
    else:
        loaded = load_model(single["main"], models_dir=single["models"], text_encoders=[str(p) for p in single["tes"]],
                            configs=root / "sd35-large-demo")  # the tiny models' sizes (the bundled ones are real)
        assert loaded.variant["embedded"] == ["vae"]
    assert loaded.family.value == "sd3" and loaded.variant["model"] == "sd35_large"
    assert_same(_txt2img(loaded, tmp_path), reference(root / "sd35-large-demo", "txt2img", images))


def test_single_file_without_text_encoders_says_what_it_needs(single):
    from sdcodex.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError) as err:
        load_model(single["main"], models_dir=single["models"], text_encoders=[str(single["tes"][0])])
    assert err.value.field == "text_encoders" and "text_encoder_2, text_encoder_3" in str(err.value)
    assert "clip_l + clip_g + t5xxl" in str(err.value)


def test_a1111_body_makes_the_same_image(orch):
    """An A1111 /sdapi/v1/txt2img body naming the SD3.5 checkpoint maps to the same request and pixels."""
    from sdcodex.server.a1111_map import Txt2ImgRequest, to_request

    body = Txt2ImgRequest(prompt=PROMPT, negative_prompt=NEGATIVE, steps=3, cfg_scale=4.0, width=64, height=64,
                          seed=7, sampler_name="Euler", override_settings={"sd_model_checkpoint": "sd35-large-demo"})
    native, ignored = to_request(body, task="txt2img", options={})
    assert ignored == []
    ours = orch.run({**native, "task": "txt2img"}).pil_images[0]
    assert np.array_equal(np.asarray(ours), np.asarray(orch.run(req("txt2img", sampler="Euler")).pil_images[0]))
