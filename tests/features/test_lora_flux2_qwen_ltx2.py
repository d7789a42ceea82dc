"""LoRA on FLUX.2, Qwen-Image and LTX-2 (tiny demo models) in the layouts they are published in, through the
orchestrator; the pixels equal each Diffusers pipeline with the same file loaded by its own `load_lora_weights`
(scheduler built here from Diffusers' class), every layout of a family gives the same pixels, nothing leaks into the
next run, and detection names the family.

FLUX.2: ai-toolkit / ComfyUI BFL names (`diffusion_model.double_blocks.0.img_attn.qkv`, fused q/k/v sharing one down
matrix; `single_blocks.0.linear1` stays fused in Diffusers), kohya flat names with alpha, PEFT (`transformer.`).
Qwen-Image: ComfyUI/ai-toolkit (`diffusion_model.` + alpha), kohya/musubi flat (`lora_unet_transformer_blocks_0_...`),
the bare names + alpha of lightx2v's Qwen-Image-Lightning files (rank 64, alpha 8 there), PEFT.
LTX-2: Lightricks' names (`diffusion_model.patchify_proj`, `...audio_attn1.to_k`, the connectors' text projection
`text_embedding_projection.aggregate_embed`) and PEFT (Diffusers names, `connectors.text_proj_in`).
The LoRA files are made here from the models' shapes."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

RANK = 4
FLUX2 = {"task": "txt2img", "model": "flux2-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
         "steps": 2, "seed": 3}
QWEN = {"task": "txt2img", "model": "qwen-image-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
        "steps": 2, "seed": 3, "cfg_scale": 1.0}
LTX2 = {"task": "txt2vid", "model": "ltx2-demo", "prompt": "a robot dancing", "width": 64, "height": 32,
        "num_frames": 9, "fps": 24.0, "steps": 2, "cfg_scale": 1.0, "seed": 11}


def _pair(gen: torch.Generator, module: torch.nn.Linear, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randn(RANK, module.in_features, generator=gen) * 0.3,
            torch.randn(rows or module.out_features, RANK, generator=gen) * 0.3)


def _put(out: dict, stem: str, down: torch.Tensor, up: torch.Tensor, names=("lora_A", "lora_B"),
         alpha: float | None = None) -> None:
    out[f"{stem}.{names[0]}.weight"], out[f"{stem}.{names[1]}.weight"] = down, up
    if alpha is not None:
        out[f"{stem}.alpha"] = torch.tensor(alpha)


def flux2_loras(tr: torch.nn.Module, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Double block 0's image q/k/v (fused in BFL), image out, image MLP in, single block 0's fused linear1."""
    gen = torch.Generator().manual_seed(seed)
    block, single = tr.transformer_blocks[0], tr.single_transformer_blocks[0]
    width = block.attn.to_q.out_features
    mods = {"double_blocks.0.img_attn.qkv": _pair(gen, block.attn.to_q, 3 * width),
            "double_blocks.0.img_attn.proj": _pair(gen, block.attn.to_out[0]),
            "double_blocks.0.img_mlp.0": _pair(gen, block.ff.linear_in),
            "single_blocks.0.linear1": _pair(gen, single.attn.to_qkv_mlp_proj)}
    toolkit, kohya, peft = {}, {}, {}
    for name, (down, up) in mods.items():
        _put(toolkit, f"diffusion_model.{name}", down, up)
        _put(kohya, "lora_unet_" + name.replace(".", "_"), down, up, ("lora_down", "lora_up"), float(RANK))
    down, up = mods["double_blocks.0.img_attn.qkv"]
    for i, x in enumerate("qkv"):
        _put(peft, f"transformer.transformer_blocks.0.attn.to_{x}", down, up[i * width:(i + 1) * width])
    _put(peft, "transformer.transformer_blocks.0.attn.to_out.0", *mods["double_blocks.0.img_attn.proj"])
    _put(peft, "transformer.transformer_blocks.0.ff.linear_in", *mods["double_blocks.0.img_mlp.0"])
    _put(peft, "transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj", *mods["single_blocks.0.linear1"])
    return {"toolkit": toolkit, "kohya": kohya, "peft": peft}


