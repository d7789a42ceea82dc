"""upscale_image: seamless tiling, exact output sizes for any factor, progress/stop, field errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcodex.core.errors import InterruptedError_, ValidationError
from sdcodex.engines.upscale_ops import count_tiles, tile_starts, upscale_image

from .helpers import psnr

COMPACT, RRDB, ANIME6B = "R-ESRGAN AnimeVideo", "R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"


@pytest.fixture(scope="module")
def photo_64(astronaut_crop):
    return astronaut_crop.resize((64, 64), Image.Resampling.BICUBIC)


def _interior(array: np.ndarray, margin: int = 16) -> np.ndarray:
    return array[margin:-margin, margin:-margin].astype(int)


@pytest.mark.parametrize("name, limit", [(COMPACT, 3), (RRDB, 8)])
def test_flat_colour_stays_flat_when_tiled(packaged_model, name, limit):
    model = packaged_model(name)
    flat = Image.new("RGB", (48, 48), (120, 160, 200))   # 2x2 tiles of 32 overlapping by >= 8
    tiled = _interior(np.asarray(upscale_image(flat, model, tile_size=32, tile_overlap=8)))
    untiled = _interior(np.asarray(upscale_image(flat, model, tile_size=0)))
    deviation = np.abs(tiled - np.median(tiled.reshape(-1, 3), axis=0)).max()
    seams = np.abs(tiled - untiled).max()
    print(f"{name}: flat deviation {deviation}, tiled vs untiled {seams} (of 255)")
    assert tiled.shape == (160, 160, 3)
    assert deviation <= limit
    assert seams <= limit


def test_tiled_matches_untiled_on_a_photo(packaged_model, photo_64):
    model = packaged_model(COMPACT)
    untiled = np.asarray(upscale_image(photo_64, model, tile_size=0))
    tiled = np.asarray(upscale_image(photo_64, model, tile_size=32, tile_overlap=8))
    diff = np.abs(tiled.astype(int) - untiled)
    print(f"tiled vs untiled: mean {diff.mean():.3f}, max {diff.max()}, PSNR {psnr(tiled, untiled):.1f} dB")
    assert diff.mean() < 1.0
    assert psnr(tiled, untiled) > 40


def test_tiled_rrdb_close_to_untiled(packaged_model, astronaut_crop):
    model = packaged_model(ANIME6B)  # RRDBNet: receptive field far larger than a tile, so close, not equal
    image = astronaut_crop.resize((48, 48), Image.Resampling.BICUBIC)
    untiled = np.asarray(upscale_image(image, model, tile_size=0))
    tiled = np.asarray(upscale_image(image, model, tile_size=32, tile_overlap=8))
    print(f"RRDB tiled vs untiled PSNR {psnr(tiled, untiled):.1f} dB")
    assert psnr(tiled, untiled) > 30


def test_tile_plan_covers_evenly():
    assert tile_starts(64, 0, 8) == [0]
    assert tile_starts(30, 32, 8) == [0]
    assert tile_starts(64, 32, 8) == [0, 16, 32]
    for length, tile, overlap in [(100, 48, 16), (1000, 192, 16), (193, 192, 16)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] == length - tile
        assert all(tile - (b - a) >= overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("scale, size", [(2.5, (50, 35)), (1.0, (20, 14)), (0.5, (10, 7)), (8, (160, 112))])
def test_any_scale_gives_exact_size(packaged_model, scale, size):
    image = Image.new("RGB", (20, 14), (10, 200, 30))
    assert upscale_image(image, packaged_model(COMPACT), scale=scale, tile_size=0).size == size


def test_resize_to_and_resize_only_builtins(packaged_model):
    image = Image.radial_gradient("L").convert("RGB").resize((24, 18))
    assert upscale_image(image, packaged_model(COMPACT), resize_to=(77, 33)).size == (77, 33)
    assert upscale_image(image, "Lanczos", scale=1.5).size == (36, 27)
    assert upscale_image(image, "None").size == (96, 72)          # A1111 lists built-ins as 4x
    nearest = upscale_image(image, "Nearest", scale=2)
    assert np.array_equal(np.asarray(nearest), np.asarray(image.resize((48, 36), Image.Resampling.NEAREST)))


def test_progress_counts_tiles_across_passes(packaged_model):
    calls = []
    image = Image.new("RGB", (64, 40), (90, 90, 90))
    upscale_image(image, packaged_model(COMPACT), tile_size=32, tile_overlap=8,
                  progress=lambda done, total: calls.append((done, total)))
    assert count_tiles((64, 40), 32, 8) == 6
    assert calls == [(i, 6) for i in range(0, 7)]  # (0, total) announces the plan first
    calls.clear()   # 8x with a 4x model = two passes: 1 tile at 16x10, then count_tiles(64x40) = 6
    upscale_image(Image.new("RGB", (16, 10)), packaged_model(COMPACT), scale=8, tile_size=32, tile_overlap=8,
                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 7) for i in range(0, 8)]


def test_should_stop_interrupts_between_tiles(packaged_model):
    seen = []
    with pytest.raises(InterruptedError_, match="after 2 of 6 tiles"):
        upscale_image(Image.new("RGB", (64, 40)), packaged_model(COMPACT), tile_size=32, tile_overlap=8,
                      progress=lambda done, total: done and seen.append(done), should_stop=lambda: len(seen) >= 2)


def test_alpha_and_grayscale_are_kept(packaged_model):
    rgba = Image.new("RGBA", (16, 12), (200, 100, 50, 128))
    out = upscale_image(rgba, packaged_model(COMPACT), tile_size=0)
    assert out.mode == "RGBA" and out.size == (64, 48)
    assert np.asarray(out)[..., 3].min() == np.asarray(out)[..., 3].max() == 128
    assert upscale_image(Image.new("L", (16, 12), 90), packaged_model(COMPACT)).mode == "L"


@pytest.mark.parametrize("bad", [0, -1, 16.5, 100, float("nan"), "2", True])
def test_bad_scale_names_the_field(bad):
    with pytest.raises(ValidationError) as info:
        upscale_image(Image.new("RGB", (8, 8)), "Lanczos", scale=bad)
    assert info.value.field == "scale"
    assert info.value.to_dict()["errors"][0]["field"] == "scale"


@pytest.mark.parametrize("kwargs, field", [
    ({"resize_to": (0, 10)}, "resize_to"),
    ({"resize_to": (10,)}, "resize_to"),
    ({"resize_to": (200, 10)}, "resize_to"),
    ({"scale": 2, "resize_to": (16, 16)}, "resize_to"),
    ({"tile_size": 8}, "tile_size"),
    ({"tile_size": -1}, "tile_size"),
    ({"tile_size": 32, "tile_overlap": 16}, "tile_overlap"),
])
def test_bad_options_name_their_field(kwargs, field):
    with pytest.raises(ValidationError) as info:
        upscale_image(Image.new("RGB", (8, 8)), "Lanczos", **kwargs)
    assert info.value.field == field


def test_unloaded_model_name_is_refused():
    with pytest.raises(ValidationError) as info:
        upscale_image(Image.new("RGB", (8, 8)), "R-ESRGAN 4x+")
    assert info.value.field == "upscaler" and "Lanczos" in str(info.value)
