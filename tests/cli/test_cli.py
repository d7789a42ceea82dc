"""The `sdcodex` CLI: generate prints one JSON object, reproduces from an image's metadata, and bad input
exits non-zero with one line on stderr and writes nothing."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcodex.cli.main import main

REQ = {"task": "txt2img", "model": "sd15-demo", "prompt": "a boat, calm sea", "negative_prompt": "fog",
       "width": 64, "height": 64, "steps": 3, "seed": 77, "sampler": "Euler a"}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def outdir(tmp_path):
    return tmp_path / "out"


def write_request(tmp_path, data, name="req.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_generate_prints_json_and_writes_png_with_infotext(capsys, demo_models_dir, tmp_path, outdir):
    code, out, err = run_cli(capsys, "--models-dir", str(demo_models_dir), "generate",
                             str(write_request(tmp_path, REQ)), "--outdir", str(outdir))
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) >= {"images", "info"} and len(doc["images"]) == 1
    path = Path(doc["images"][0])
    assert path.name == "00000-77.png"  # A1111 numbers from 00000 and path.parent.parent.name == "txt2img"
    params = Image.open(path).info["parameters"]
    assert params.startswith("a boat, calm sea\nNegative prompt: fog\nSteps: 3, Sampler: Euler a")
    assert "Seed: 77" in params and "Size: 64x64" in params and f"Model hash: {doc['info']['model_hash']}" in params
    info = doc["info"]
    assert info["sampler_in"] == "Euler a" and info["seeds"] == [77] and info["request"]["seed"] == 77


def test_generate_from_image_reproduces_pixels(capsys, demo_models_dir, tmp_path, outdir):
    code, out, _ = run_cli(capsys, "--models-dir", str(demo_models_dir), "generate",
                           str(write_request(tmp_path, {**REQ, "seed": -1})), "--outdir", str(outdir))
    first = Path(json.loads(out)["images"][0])
    code, out, err = run_cli(capsys, "--models-dir", str(demo_models_dir), "generate", "--from", str(first),
                             "--outdir", str(outdir))
    assert code == 0, err
    second = Path(json.loads(out)["images"][0])
    assert second != first
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))


def test_generate_from_stdin(capsys, monkeypatch, demo_models_dir, outdir):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({**REQ, "output_format": "webp"})))
    code, out, err = run_cli(capsys, "--models-dir", str(demo_models_dir), "generate", "-", "--outdir", str(outdir))
    assert code == 0, err
    assert json.loads(out)["images"][0].endswith(".webp")


@pytest.mark.parametrize("change,needle", [
    ({"width": 500}, "width: must be a multiple of 8"),
    ({"stepz": 3}, "stepz: unknown key"),
    ({"mask": "x"}, "mask: does not apply to task 'txt2img'"),
    ({"model": "nope"}, "sd15-demo"),
    ({"sampler": "Flow Euler"}, "sampler"),
    ({"seed": "1"}, "seed"),
])
def test_bad_input_exits_nonzero_one_line_nothing_written(capsys, demo_models_dir, tmp_path, outdir, change, needle):
    code, out, err = run_cli(capsys, "--models-dir", str(demo_models_dir), "generate",
                             str(write_request(tmp_path, {**REQ, **change})), "--outdir", str(outdir))
    assert code != 0 and out == ""
    lines = [l for l in err.splitlines() if l.startswith("sdcodex: error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert not outdir.exists() or not any(p.is_file() for p in outdir.rglob("*"))


def test_bad_json_and_missing_file(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run_cli(capsys, "generate", str(bad))
    assert code != 0 and "not valid JSON" in err
    code, _, err = run_cli(capsys, "generate", str(tmp_path / "missing.json"))
    assert code != 0 and "cannot read request" in err


def test_pickle_checkpoint_refused(capsys, demo_models_dir, tmp_path, outdir):
    models = tmp_path / "models"
    models.mkdir()
    ckpt = models / "old-model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    code, _, err = run_cli(capsys, "--models-dir", str(models), "generate",
                           str(write_request(tmp_path, {**REQ, "model": str(ckpt), "engine": "sd15"})), "--outdir", str(outdir))
    assert code != 0 and "allow-pickle" in err and "old-model.ckpt" in err
    assert not outdir.exists()


def test_corrupt_safetensors_named(capsys, tmp_path, outdir):
    models = tmp_path / "models"
    models.mkdir()
    bad = models / "broken.safetensors"
    bad.write_bytes((10**9).to_bytes(8, "little") + b"{")
    code, _, err = run_cli(capsys, "--models-dir", str(models), "generate",
                           str(write_request(tmp_path, {**REQ, "model": str(bad), "engine": "sd15"})), "--outdir", str(outdir))
    assert code != 0 and "broken.safetensors" in err


def test_models_list(capsys, demo_models_dir):
    code, out, _ = run_cli(capsys, "--models-dir", str(demo_models_dir), "models", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["sd15-demo"]["family"] == "sd15" and rows["sdxl-demo"]["family"] == "sdxl"
    assert len(rows["sd15-demo"]["hash"]) == 10
    code, out, _ = run_cli(capsys, "--models-dir", str(demo_models_dir), "models", "list")
    assert "sd15-demo" in out


def test_presets_list_and_validate(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "presets", "list")
    assert code == 0 and "sd15/normal/txt2img" in out
    code, out, _ = run_cli(capsys, "presets", "validate")
    assert code == 0 and "presets valid" in out
    bad = tmp_path / "sd15" / "normal"
    bad.mkdir(parents=True)
    (bad / "txt2img.yaml").write_text("schema_version: 1\nvalues:\n  stepz: 1\n")
    code, _, err = run_cli(capsys, "presets", "validate", "--dir", str(tmp_path))
    assert code != 0 and "stepz" in err


def test_png_info(capsys, demo_models_dir, tmp_path, outdir):
    _, out, _ = run_cli(capsys, "--models-dir", str(demo_models_dir), "generate",
                        str(write_request(tmp_path, REQ)), "--outdir", str(outdir))
    image = json.loads(out)["images"][0]
    code, out, _ = run_cli(capsys, "png-info", image)
    assert code == 0 and "Seed: 77" in out
    code, out, _ = run_cli(capsys, "png-info", image, "--json")
    assert json.loads(out)["request"]["seed"] == 77


def test_demo_builds_and_generates(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "--models-dir", str(tmp_path / "models"), "demo", "--only", "sd15",
                             "sd15_inpaint", "--outdir", str(tmp_path / "out"))
    assert code == 0, err
    assert "RANDOM-WEIGHT" in out and "random weights" in out
    assert len(list((tmp_path / "out").rglob("*.png"))) == 4  # txt2img x2, img2img, inpaint
    assert (tmp_path / "models" / "demo" / "sd15-demo" / "README.txt").exists()


def test_demo_runs_engines_without_img2img_and_their_reference_images(capsys, tmp_path, monkeypatch):
    """FLUX.2 does txt2img only: the demo runs a batch of two, then one edit with a reference image."""
    from sdcodex.cli.main import demo_requests

    assert [r["task"] for r in demo_requests("flux2")] == ["txt2img", "txt2img"]
    assert len(demo_requests("flux2_klein_distilled")[1]["images"]) == 1
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "--models-dir", str(tmp_path / "models"), "demo", "--only", "flux2",
                             "--outdir", str(tmp_path / "out"))
    assert code == 0, err
    assert len(list((tmp_path / "out").rglob("*.png"))) == 3


def test_console_script_installed():
    exe = shutil.which("sdcodex", path=str(Path(sys.executable).parent))
    assert exe, "the sdcodex console script is not installed in the virtualenv"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("sdcodex ")


@pytest.fixture(scope="module")
def flow_image_models(tmp_path_factory):
    from sdcodex.models.demo import build_demo_model, load_demo_builders

    load_demo_builders()
    root = tmp_path_factory.mktemp("image-models")
    for family in ("flux", "flux_schnell", "z_image", "chroma"):
        build_demo_model(family, root / "demo")
    return root


@pytest.mark.parametrize("model", ["sd15-demo", "sdxl-demo", "flux-dev-demo", "flux-schnell-demo", "z-image-demo",
                                   "chroma-demo"])
def test_batch_member_is_remade_exactly_with_generate_from(capsys, demo_models_dir, flow_image_models, tmp_path,
                                                           outdir, model):
    """A batch runs the model on all its images at once, so image 2 of a batch of 2 alone differs in the last bits:
    its stored request records the batch (batch_size 2, batch_index 1, its own seed) and `generate --from` re-makes
    the batch and keeps that image, pixel for pixel; the infotext says it as A1111 does (Batch size, Batch pos)."""
    models = str(demo_models_dir if model.startswith("sd") else flow_image_models)
    req = {"task": "txt2img", "model": model, "prompt": "a boat, calm sea", "width": 64, "height": 64, "steps": 2,
           "seed": 77, "batch_size": 2}
    code, out, err = run_cli(capsys, "--models-dir", models, "generate", str(write_request(tmp_path, req)),
                             "--outdir", str(outdir))
    assert code == 0, err
    first = [Path(p) for p in json.loads(out)["images"]]
    from sdcodex.media.reader import read_info

    stored = read_info(first[1])
    assert {k: stored["request"][k] for k in ("seed", "batch_size", "batch_count", "batch_index")} == \
        {"seed": 78, "batch_size": 2, "batch_count": 1, "batch_index": 1}
    assert "Seed: 78" in stored["parameters"] and "Batch size: 2, Batch pos: 1" in stored["parameters"]
    code, out, err = run_cli(capsys, "--models-dir", models, "generate", "--from", str(first[1]),
                             "--outdir", str(outdir))
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["images"]) == 1 and doc["info"]["seeds"] == [78]
    assert np.array_equal(np.asarray(Image.open(first[1])), np.asarray(Image.open(doc["images"][0])))
    assert read_info(doc["images"][0])["request"]["batch_index"] == 1


@pytest.mark.parametrize("change,field", [({"batch_index": 2}, "batch_index"),
                                          ({"batch_index": 0, "batch_count": 2}, "batch_count")])
def test_batch_index_outside_the_batch_names_the_field(capsys, demo_models_dir, tmp_path, outdir, change, field):
    code, _, err = run_cli(capsys, "--models-dir", str(demo_models_dir), "generate",
                           str(write_request(tmp_path, {**REQ, "batch_size": 2, **change})), "--outdir", str(outdir))
    assert code == 2 and field in err and not outdir.exists()
