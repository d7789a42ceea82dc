"""The X/Y/Z plot through the orchestrator on the tiny SD 1.5 demo model: a 2x2 plot makes one labelled grid and
four cell files with their own infotext, each cell equal (pixels) to the single job with its parameters; cells
that share a checkpoint do not reload it (A1111's order, cache of one model); progress runs over the whole plot;
skip drops a cell, interrupt stops the plot."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from sdcodex.core.events import EventSink
from sdcodex.media.reader import read_info

BASE = {"task": "txt2img", "prompt": "a red fox", "width": 64, "height": 64, "steps": 2, "seed": 5}


@pytest.fixture(scope="module")
def xyz_models(tmp_path_factory):
    from sdcodex.models.demo import build_demo_model

    root = tmp_path_factory.mktemp("xyz-models")
    build_demo_model("sd15", root / "demo")
    (folder,) = [p for p in (root / "demo").iterdir() if p.is_dir()]
    shutil.copytree(folder, root / "demo" / "sd15-copy")  # a second checkpoint (same weights, other name)
    return root


@pytest.fixture()
def orch(xyz_models, tmp_path):
    from sdcodex.runtime import LocalModels, build_orchestrator

    return build_orchestrator(models=LocalModels(xyz_models, cache_size=1), outdir=tmp_path / "out", device="cpu")


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_2x2_plot_grid_cells_and_infotext(orch):
    events = []
    sink = EventSink([lambda e: events.append(e) if e.kind == "progress" else None])
    req = {**BASE, "xyz": {"x": {"type": "steps", "values": "1-2"}, "y": {"type": "cfg_scale", "values": "3, 7"}}}
    result = orch.run(req, events=sink)
    xyz = result.info["xyz"]
    assert xyz["shape"] == [2, 2, 1] and xyz["grids"] == 1 and len(result.images) == 5
    grid = result.pil_images[0]
    layout = xyz["layout"]
    assert layout["pad_left"] == 48 and layout["pad_top"] > 0  # Y labels in a band 3/4 of a cell wide
    assert grid.size == (48 + 2 * 64, layout["pad_top"] + 2 * 64)
    # progress over the plot: 1 + 2 + 1 + 2 steps
    assert [e.data["done"] for e in events] == [1, 2, 3, 4, 5, 6] and {e.data["total"] for e in events} == {6}
    infos = [read_info(path)["parameters"] for path in result.images]
    assert "Script: X/Y/Z plot" in infos[0] and "X Type: Steps" in infos[0] and "Y Values: \"3, 7\"" in infos[0]
    for cell in xyz["cells"]:
        steps, cfg = [1, 2][cell["x"]], [3.0, 7.0][cell["y"]]
        (index,) = cell["images"]
        assert f"Steps: {steps}," in infos[index] and f"CFG scale: {cfg:g}," in infos[index]
        assert "Seed: 5," in infos[index] and "Script" not in infos[index]
        single = orch.run({**BASE, "steps": steps, "cfg_scale": cfg}).pil_images[0]
        assert np.array_equal(pixels(result.pil_images[index]), pixels(single))
        x0, y0 = layout["pad_left"] + 64 * cell["x"], layout["pad_top"] + 64 * cell["y"]
        assert np.array_equal(pixels(grid.crop((x0, y0, x0 + 64, y0 + 64))), pixels(single))
    # the grid's top-left band holds no cell, the label bands are drawn (not all white)
    top = pixels(grid.crop((48, 0, 176, layout["pad_top"])))
    assert top.min() < 128 and pixels(grid.crop((0, layout["pad_top"], 48, grid.height))).min() < 128


def test_checkpoint_axis_loads_each_model_once(orch, monkeypatch):
    import sdcodex.models.loader as loader

    loads = []
    real = loader.load_model
    monkeypatch.setattr(loader, "load_model", lambda path, **kw: loads.append(path) or real(path, **kw))
    req = {**BASE, "steps": 1, "xyz": {"x": {"type": "seed", "values": "1, 2"},
                                       "y": {"type": "model", "values": "sd15-demo, sd15-copy"},
                                       "draw_legend": False}}
    result = orch.run(req)
    # the cache holds ONE model: in grid order (x fastest) the models would alternate 4 loads; A1111's order 2
    assert len(loads) == 2 and len(set(loads)) == 2
    assert result.pil_images[0].size == (128, 128)
    cells = result.info["xyz"]["cells"]
    assert [c["seeds"] for c in cells] == [[1], [2], [1], [2]]
    assert result.info["request"]["xyz"]["y"]["values"] == ["sd15-demo", "sd15-copy"]


def test_skip_drops_a_cell_and_interrupt_stops_the_plot(orch):
    sink = EventSink()
    seen: list[tuple] = []

    def control(event):
        if event.kind != "progress":
            return
        seen.append(tuple(event.data["cell"]))
        if event.data["cell"] == [0, 0, 0]:
            sink.control.skip()       # the first cell: dropped after its first step
        elif event.data["cell"] == [0, 1, 0]:
            sink.control.interrupt()  # the third cell: stops the plot

    sink.listeners.append(control)
    req = {**BASE, "xyz": {"x": {"type": "cfg_scale", "values": "3, 7"}, "y": {"type": "steps", "values": "2, 2"},
                           "draw_legend": False}}
    result = orch.run(req, events=sink)
    info = result.info
    assert info["interrupted"] is True and info["skipped"] == 1
    cells = info["xyz"]["cells"]
    assert cells[0]["images"] == [] and len(cells[1]["images"]) == 1 and cells[3].get("missing")
    grid = pixels(result.pil_images[0])
    assert grid[:64, :64].max() == 0  # a skipped cell is black, as in A1111
    assert np.array_equal(grid[:64, 64:], pixels(result.pil_images[cells[1]["images"][0]]))
    assert (0, 1, 0) in seen and (1, 1, 0) not in seen
