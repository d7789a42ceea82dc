"""cache-models against a fake hub on 127.0.0.1: placement, patterns, atomicity, resume and error lines."""
from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from fakehub import COMMIT, FakeHub, safetensors_bytes, tiny_repo  # noqa: E402

from sdcodex.cli import cache_models, catalogue  # noqa: E402
from sdcodex.core.logs import setup_logging  # noqa: E402

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SECRET = "hf_SecretToken1234567890abc"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as if imported offline: the command must lift it
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    return tmp_path


@pytest.fixture()
def hub(env, monkeypatch):
    repos = {SD15: tiny_repo(), "someone/tiny": tiny_repo(),
             "black-forest-labs/FLUX.1-schnell": {
                 "model_index.json": b"{}",
                 "tokenizer_2/spiece.model": b"\x00sentencepiece",
                 "tokenizer_2/tokenizer_config.json": b"{}",
                 "tokenizer_2/special_tokens_map.json": b"{}",
                 "transformer/diffusion_pytorch_model.safetensors": safetensors_bytes({"w": 4})},
             "lllyasviel/Annotators": {**{name: b"pth" + name.encode() for name in catalogue.ANNOTATOR_FILES},
                                       "ZoeD_M12_N.pt": b"zoe", "other/readme.md": b"x"},
             "LiheYoung/depth-anything-large-hf": {"config.json": b"{}", "model.safetensors": safetensors_bytes({"w": 4}),
                                                   "preprocessor_config.json": b"{}", "pytorch_model.bin": b"pickle"}}
    with FakeHub(repos) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def cli(*argv: str, models: Path | None = None) -> int:
    parser = argparse.ArgumentParser()
    cache_models.add_parser(parser.add_subparsers())
    args = parser.parse_args(["cache-models", *argv])
    args.models_dir = str(models) if models else "models"
    return args.func(args)


def resolve_gets(hub: FakeHub) -> int:
    return sum(1 for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p)


