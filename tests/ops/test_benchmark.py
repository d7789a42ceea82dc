"""`sdcodex benchmark`: the JSON report's structure and values, the terminal table, the PNG chart, the raw
Diffusers comparison (same pixels, a ratio printed; "not implemented" said out loud for video engines), demo
models built when the models folder has none, and the bad paths. Tiny demo models, 64x64, 2 steps; no timing
is asserted."""
from __future__ import annotations

import json
import statistics

import pytest
from PIL import Image

from sdcodex.cli.bench_chart import COLORS, chart_size, nice_step, write_chart
from sdcodex.cli.benchmark import STAGES, parse_size
from sdcodex.cli.main import main
from sdcodex.core.errors import ValidationError


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared CPU run far faster on one thread (no effect on what is asserted)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_report_table_and_chart(capsys, demo_models_dir, tmp_path):
    report_path, chart_path, outdir = tmp_path / "r" / "bench.json", tmp_path / "bench.png", tmp_path / "out"
    code, out, err = run_cli(capsys, "--models-dir", demo_models_dir, "benchmark", "--engine", "sd15",
                             "--size", "64x64", "--steps", 2, "--repeat", 2, "--json", report_path,
                             "--chart", chart_path, "--outdir", outdir)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["schema"] == "sdcodex.benchmark/1" and report["repeat"] == 2
    assert report["environment"]["device"] == "cpu" and report["compare_diffusers"] is False
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows) == {"sd15-demo", "sd15-inpaint-demo"}  # every sd15 model in the folder
    assert rows["sd15-demo"]["task"] == "txt2img" and rows["sd15-inpaint-demo"]["task"] == "inpaint"
    for row in rows.values():
        assert (row["engine"], row["width"], row["height"], row["steps"], row["num_frames"]) == ("sd15", 64, 64, 2,
                                                                                                  None)
        assert "error" not in row and "compare_diffusers" not in row
        assert len(row["runs"]) == 2 and set(row["stages_s"]) == set(STAGES)
        for stage in STAGES:  # each stage is the median over the timed runs
            values = [run[stage] for run in row["runs"]]
            assert row["stages_s"][stage] == pytest.approx(statistics.median(values), abs=1e-3)
            assert all(v >= 0 for v in values)
        st = row["stages_s"]
        assert st["denoise"] > 0 and st["decode"] > 0 and st["total"] > 0
        assert st["text_encode"] + st["denoise"] + st["decode"] + st["save"] + st["load"] <= st["total"] + 1e-3
        assert st["load"] < row["cold_load_s"]  # warm runs hit the model cache
        assert row["it_per_s"] > 0 and row["peak_rss_mb"] > 50 and row["peak_vram_mb"] is None
        assert row["sampler"] and row["demo"] is True
    # outputs are kept with --outdir: one warm-up + two timed runs per model
    assert len(list(outdir.rglob("*.png"))) == 6
    # the terminal table
    assert "text_enc" in out and "denoise" in out and "it/s" in out and "RSS MB" in out
    assert "sd15-demo" in out and "sd15-inpaint-demo" in out and "64x64" in out
    # the chart: a real PNG of the promised size, with the stage colours drawn in it
    image = Image.open(chart_path)
    assert image.format == "PNG" and image.size == chart_size(report) == (1000, 74 + 2 * 46 + 40)
    colours = {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert COLORS["denoise"] in colours and COLORS["decode"] in colours


def test_compare_diffusers_same_pixels_and_ratio(capsys, demo_models_dir, tmp_path):
    report_path = tmp_path / "bench.json"
    code, out, err = run_cli(capsys, "--models-dir", demo_models_dir, "benchmark", "--engine", "sd15",
                             "--steps", 2, "--repeat", 2, "--compare-diffusers", "--json", report_path)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["compare_diffusers"] is True
    for row in report["rows"]:
        cmp = row["compare_diffusers"]
        assert cmp["status"] == "ok", cmp
        # the same work: same scheduler built by the policy, same seed, same pixels
        assert cmp["max_pixel_diff"] == 0 and cmp["scheduler_class"] == "DPMSolverMultistepScheduler"
        assert cmp["pipeline"] == {"txt2img": "StableDiffusionPipeline",
                                   "inpaint": "StableDiffusionInpaintPipeline"}[row["task"]]
        assert len(cmp["diffusers_runs_s"]) == 2 and cmp["diffusers_median_s"] > 0
        assert cmp["ratio"] == pytest.approx(cmp["ours_median_s"] / cmp["diffusers_median_s"], rel=0.01)
        assert f"ratio {cmp['ratio']:.3f}" in out
    assert "raw Diffusers comparison" in out and out.count("same pixels") == 2


def test_builds_demo_models_when_there_are_none_and_says_compare_is_not_implemented(capsys, tmp_path):
    models_dir = tmp_path / "models"
    code, out, err = run_cli(capsys, "--models-dir", models_dir, "benchmark", "--engine", "wan22_ti2v_5b",
                             "--steps", 2, "--repeat", 1, "--compare-diffusers", "--json", "-")
    assert code == 0, err
    assert (models_dir / "demo" / "wan22-ti2v-5b-demo" / "model_index.json").is_file()
    report = json.loads(out)  # --json -: the JSON on stdout, the table on stderr
    (row,) = report["rows"]
    assert (row["model"], row["task"], row["num_frames"], row["width"], row["height"]) == (
        "wan22-ti2v-5b-demo", "txt2vid", 5, 64, 64)  # 4k+1 frames, a size that fits the engine's 32 multiple
    assert row["stages_s"]["denoise"] > 0 and row["it_per_s"] > 0
    assert row["compare_diffusers"]["status"] == "not_implemented"
    assert "wan22_ti2v_5b txt2vid" in row["compare_diffusers"]["reason"]
    assert "raw Diffusers comparison not implemented" in err and "wan22-ti2v-5b-demo" in err
    assert any("built the random-weight demo model" in note for note in report["notes"])


@pytest.mark.parametrize("argv, expected", [
    (["--engine", "nosuch"], ["unknown engine 'nosuch'", "sd15", "sdxl", "flux", "wan22_ti2v_5b"]),
    (["--engine", "sd15", "--size", "64by64"], ["--size", "'64by64' is not WIDTHxHEIGHT"]),
    (["--engine", "sd15", "--repeat", "0"], ["--repeat", "at least 1"]),
    (["--engine", "sd15", "--steps", "0"], ["--steps", "at least 1"]),
    (["--engine", "sd15", "--size", "60x64"], ["60x64", "engine sd15", "multiples of 8"]),
    (["--engine", "svd", "--size", "96x64"], ["96x64", "engine svd", "multiples of 64"]),
    (["--engine", "wan22_ti2v_5b", "--frames", "6"], ["6 frames", "engine wan22_ti2v_5b", "4k+1"]),
    (["--engine", "sd15", "--chart", "chart.jpg"], ["--chart", ".png"]),
])
def test_bad_arguments_fail_with_one_line(capsys, tmp_path, argv, expected):
    models_dir = tmp_path / "models"
    code, out, err = run_cli(capsys, "--models-dir", models_dir, "benchmark", *argv, "--json", tmp_path / "r.json")
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdcodex: error: ")
    for text in expected:
        assert text in lines[0]
    assert not (tmp_path / "r.json").exists() and not (models_dir / "demo").exists()  # nothing ran, nothing built


def test_parse_size_and_chart_helpers(tmp_path):
    assert parse_size("512x768") == (512, 768) and parse_size(" 64 X 64 ") == (64, 64)
    for bad in ("512", "0x64", "axb", "64x64x3"):
        with pytest.raises(ValidationError):
            parse_size(bad)
    assert nice_step(6.0) == 1 and nice_step(0.09) == 0.02 and nice_step(1.2) == 0.2
    # a chart with an error row and a not-implemented comparison still draws
    report = {"repeat": 1, "environment": {"device": "cpu"}, "compare_diffusers": True, "rows": [
        {"engine": "svd", "model": "svd-demo", "task": "img2vid", "width": 64, "height": 64, "steps": 2,
         "num_frames": 5, "stages_s": dict.fromkeys(STAGES, 0.1) | {"total": 0.6}, "it_per_s": 3.0,
         "compare_diffusers": {"status": "not_implemented", "reason": "x"}},
        {"engine": "sd15", "model": "a-very-long-model-name-that-does-not-fit-in-the-label-column-at-all",
         "task": "txt2img", "width": 64, "height": 64, "steps": 2, "num_frames": None, "error": "boom"}]}
    path = write_chart(report, tmp_path / "c.png")
    assert Image.open(path).size == chart_size(report) == (1000, 74 + 2 * 46 + 40)


@pytest.mark.parametrize("engine,pipeline", [("z_image", "ZImagePipeline"), ("chroma", "ChromaPipeline"),
                                             ("flux2", "Flux2Pipeline"), ("flux2_klein", "Flux2KleinPipeline")])
def test_compare_diffusers_covers_the_newer_image_families(capsys, tmp_path, engine, pipeline):
    """An empty models folder: the demo model is built, then ours and the raw pipeline give the same pixels."""
    report_path = tmp_path / "bench.json"
    code, out, err = run_cli(capsys, "--models-dir", tmp_path / "models", "benchmark", "--engine", engine,
                             "--size", "64x64", "--steps", 2, "--repeat", 1, "--compare-diffusers",
                             "--json", report_path)
    assert code == 0, err
    rows = json.loads(report_path.read_text())["rows"]
    assert rows and all(r["engine"] == engine for r in rows)
    for row in rows:
        cmp = row["compare_diffusers"]
        assert cmp["status"] == "ok", cmp
        assert cmp["max_pixel_diff"] == 0 and cmp["pipeline"] == pipeline
        assert cmp["scheduler_class"] == "FlowMatchEulerDiscreteScheduler"


def test_offload_policies_side_by_side(capsys, demo_models_dir, tmp_path):
    """`benchmark --offload`: every policy is a row; on this CPU `none` runs (time, peak memory > 0) and the
    three that move weights to and from an accelerator are listed with the reason."""
    report_path = tmp_path / "offload.json"
    code, out, err = run_cli(capsys, "--models-dir", demo_models_dir, "benchmark", "--offload", "--model", "sd15-demo",
                             "--steps", 1, "--repeat", 1, "--json", report_path)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["schema"] == "sdcodex.benchmark.offload/1"
    rows = {r["policy"]: r for r in report["rows"]}
    assert list(rows) == ["none", "model", "group", "sequential"] and len(report["rows"]) == 4
    none = rows["none"]
    assert none["model"] == "sd15-demo" and none["status"] == "ok" and none["effective"] == "none"
    assert none["time_s"] > 0 and none["denoise_s"] > 0 and none["peak_mb"] > 0 and none["peak_delta_mb"] >= 0
    assert none["resident_mb"] > 0
    for policy in ("model", "group", "sequential"):
        assert rows[policy]["status"] == "skipped" and "needs a CUDA device" in rows[policy]["reason"]
        assert f"{policy:10s} skipped: offload='{policy}' needs a CUDA device" in out
    line = next(x for x in out.splitlines() if x.startswith("sd15-demo") and " none " in x)
    assert line.split()[-1] == "1.00" and f"{none['time_s']:.3f}" in line
    assert "peak resident memory" in out


def test_peak_memory_sees_an_allocation():
    from sdcodex.cli.bench_offload import peak_memory

    with peak_memory("cpu") as mem:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])       # touch every page: resident
        del block
    assert mem["delta_mb"] >= 60 and mem["peak_mb"] >= mem["delta_mb"]
