"""Live previews: the latent-to-RGB map, FLUX unpacking, the cadence of preview events, and SD engines
emitting them through the orchestrator (FLUX and video engines are covered in their own test files)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sdcodex.core.events import EventSink
from sdcodex.engines.preview import FACTORS, Previewer, latents_to_rgb, unpack_flux


def test_each_latent_channel_maps_to_its_rgb_row():
    """A latent with one channel set to 1 shows that channel's factor row (plus the bias), in 0..255."""
    for family in ("sd15", "sdxl", "flux", "wan22_t2v_a14b"):
        rows, bias = FACTORS[family]
        for channel in (0, len(rows) - 1):
            latents = torch.zeros(2, len(rows), 3, 5)
            latents[0, channel] = 1.0
            latents[1] = 9.0  # only the first image of a batch is shown
            image = latents_to_rgb(latents, family)
            assert image.size == (5, 3) and image.mode == "RGB"
            want = np.round((np.clip(np.add(rows[channel], bias), -1, 1) + 1) * 127.5)
            assert np.array_equal(np.asarray(image)[1, 2], want.astype(np.uint8)), (family, channel)


def test_video_latents_show_the_first_frame():
    latents = torch.zeros(1, 16, 4, 6, 8)
    latents[0, 2, 0] = 1.0  # the first frame only
    image = np.asarray(latents_to_rgb(latents, "hunyuan_video"))
    rows, bias = FACTORS["hunyuan_video"]
    assert image.shape == (6, 8, 3)
    assert np.array_equal(image[0, 0], np.round((np.add(rows[2], bias) + 1) * 127.5).astype(np.uint8))


def test_no_preview_without_factors_or_with_other_channels():
    assert latents_to_rgb(torch.zeros(1, 4, 8, 8), "svd") is None  # frames-first latents: no map here
    assert latents_to_rgb(torch.zeros(1, 48, 2, 8, 8), "wan22_ti2v_5b") is None
    assert latents_to_rgb(torch.zeros(1, 16, 8, 8), "sd15") is None  # wrong channel count
    assert latents_to_rgb(torch.zeros(16, 8, 8), "sd15") is None


def test_flux_unpack_inverts_diffusers_packing():
    from diffusers import FluxPipeline

    latents = torch.randn(2, 16, 12, 8)
    packed = FluxPipeline._pack_latents(latents, 2, 16, 12, 8)
    assert torch.equal(unpack_flux(packed, 96, 64, 8), latents)
    assert torch.equal(unpack_flux(packed, 48, 32, 4), latents)  # a VAE that scales by 4
    assert unpack_flux(packed, 192, 128, 8) is None  # another size (a hires pass): no preview, no error
    image = Previewer("flux", height=96, width=64)(packed)
    assert image.size == (8, 12)


def test_previewer_never_raises(caplog, monkeypatch):
    from sdcodex.engines import preview

    broken = Previewer("sd15", height=64, width=64)
    assert broken(None) is None and broken("not a tensor") is None
    assert broken(torch.zeros(1, 4, 8, 8)).size == (8, 8)

    def fail(latents, family):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(preview, "latents_to_rgb", fail)
    assert broken(torch.zeros(1, 4, 8, 8)) is None and "live preview failed" in caplog.text
    monkeypatch.undo()
    assert broken(torch.zeros(1, 4, 8, 8)) is None  # switched off for the rest of the run


def test_preview_events_follow_preview_every():
    made, seen = [], []
    sink = EventSink([lambda e: seen.append((e.kind, e.data.get("done")))], preview_every=2)
    sink.plan(5)
    for i in range(5):
        sink.step(i + 1, 5, preview=lambda i=i: made.append(i) or f"image-{i}")
    assert made == [1, 3]  # called only when a preview is due
    assert [d for k, d in seen if k == "preview"] == [2, 4]
    quiet = EventSink([lambda e: seen.append(e.kind)])  # preview_every=0: never asked
    quiet.plan(3)
    for i in range(3):
        quiet.step(i + 1, 3, preview=lambda: pytest.fail("preview made while off"))
    empty = EventSink([lambda e: seen.append(e.kind)], preview_every=1)
    empty.plan(1)
    before = len(seen)
    empty.step(1, 1, preview=lambda: None)  # nothing to show: no event
    assert seen[before:] == ["progress"]


@pytest.mark.parametrize("model,task", [("sd15-demo", "txt2img"), ("sdxl-demo", "txt2img"),
                                        ("sd15-inpaint-demo", "inpaint")])
def test_sd_engines_emit_previews(orchestrator, local_models, model, task):
    from tests.conftest import png_b64
    from PIL import Image

    events = []
    request = {"task": task, "model": model, "prompt": "a fox", "width": 64, "height": 64, "steps": 3, "seed": 5}
    if task == "inpaint":
        request.update(init_image=png_b64(Image.new("RGB", (64, 64), "gray")),
                       mask=png_b64(Image.new("L", (64, 64), 255)))
    orchestrator.run(request, events=EventSink([events.append], preview_every=1))
    previews = [e for e in events if e.kind == "preview"]
    loaded = local_models.load(local_models.resolve(model))
    scale = 2 ** (len(loaded.components["vae"].config.block_out_channels) - 1)
    assert [p.data["done"] for p in previews] == [e.data["done"] for e in events if e.kind == "progress"]
    assert len(previews) >= 2
    assert all(p.data["image"].size == (64 // scale, 64 // scale) for p in previews)
    assert len({p.data["image"].tobytes() for p in previews}) > 1  # the latents change from step to step