def test_success_puts_only_wanted_files_in_place(hub, env, capsys):
    from huggingface_hub import constants
    assert cli("sd15") == 0
    dest = env / "models" / "diffusers" / "sd15"
    assert capsys.readouterr().out.strip() == str(dest)
    got = sorted(str(p.relative_to(dest)).replace("\\", "/") for p in dest.rglob("*") if p.is_file())
    assert got == [".sdcodex-download.json", "model_index.json", "scheduler/scheduler_config.json",
                   "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/merges.txt",
                   "tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "unet/config.json",
                   "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                   "vae/diffusion_pytorch_model.safetensors"]
    repo = tiny_repo()
    assert (dest / "unet/diffusion_pytorch_model.safetensors").read_bytes() == repo["unet/diffusion_pytorch_model.safetensors"]
    assert hub.downloads("unet/diffusion_pytorch_model.bin") == 0      # allow-patterns respected
    assert hub.downloads("v1-5-pruned.safetensors") == 0
    marker = json.loads((dest / ".sdcodex-download.json").read_text())
    assert marker["repo_id"] == SD15 and marker["commit"] == COMMIT
    assert not (dest.parent / "sd15.partial").exists()
    assert constants.HF_HUB_OFFLINE is True                            # offline switch restored


def test_second_run_downloads_nothing(hub, env, capsys):
    assert cli("sd15") == 0
    before = resolve_gets(hub)
    assert cli("sd15") == 0
    assert resolve_gets(hub) == before


def test_unreachable_endpoint_writes_nothing(env, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert cli("sd15") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cache-models: cannot reach http://127.0.0.1:{port}: ")
    assert err.endswith("nothing was written") and "\n" not in err
    assert not (env / "models").exists()


def test_unwritable_destination_fails_before_download(hub, env, capsys):
    (env / "afile").write_text("x")
    assert cli("sd15", "--dest", str(env / "afile" / "sd15")) == 1
    assert "not writable" in capsys.readouterr().err
    assert hub.requests == []


def test_size_mismatch_is_not_left_complete_and_resume_refetches_only_bad_file(hub, env, capsys):
    bad = "unet/diffusion_pytorch_model.safetensors"
    hub.listed_size_delta[bad] = 7
    assert cli("sd15", "--no-hash") == 1
    err = capsys.readouterr().err
    assert "verification failed" in err and bad in err and "size" in err
    dest = env / "models" / "diffusers" / "sd15"
    assert not dest.exists()
    staging = dest.parent / "sd15.partial"
    assert not (staging / bad).exists() and (staging / "vae/diffusion_pytorch_model.safetensors").is_file()
    hub.listed_size_delta.clear()                                       # the hub is fixed; re-run resumes
    assert cli("sd15") == 0
    assert (dest / bad).is_file() and not staging.exists()
    assert hub.downloads(bad) == 2
    assert hub.downloads("vae/diffusion_pytorch_model.safetensors") == 1


def test_bad_safetensors_header_is_rejected(hub, env, capsys):
    good = safetensors_bytes({"w": 8})
    hub.repos[SD15]["vae/diffusion_pytorch_model.safetensors"] = good[:8] + b"{not json" + good[17:]
    assert cli("sd15", "--no-hash") == 1
    err = capsys.readouterr().err
    assert "vae/diffusion_pytorch_model.safetensors" in err and "header" in err
    assert not (env / "models" / "diffusers" / "sd15").exists()


def test_unknown_name_lists_catalogue(env, capsys):
    assert cli("not-a-model") == 2
    err = capsys.readouterr().err
    assert "unknown model 'not-a-model'" in err
    for name in ("sd15", "sdxl-base", "flux-schnell", "wan22-ti2v-5b", "tokenizer-umt5-xxl"):
        assert name in err


def test_gated_without_token_says_set_hf_token(hub, env, capsys):
    hub.gated = 401
    assert cli("sd15") == 1
    err = capsys.readouterr().err
    assert "gated or private" in err and "set HF_TOKEN" in err and "nothing was written" in err


def test_token_is_sent_but_never_printed_or_logged(hub, env, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    setup_logging(level="DEBUG", fmt="json", log_dir=env / "logs")
    hub.gated, hub.token = 401, SECRET
    assert cli("sd15") == 0
    assert any(auth == f"Bearer {SECRET}" for _, _, auth in hub.requests)
    hub.token = "hf_someoneelse000000"                                  # token without access -> 401
    assert cli("sd15", "--dest", str(env / "other")) == 1
    out = capsys.readouterr()
    assert "token in HF_TOKEN has no access" in out.err
    log_text = (env / "logs" / "sdcodex.log").read_text()
    assert "cached stable-diffusion-v1-5" in log_text
    for text in (out.out, out.err, log_text):
        assert SECRET not in text


def test_repo_id_outside_catalogue_uses_default_patterns(hub, env):
    assert cli("someone/tiny") == 0
    dest = env / "models" / "diffusers" / "someone--tiny"
    assert (dest / "unet/diffusion_pytorch_model.safetensors").is_file()
    assert not (dest / "unet/diffusion_pytorch_model.bin").exists()
    assert not (dest / "safety_checker").exists()


def test_tokenizer_entry_fetches_only_tokenizer_folder(hub, env):
    assert cli("tokenizer-t5-xxl") == 0
    dest = env / "models" / "tokenizers" / "tokenizer-t5-xxl"
    assert sorted(p.name for p in dest.iterdir()) == [".sdcodex-download.json", "special_tokens_map.json",
                                                      "spiece.model", "tokenizer_config.json"]
    assert hub.downloads("transformer/diffusion_pytorch_model.safetensors") == 0


def test_annotators_entry_fetches_the_preprocessor_weights_into_models_annotators(hub, env):
    """The one entry that takes .pth files: the ControlNet preprocessors' state dicts, which
    sdcodex/engines/preprocessors_aux.py reads with torch.load(weights_only=True) (tensors only)."""
    from sdcodex.engines.preprocessors import MODULES, annotators_dir
    assert cli("annotators") == 0
    dest = env / "models" / "annotators"
    assert dest == annotators_dir(env / "models")
    assert sorted(p.name for p in dest.iterdir()) == sorted([".sdcodex-download.json", *catalogue.ANNOTATOR_FILES])
    assert hub.downloads("ZoeD_M12_N.pt") == 0
    needed = {f for m in MODULES.values() for f in m.weights}
    models = {f"{e.dest_folder}/{f}" for e in catalogue.CATALOGUE.values() if e.kind == "annotator_model"
              for f in ("config.json", "model.safetensors")}
    assert needed == set(catalogue.ANNOTATOR_FILES) | models


def test_annotator_model_entry_lands_in_its_folder_under_annotators(hub, env):
    """Depth Anything (a transformers folder) goes to <models>/annotators/depth_anything, where the
    depth_anything preprocessor reads it; the pickle is not taken."""
    from sdcodex.engines.preprocessors import annotators_dir, missing_weights
    assert cli("annotator-depth-anything") == 0
    dest = annotators_dir(env / "models") / "depth_anything"
    assert sorted(p.name for p in dest.iterdir()) == [".sdcodex-download.json", "config.json", "model.safetensors",
                                                      "preprocessor_config.json"]
    assert missing_weights("depth_anything", env / "models") == []


def test_list_prints_catalogue(env, capsys):
    assert cli("--list") == 0
    out = capsys.readouterr().out
    for entry in catalogue.CATALOGUE.values():
        assert entry.name in out and entry.repo_id in out


def test_catalogue_patterns_pick_diffusers_files_of_a_real_layout():
    from huggingface_hub.utils import filter_repo_objects
    listing = ["model_index.json", "sd_xl_base_1.0.safetensors", "sd_xl_offset_example-lora_1.0.safetensors",
               "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/model.safetensors",
               "text_encoder/model.fp16.safetensors", "text_encoder/flax_model.msgpack", "text_encoder/model.onnx",
               "text_encoder_2/config.json", "text_encoder_2/model.safetensors", "tokenizer/merges.txt",
               "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
               "tokenizer_2/vocab.json", "tokenizer_2/merges.txt", "unet/config.json",
               "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
               "unet/diffusion_pytorch_model.bin", "unet/openvino_model.xml", "vae/config.json",
               "vae/diffusion_pytorch_model.safetensors", "vae_decoder/model.onnx", "vae_1_0/config.json"]
    entry = catalogue.CATALOGUE["sdxl-base"]
    chosen = set(filter_repo_objects(listing, allow_patterns=list(entry.allow_patterns),
                                     ignore_patterns=list(entry.ignore_patterns)))
    assert chosen == {"model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                      "text_encoder/model.safetensors", "text_encoder_2/config.json",
                      "text_encoder_2/model.safetensors", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
                      "tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "tokenizer_2/vocab.json",
                      "tokenizer_2/merges.txt", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                      "vae/config.json", "vae/diffusion_pytorch_model.safetensors"}
    for group in entry.required:                                        # every required group is satisfiable
        assert list(filter_repo_objects(sorted(chosen), allow_patterns=list(group)))


def test_catalogue_has_the_families_and_never_pickles():
    expected = {"sd15": SD15, "sdxl-base": "stabilityai/stable-diffusion-xl-base-1.0",
                "flux-schnell": "black-forest-labs/FLUX.1-schnell",
                "svd-xt": "stabilityai/stable-video-diffusion-img2vid-xt",
                "hunyuan-video": "hunyuanvideo-community/HunyuanVideo",
                "wan22-ti2v-5b": "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "wan22-t2v-a14b": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
                "wan22-i2v-a14b": "Wan-AI/Wan2.2-I2V-A14B-Diffusers"}
    for name, repo in expected.items():
        assert catalogue.CATALOGUE[name].repo_id == repo
    for name in ("sdxl-refiner", "flux-dev", "tokenizer-t5-xxl", "tokenizer-umt5-xxl", "tokenizer-llama-hunyuan"):
        assert name in catalogue.CATALOGUE
    assert catalogue.CATALOGUE["flux-dev"].gated
    for entry in catalogue.CATALOGUE.values():
        assert not any(p.endswith((".bin", ".ckpt", ".pt", ".msgpack", ".onnx")) for p in entry.allow_patterns)
        assert entry.kind == "annotators" or not any(p.endswith(".pth") for p in entry.allow_patterns)
        if entry.kind == "tokenizer":
            assert all(p.startswith(entry.subfolder + "/") for p in entry.allow_patterns)
            assert entry.dest("m") == Path("m/tokenizers") / entry.name
