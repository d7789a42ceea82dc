"""Qwen-Image-Edit with tiny random-weight models through the orchestrator: 2509/2511 (QwenImageEditPlusPipeline)
editing one and two input images, and the first Edit model (QwenImageEditPipeline) editing one, give the pixels of
Diffusers' own pipelines on the same components, fed the same
images-only Qwen2-VL processor (transformers builds its own only with torchvision) and a scheduler built here from
Diffusers' class; folder detection; the `images` rules; the processor's save/load round trip.

The Plus pipeline resizes each input to about 384x384 px for the vision tower and 1024x1024 px for the VAE (module
constants), the first Edit pipeline to about 1024x1024 px for both (its calculate_dimensions). Both sides run the same Diffusers code, so the test lowers those constants to keep the tiny model fast on
a CPU; nothing of ours reads them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ValidationError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.models.detect import detect_folder
from sdcodex.models.processors import QwenVLProcessor, load_qwen_vl_processor
from sdcodex.runtime import MediaSaver
from tests.engines.test_flux2 import Flux2Models
from tests.engines.test_qwen_image import folder_modules

PROMPT, NEGATIVE, MODEL, V1 = "make it blue", "blurry", "qwen-image-edit-demo", "qwen-image-edit-v1-demo"


@pytest.fixture(scope="module", autouse=True)
def small_inputs():
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as edit
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus

    dimensions = edit.calculate_dimensions
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plus, "CONDITION_IMAGE_SIZE", 56 * 56)
        mp.setattr(plus, "VAE_IMAGE_SIZE", 64 * 64)
        mp.setattr(edit, "calculate_dimensions", lambda area, ratio: dimensions(64 * 64, ratio))
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qwen-edit-models")
    build_demo_model("qwen_image_edit", root)
    build_demo_model("qwen_image_edit_v1", root)
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("qwen-edit-inputs")
    first = Image.new("RGB", (64, 48))
    first.putdata([(4 * x, 5 * y, 128) for y in range(48) for x in range(64)])
    second = Image.new("RGB", (48, 64))
    second.putdata([(200, 3 * x, 4 * y) for y in range(64) for x in range(48)])
    paths = [str(folder / "first.png"), str(folder / "second.png")]
    first.save(paths[0])
    second.save(paths[1])
    return paths


@pytest.fixture()
def orch(root, tmp_path) -> Orchestrator:
    return Orchestrator(Flux2Models(root), MediaSaver(tmp_path / "out"),
                        image_loader=lambda value, field: Image.open(value))


def req(images: list[str], model: str = MODEL, **extra) -> dict:
    return {"task": "txt2img", "model": model, "prompt": PROMPT, "negative_prompt": NEGATIVE, "images": images,
            "width": 64, "height": 64, "steps": 3, "cfg_scale": 4.0, "seed": 5, **extra}


def reference(folder: Path, images: list[str], seed: int = 5) -> np.ndarray:
    """Diffusers' Edit pipeline of the folder's model_index on the folder's modules (each loaded by its own class), the processor of
    the folder's processor/, the published Qwen-Image scheduler settings given to Diffusers' class here."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    comps = folder_modules(folder)
    comps["processor"] = load_qwen_vl_processor(folder / "processor")
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                                                max_image_seq_len=8192, shift_terminal=0.02)
    cls = getattr(diffusers, json.loads((folder / "model_index.json").read_text())["_class_name"])
    pipe = cls(scheduler=scheduler, **comps)
    pipe.set_progress_bar_config(disable=True)
    pictures = [Image.open(p).convert("RGB") for p in images]
    out = pipe(image=pictures if cls is diffusers.QwenImageEditPlusPipeline else pictures[0], prompt=PROMPT, negative_prompt=NEGATIVE,
               true_cfg_scale=4.0, num_inference_steps=3, width=64, height=64,
               generator=torch.Generator("cpu").manual_seed(seed))
    return np.asarray(out.images[0], dtype=np.int16)


def assert_same(ours: Image.Image, ref: np.ndarray) -> None:
    diff = np.abs(np.asarray(ours, dtype=np.int16) - ref)
    assert diff.max() <= 1, f"max pixel difference {diff.max()}"


@pytest.mark.parametrize("count", [1, 2])
def test_edit_equals_diffusers(orch, root, inputs, count):
    result = orch.run(req(inputs[:count]))
    assert result.info["engine"] == "qwen_image_edit" and result.info["input_images"] == count
    assert result.info["sampler_effective"] == "Euler"
    assert_same(result.pil_images[0], reference(root / MODEL, inputs[:count]))


def test_first_edit_model_equals_diffusers_and_takes_one_image(orch, root, inputs):
    result = orch.run(req(inputs[:1], model=V1))
    assert result.info["engine"] == "qwen_image_edit" and result.info["input_images"] == 1
    assert_same(result.pil_images[0], reference(root / V1, inputs[:1]))
    with pytest.raises(ValidationError) as err:
        orch.run(req(inputs, model=V1))
    assert err.value.field == "images" and "1..1 images" in str(err.value.allowed)


def test_batch_is_one_call_per_seed(orch, root, inputs):
    result = orch.run(req(inputs[:1], batch_size=2))
    assert len(result.pil_images) == 2
    assert_same(result.pil_images[1], reference(root / MODEL, inputs[:1], seed=6))


def test_folder_is_detected_as_qwen_image_edit(root):
    found = detect_folder(root / MODEL)
    assert found.family.value == "qwen_image_edit" and found.variant["plus"] is True
    first = detect_folder(root / V1)
    assert first.family.value == "qwen_image_edit" and first.variant["plus"] is False


@pytest.mark.parametrize("count", [0, 4])
def test_image_count_is_checked(orch, inputs, count):
    request = req((inputs * 2)[:count])
    if not count:
        del request["images"]
    with pytest.raises(ValidationError) as err:
        orch.run(request)
    assert err.value.field == "images" and "1..3 images" in str(err.value.allowed)


def test_processor_saves_and_loads_without_torchvision(root, tmp_path):
    proc = load_qwen_vl_processor(root / MODEL / "processor")
    assert isinstance(proc, QwenVLProcessor) and proc.video_processor is None
    proc.save_pretrained(tmp_path / "p")
    again = load_qwen_vl_processor(tmp_path / "p")
    image = Image.new("RGB", (56, 84), (10, 200, 30))
    text = "<|vision_start|><|image_pad|><|vision_end|>edit"
    a, b = proc(text=[text], images=[image], return_tensors="pt"), again(text=[text], images=[image], return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])
    # 56 px wide, 84 high at patch 14, merge 2: a (t, h, w) = 1x6x4 grid of patches -> 6 image tokens in the text
    assert a["image_grid_thw"].tolist() == [[1, 6, 4]]
    assert int((a["input_ids"] == proc.image_token_id).sum()) == 6
    with pytest.raises(ValueError, match="video"):
        proc(text=[text], videos=[[image]])


def test_processor_reads_the_qwen2_vl_config_format(root, tmp_path):
    """The Qwen2-VL preprocessor_config.json keys (min_pixels/max_pixels, image_processor_type Qwen2VLImageProcessor,
    processor_class Qwen2VLProcessor) load into the PIL image processor."""
    import shutil

    folder = tmp_path / "processor"
    shutil.copytree(root / MODEL / "processor", folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor"}))
    proc = load_qwen_vl_processor(folder)
    assert proc.image_processor.size.shortest_edge == 3136 and proc.image_processor.size.longest_edge == 12845056
    assert proc.image_processor.merge_size == 2 and proc.image_processor.patch_size == 14