def qwen_loras(tr: torch.nn.Module, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Both blocks' image and text attention, block 0's image MLP and text modulation, in four layouts."""
    gen = torch.Generator().manual_seed(seed)
    names = [f"transformer_blocks.{b}.{m}" for b in (0, 1) for m in ("attn.to_q", "attn.add_k_proj", "attn.to_add_out")]
    names += ["transformer_blocks.0.img_mlp.net.0.proj", "transformer_blocks.0.txt_mod.1"]
    alpha = RANK / 2
    comfy, kohya, bare, peft = {}, {}, {}, {}
    for name in names:
        down, up = _pair(gen, tr.get_submodule(name))
        _put(comfy, f"diffusion_model.{name}", down, up, alpha=alpha)
        _put(kohya, "lora_unet_" + name.replace(".", "_"), down, up, ("lora_down", "lora_up"), alpha)
        _put(bare, name, down, up, ("lora_down", "lora_up"), alpha)
        _put(peft, f"transformer.{name}", down, up * (alpha / RANK))
    return {"comfy": comfy, "kohya": kohya, "lightning": bare, "peft": peft}


def ltx2_loras(tr: torch.nn.Module, seed: int, connectors: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Video and audio self-attention, the audio-to-video cross-attention, the FFN, the video patch projection and
    the text projection in front of the connectors, in Lightricks' names and in Diffusers' (PEFT)."""
    from sdcodex.models.convert_flow import LTX2_PARTS

    gen = torch.Generator().manual_seed(seed)
    inverse = {new: old for old, new in LTX2_PARTS.items()}
    names = ["transformer_blocks.0.attn1.to_q", "transformer_blocks.0.audio_attn1.to_k",
             "transformer_blocks.0.audio_to_video_attn.to_v", "transformer_blocks.0.ff.net.0.proj", "proj_in"]
    lightricks, peft = {}, {}
    for name in names:
        down, up = _pair(gen, tr.get_submodule(name))
        original = ".".join(inverse.get(part, part) for part in name.split("."))
        _put(lightricks, f"diffusion_model.{original}", down, up)
        _put(peft, f"transformer.{name}", down, up)
    assert "diffusion_model.patchify_proj.lora_A.weight" in lightricks
    down, up = _pair(gen, connectors.text_proj_in)
    _put(lightricks, "text_embedding_projection.aggregate_embed", down, up)
    _put(peft, "connectors.text_proj_in", down, up)
    return {"lightricks": lightricks, "peft": peft}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    from sdcodex.models.demo import build_demo_model
    from sdcodex.runtime import LocalModels

    root = tmp_path_factory.mktemp("flux2-qwen-ltx2-loras")
    for family in ("flux2", "qwen_image", "ltx2"):
        build_demo_model(family, root)
    plain = LocalModels(root)
    made = {"flux2": flux2_loras, "qwen": qwen_loras, "ltx2": ltx2_loras}
    models = {"flux2": "flux2-dev-demo", "qwen": "qwen-image-demo", "ltx2": "ltx2-demo"}
    (root / "Lora").mkdir()
    for family, make in made.items():
        components = plain.load(plain.resolve(models[family])).components
        extra = (components["connectors"],) if family == "ltx2" else ()
        for layout, sd in make(components["transformer"], 7, *extra).items():
            save_file({k: v.clone().contiguous() for k, v in sd.items()}, root / "Lora" / f"{family}-{layout}.safetensors")
    return root


@pytest.fixture(scope="module")
def orch(lora_dir, tmp_path_factory):
    from sdcodex.runtime import LocalModels, build_orchestrator

    return build_orchestrator(models=LocalModels(lora_dir), outdir=tmp_path_factory.mktemp("lora-out"), device="cpu")


def pixels(result) -> np.ndarray:
    frames = result.frames[0] if result.frames else result.pil_images
    return np.stack([np.asarray(f, dtype=np.int16) for f in frames])


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1, np.abs(ours - theirs).max()


def _layouts(orch, base: dict, family: str, layouts: tuple[str, ...], layers: int, weight: float = 0.8) -> dict:
    before = pixels(orch.run(base))
    results = {layout: orch.run({**base, "prompt": f"{base['prompt']} <lora:{family}-{layout}:{weight}>"})
               for layout in layouts}
    first = pixels(results[layouts[0]])
    for layout, result in results.items():
        assert result.info["loras"][0]["layers"] == layers, (layout, result.info["loras"])
        assert np.array_equal(pixels(result), first), layout
    assert not np.array_equal(before, first)
    assert np.array_equal(before, pixels(orch.run(base)))  # nothing leaks into the next run
    return results


def _lora_file(root: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(root / "Lora" / f"{name}.safetensors")


def test_flux2_lora_layouts_equal_diffusers(orch, lora_dir):
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline

    results = _layouts(orch, FLUX2, "flux2", ("toolkit", "kohya", "peft"), layers=6)
    pipe = Flux2Pipeline.from_pretrained(lora_dir / "flux2-dev-demo", local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                     base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                     max_image_seq_len=4096)
    pipe.set_progress_bar_config(disable=True)
    for layout in ("toolkit", "kohya"):  # Diffusers' ai-toolkit and kohya converters for FLUX.2
        pipe.load_lora_weights(_lora_file(lora_dir, f"flux2-{layout}"), adapter_name=layout)
        pipe.set_adapters([layout], [0.8])
        ref = pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=2, guidance_scale=4.0,
                   generator=torch.Generator("cpu").manual_seed(3)).images[0]
        assert_close(pixels(results[layout]), np.asarray(ref, dtype=np.int16)[None])
        pipe.delete_adapters(layout)


def qwen_pipeline(folder: Path, scheduler):
    """Diffusers' QwenImagePipeline on the folder's modules, each loaded by its own class."""
    import diffusers

    from tests.engines.test_qwen_image import folder_modules

    comps = folder_modules(folder)
    pipe = diffusers.QwenImagePipeline(scheduler=scheduler, **comps)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_qwen_image_lora_layouts_equal_diffusers(orch, lora_dir):
    from diffusers import FlowMatchEulerDiscreteScheduler

    results = _layouts(orch, QWEN, "qwen", ("comfy", "kohya", "lightning", "peft"), layers=8)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                                                max_image_seq_len=8192, shift_terminal=0.02)
    pipe = qwen_pipeline(lora_dir / "qwen-image-demo", scheduler)
    pipe.load_lora_weights(_lora_file(lora_dir, "qwen-lightning"), adapter_name="q")
    pipe.set_adapters(["q"], [0.8])
    ref = pipe(prompt="a lighthouse", true_cfg_scale=1.0, num_inference_steps=2, width=64, height=64,
               generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert_close(pixels(results["lightning"]), np.asarray(ref, dtype=np.int16)[None])


def test_ltx2_lora_layouts_equal_diffusers(orch, lora_dir):
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2Pipeline

    results = _layouts(orch, LTX2, "ltx2", ("lightricks", "peft"), layers=6)
    pipe = LTX2Pipeline.from_pretrained(lora_dir / "ltx2-demo", local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
        base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, time_shift_type="exponential")
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(_lora_file(lora_dir, "ltx2-lightricks"), adapter_name="l")
    pipe.set_adapters(["l"], [0.8])
    ref = pipe(prompt=LTX2["prompt"], width=64, height=32, num_frames=9, frame_rate=24.0, num_inference_steps=2,
               guidance_scale=1.0, output_type="pil", generator=torch.Generator("cpu").manual_seed(11))
    assert_close(pixels(results["lightricks"]), np.stack([np.asarray(f, dtype=np.int16) for f in ref.frames[0]]))


def test_detection_names_each_family():
    from sdcodex.core.enums import EngineKey as E

    def family(sd: dict) -> tuple:
        from sdcodex.models.detect_rules import Keys, rule_lora

        found = rule_lora(Keys({k: list(v.shape) for k, v in sd.items()}))[0]
        return found.family, found.compatible

    # real widths: FLUX.2 dev 6144 (48 heads x 128), Klein 4B 3072; Qwen-Image 3072 with 60 blocks; LTX-2 4096
    def shapes_only(width: int, mlp: int) -> dict:
        return {"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": torch.empty(RANK, width, device="meta"),
                "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": torch.empty(3 * width, RANK, device="meta"),
                "diffusion_model.single_blocks.0.linear1.lora_A.weight": torch.empty(RANK, width, device="meta"),
                "diffusion_model.single_blocks.0.linear1.lora_B.weight": torch.empty(3 * width + mlp, RANK,
                                                                                     device="meta")}

    assert family(shapes_only(6144, 6 * 6144)) == (E.FLUX2, ())
    assert family(shapes_only(3072, 6 * 3072)) == (E.FLUX2_KLEIN, ())
    assert family(shapes_only(3072, 4 * 3072))[0] is E.FLUX  # FLUX.1: a 4x GELU MLP
    qwen = {f"transformer_blocks.{b}.attn.to_q.lora_down.weight": torch.empty(RANK, 3072, device="meta")
            for b in range(60)}
    qwen.update({k.replace("lora_down", "lora_up"): torch.empty(3072, RANK, device="meta") for k in list(qwen)})
    assert family(qwen) == (E.QWEN_IMAGE, (E.QWEN_IMAGE_EDIT,))
    ltx = {"diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.empty(RANK, 4096, device="meta"),
           "diffusion_model.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.empty(4096, RANK, device="meta")}
    assert family(ltx) == (E.LTX2, ())


def test_detected_families_of_the_test_files(lora_dir):
    from sdcodex.core.enums import EngineKey as E
    from sdcodex.models.detect import detect_path

    for name, fits in (("flux2-toolkit", E.FLUX2), ("flux2-kohya", E.FLUX2), ("flux2-peft", E.FLUX2),
                       ("qwen-comfy", E.QWEN_IMAGE_EDIT), ("qwen-lightning", E.QWEN_IMAGE),
                       ("ltx2-lightricks", E.LTX2), ("ltx2-peft", E.LTX2)):
        found = detect_path(lora_dir / "Lora" / f"{name}.safetensors")
        assert found.kind == "lora" and (found.family is fits or fits in found.compatible), (name, found)


#: lightx2v's scheduler for Qwen-Image-Lightning (ModelTC/Qwen-Image-Lightning generate_with_diffusers.py)
LIGHTNING_SCHEDULER = {"base_image_seq_len": 256, "base_shift": math.log(3), "invert_sigmas": False,
                       "max_image_seq_len": 8192, "max_shift": math.log(3), "num_train_timesteps": 1000, "shift": 1.0,
                       "shift_terminal": None, "stochastic_sampling": False, "time_shift_type": "exponential",
                       "use_beta_sigmas": False, "use_dynamic_shifting": True, "use_exponential_sigmas": False,
                       "use_karras_sigmas": False}


def test_qwen_lightning_mode_equals_the_published_settings(orch, lora_dir):
    """The `lightning` mode with a Lightning LoRA: the preset's 8 steps, cfg 1 and shift 3 give Diffusers' pixels with
    lightx2v's published scheduler config and the LoRA loaded by load_lora_weights."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    raw = {k: v for k, v in QWEN.items() if k not in ("steps", "cfg_scale")}
    result = orch.run({**raw, "mode": "lightning", "loras": [{"name": "qwen-lightning", "weight": 1.0}]})
    info = result.info
    assert info["preset"] == "qwen_image/lightning/txt2img" and not info.get("mode_ignored_reason")
    assert info["request"]["steps"] == 8 and info["request"]["cfg_scale"] == 1.0
    assert not any("flow_shift" in w for w in info["warnings"])
    pipe = qwen_pipeline(lora_dir / "qwen-image-demo", FlowMatchEulerDiscreteScheduler.from_config(LIGHTNING_SCHEDULER))
    pipe.load_lora_weights(_lora_file(lora_dir, "qwen-lightning"), adapter_name="q")
    pipe.set_adapters(["q"], [1.0])
    ref = pipe(prompt="a lighthouse", true_cfg_scale=1.0, num_inference_steps=8, width=64, height=64,
               generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert_close(pixels(result), np.asarray(ref, dtype=np.int16)[None])
    plain = orch.run({**QWEN, "mode": "lightning"})  # no Lightning LoRA, no Lightning model: the normal settings
    assert "not lightning-distilled" in plain.info["mode_ignored_reason"]
