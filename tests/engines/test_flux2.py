"""FLUX.2 engines with tiny random-weight models through the orchestrator: txt2img pixels equal Diffusers' own
Flux2Pipeline (dev) and Flux2KleinPipeline (Klein base with CFG and a negative prompt, Klein step-distilled) with the
scheduler built here from Diffusers' class; the guidance mappings, the Klein turbo mode, the sampler rules."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import UnsupportedSamplerError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.models.detect import detect_folder
from sdcodex.runtime import MediaSaver
from tests.engines.test_video import FlowModels

MAX_DIFF = 1  # <= 1/255 per channel
DEV, KLEIN, KLEIN_DISTILLED = "flux2-dev-demo", "flux2-klein-base-demo", "flux2-klein-demo"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flux2-models")
    for family in ("flux2", "flux2_klein", "flux2_klein_distilled"):
        build_demo_model(family, root)
    return root


class Flux2Models(FlowModels):
    """FlowModels whose entries carry the folder's detection variant, as the inventory's entries do."""

    def resolve(self, ref, *, engine=None):
        entry = super().resolve(ref, engine=engine)
        entry.variant = dict(detect_folder(entry.path).variant)
        return entry


@pytest.fixture(scope="module")
def provider(root) -> FlowModels:
    return Flux2Models(root)


@pytest.fixture()
def orch(provider, tmp_path) -> Orchestrator:
    return Orchestrator(provider, MediaSaver(tmp_path / "out"),
                        image_loader=lambda value, field: Image.open(value).convert("RGB"))


def req(model: str = DEV, **extra) -> dict:
    return {"task": "txt2img", "model": model, "prompt": "a lighthouse", "width": 80, "height": 64, "steps": 3,
            "seed": 5, **extra}


def reference(folder: Path, **kw) -> Image.Image:
    """Diffusers' own pipeline on the demo folder, with the FLUX.2 scheduler built here from Diffusers' class."""
    import json

    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Pipeline

    cls_name = json.loads((folder / "model_index.json").read_text())["_class_name"]
    cls = {"Flux2Pipeline": Flux2Pipeline, "Flux2KleinPipeline": Flux2KleinPipeline}[cls_name]
    pipe = cls.from_pretrained(folder, local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                     base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                     max_image_seq_len=4096)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt=kw.pop("prompt", "a lighthouse"), width=80, height=64, num_inference_steps=3,
                generator=torch.Generator("cpu").manual_seed(kw.pop("seed", 5)), **kw).images[0]


def assert_same(a: Image.Image, b: Image.Image) -> None:
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    assert a.size == b.size and diff.max() <= MAX_DIFF


@pytest.mark.parametrize("guidance", [None, 2.5])
def test_dev_txt2img_equals_diffusers(orch, root, guidance):
    extra = {} if guidance is None else {"distilled_cfg_scale": guidance}
    result = orch.run(req(**extra))
    assert_same(result.pil_images[0], reference(root / DEV, guidance_scale=guidance or 4.0))
    assert result.info["distilled_cfg_scale"] == (guidance or 4.0) and result.info["sampler_effective"] == "Euler"


def test_dev_warns_about_cfg_and_negative_prompt(orch):
    result = orch.run(req(cfg_scale=3.0, negative_prompt="fog"))
    text = " ".join(result.info["warnings"])
    assert "guidance-distilled" in text and "no negative prompt" in text


def test_klein_base_cfg_and_negative_prompt_equal_diffusers(orch, root):
    from diffusers import Flux2KleinPipeline

    result = orch.run(req(KLEIN, cfg_scale=3.0, negative_prompt="fog"))
    pipe = Flux2KleinPipeline.from_pretrained(root / KLEIN, local_files_only=True)
    negative, _ = pipe.encode_prompt(prompt=["fog"], device="cpu")
    assert_same(result.pil_images[0], reference(root / KLEIN, guidance_scale=3.0, negative_prompt_embeds=negative))
    plain = orch.run(req(KLEIN, cfg_scale=3.0)).pil_images[0]
    assert_same(plain, reference(root / KLEIN, guidance_scale=3.0))
    assert not np.array_equal(np.asarray(plain), np.asarray(result.pil_images[0]))


def test_klein_batch_equals_diffusers_per_seed(orch, root):
    result = orch.run(req(KLEIN, cfg_scale=2.0, negative_prompt="fog", batch_size=2))
    from diffusers import Flux2KleinPipeline

    negative, _ = Flux2KleinPipeline.from_pretrained(root / KLEIN, local_files_only=True).encode_prompt(
        prompt=["fog"], device="cpu")
    for image, seed in zip(result.pil_images, (5, 6)):
        assert_same(image, reference(root / KLEIN, guidance_scale=2.0, negative_prompt_embeds=negative, seed=seed))


def test_klein_distilled_turbo_mode(orch, root):
    raw = req(KLEIN_DISTILLED, mode="turbo")
    del raw["steps"]
    result = orch.run(raw)
    info = result.info
    assert info["mode"] == "turbo" and info["mode_ignored_reason"] is None and info["step_distilled"] is True
    assert info["applied_preset_patch"]["steps"] == 4 and info["applied_preset_patch"]["cfg_scale"] == 1.0
    fixed = orch.run(req(KLEIN_DISTILLED, cfg_scale=4.0))
    assert_same(fixed.pil_images[0], reference(root / KLEIN_DISTILLED, guidance_scale=4.0))
    assert any("step-distilled" in w for w in fixed.info["warnings"])


def test_turbo_mode_is_ignored_with_a_reason_on_klein_base(orch):
    info = orch.run(req(KLEIN, mode="turbo")).info
    assert info["mode"] == "normal" and info["mode_ignored_reason"]
    assert info["preset"] == "flux2_klein/normal/txt2img"


def test_classic_sampler_is_refused_naming_the_field(orch):
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(req(sampler="DDIM"))
    assert err.value.field == "sampler" and "Euler" in err.value.allowed


# ---- reference-image editing (request key `images`) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def references(tmp_path_factory) -> list[str]:
    """Two references of different sizes (the pipeline crops each to a multiple of 16 and keeps its size)."""
    folder = tmp_path_factory.mktemp("flux2-refs")
    paths = []
    for i, (w, h) in enumerate([(80, 64), (72, 96)]):
        image = Image.new("RGB", (w, h))
        image.putdata([((5 * x + 40 * i) % 256, (4 * y) % 256, 128 + 60 * i) for y in range(h) for x in range(w)])
        path = folder / f"ref{i}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def _open(paths: list[str]) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in paths]


@pytest.mark.parametrize("count", [1, 2])
def test_dev_reference_editing_equals_diffusers(orch, root, references, count):
    refs = references[:count]
    result = orch.run(req(images=refs))
    assert_same(result.pil_images[0], reference(root / DEV, guidance_scale=4.0, image=_open(refs)))
    assert result.info["reference_images"] == count and result.info["request"]["images"] == refs
    plain = orch.run(req()).pil_images[0]
    assert not np.array_equal(np.asarray(plain), np.asarray(result.pil_images[0]))


def test_klein_reference_editing_with_cfg_equals_diffusers(orch, root, references):
    from diffusers import Flux2KleinPipeline

    result = orch.run(req(KLEIN, cfg_scale=2.5, negative_prompt="fog", images=references, batch_size=2))
    negative, _ = Flux2KleinPipeline.from_pretrained(root / KLEIN, local_files_only=True).encode_prompt(
        prompt=["fog"], device="cpu")
    for image, seed in zip(result.pil_images, (5, 6)):
        assert_same(image, reference(root / KLEIN, guidance_scale=2.5, negative_prompt_embeds=negative,
                                     image=_open(references), seed=seed))


def test_reference_image_errors_name_the_field(orch, references, tmp_path):
    from sdcodex.core.errors import ValidationError

    with pytest.raises(ValidationError) as err:
        orch.run(req(images=references * 6))  # 12 > FLUX.2's 10
    assert err.value.field == "images" and "at most 10" in str(err.value)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (48, 96)).save(tiny)
    with pytest.raises(ValidationError) as err:
        orch.run(req(images=[references[0], str(tiny)]))
    assert err.value.field == "images[1]" and "aspect ratio" in str(err.value)
    with pytest.raises(ValidationError) as err:
        orch.run({**req(), "task": "img2img", "init_image": references[0], "images": references})
    assert err.value.field == "images"
