"""LoRA on Z-Image and Chroma (tiny demo models) in the layouts they are published in, through the orchestrator.

Z-Image: PEFT (`transformer.<module>`), ai-toolkit (`diffusion_model.<module>` + alpha), kohya/musubi flat
(`lora_unet_layers_0_attention_to_q`) and Tongyi-MAI's original fused names (`diffusion_model.layers.0.attention.qkv`,
`attention.out`); every layout gives the same pixels, and those equal Diffusers' ZImagePipeline with the same file
loaded by its own `load_lora_weights`. Chroma: FLUX-style BFL names (kohya flat and ComfyUI dotted) and PEFT; the
same pixels in every layout, nothing leaks into the next run, and a Z-Image LoRA is refused on Chroma naming it.
The LoRA files are made here from the models' shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sdcodex.core.errors import ValidationError
from tests.engines.test_z_image import assert_same

RANK = 4
Z = {"task": "txt2img", "model": "z-image-demo", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
     "seed": 3, "cfg_scale": 1.0}
C = {"task": "txt2img", "model": "chroma-demo", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
     "seed": 3, "cfg_scale": 1.0, "negative_prompt": ""}


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * 0.3


def z_image_loras(transformer: torch.nn.Module, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """One LoRA on layer 0's q/k/v, out and w1 in four layouts; the fused original one shares the down matrix of
    q/k/v and stacks their up matrices (what a LoRA trained on the fused layer holds)."""
    gen = torch.Generator().manual_seed(seed)
    dim = transformer.config.dim
    ff = transformer.layers[0].feed_forward.w1.out_features
    down = {"to_q": _randn(gen, RANK, dim)}
    down["to_k"] = down["to_v"] = down["to_q"]
    down.update({"to_out.0": _randn(gen, RANK, dim), "w1": _randn(gen, RANK, dim)})
    up = {"to_q": _randn(gen, dim, RANK), "to_k": _randn(gen, dim, RANK), "to_v": _randn(gen, dim, RANK),
          "to_out.0": _randn(gen, dim, RANK), "w1": _randn(gen, ff, RANK)}
    module = {"to_q": "attention.to_q", "to_k": "attention.to_k", "to_v": "attention.to_v",
              "to_out.0": "attention.to_out.0", "w1": "feed_forward.w1"}
    alpha = torch.tensor(RANK / 2)
    peft, toolkit, kohya, original = {}, {}, {}, {}
    for part, name in module.items():
        full = f"layers.0.{name}"
        peft.update({f"transformer.{full}.lora_A.weight": down[part], f"transformer.{full}.lora_B.weight": up[part],
                     f"transformer.{full}.alpha": alpha})
        toolkit.update({f"diffusion_model.{full}.lora_A.weight": down[part],
                        f"diffusion_model.{full}.lora_B.weight": up[part], f"diffusion_model.{full}.alpha": alpha})
        flat = "lora_unet_" + full.replace(".", "_")
        kohya.update({f"{flat}.lora_down.weight": down[part], f"{flat}.lora_up.weight": up[part],
                      f"{flat}.alpha": alpha})
    o = "diffusion_model.layers.0."
    original.update({f"{o}attention.qkv.lora_A.weight": down["to_q"],
                     f"{o}attention.qkv.lora_B.weight": torch.cat([up["to_q"], up["to_k"], up["to_v"]]),
                     f"{o}attention.qkv.alpha": alpha,
                     f"{o}attention.out.lora_A.weight": down["to_out.0"],
                     f"{o}attention.out.lora_B.weight": up["to_out.0"], f"{o}attention.out.alpha": alpha,
                     f"{o}feed_forward.w1.lora_A.weight": down["w1"], f"{o}feed_forward.w1.lora_B.weight": up["w1"],
                     f"{o}feed_forward.w1.alpha": alpha})
    return {"peft": peft, "toolkit": toolkit, "kohya": kohya, "original": original}


def chroma_loras(transformer: torch.nn.Module, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """A Chroma LoRA on double block 0's image qkv + proj and single block 0's linear1, in kohya (BFL flat),
    ComfyUI (BFL dotted) and PEFT (split by hand) layouts."""
    gen = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    hidden = cfg.num_attention_heads * cfg.attention_head_dim
    mlp = transformer.single_transformer_blocks[0].proj_mlp.out_features
    mods = {"double_blocks.0.img_attn.qkv": (_randn(gen, RANK, hidden), _randn(gen, 3 * hidden, RANK)),
            "double_blocks.0.img_attn.proj": (_randn(gen, RANK, hidden), _randn(gen, hidden, RANK)),
            "single_blocks.0.linear1": (_randn(gen, RANK, hidden), _randn(gen, 3 * hidden + mlp, RANK))}
    alpha = torch.tensor(float(RANK))
    kohya, comfy, peft = {}, {}, {}
    for name, (down, up) in mods.items():
        flat = "lora_unet_" + name.replace(".", "_")
        kohya.update({f"{flat}.lora_down.weight": down, f"{flat}.lora_up.weight": up, f"{flat}.alpha": alpha})
        comfy.update({f"diffusion_model.{name}.lora_A.weight": down, f"diffusion_model.{name}.lora_B.weight": up,
                      f"diffusion_model.{name}.alpha": alpha})

    def put(target: str, down: torch.Tensor, up: torch.Tensor) -> None:
        peft.update({f"transformer.{target}.lora_A.weight": down, f"transformer.{target}.lora_B.weight": up})

    down, up = mods["double_blocks.0.img_attn.qkv"]
    for i, x in enumerate("qkv"):
        put(f"transformer_blocks.0.attn.to_{x}", down, up[i * hidden:(i + 1) * hidden])
    put("transformer_blocks.0.attn.to_out.0", *mods["double_blocks.0.img_attn.proj"])
    down, up = mods["single_blocks.0.linear1"]
    for i, target in enumerate(("attn.to_q", "attn.to_k", "attn.to_v")):
        put(f"single_transformer_blocks.0.{target}", down, up[i * hidden:(i + 1) * hidden])
    put("single_transformer_blocks.0.proj_mlp", down, up[3 * hidden:])
    return {"kohya": kohya, "comfy": comfy, "peft": peft}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    from sdcodex.models.demo import build_demo_model
    from sdcodex.runtime import LocalModels

    root = tmp_path_factory.mktemp("new-family-loras")
    for family in ("z_image", "chroma"):
        build_demo_model(family, root)
    plain = LocalModels(root)
    z = plain.load(plain.resolve("z-image-demo")).components["transformer"]
    c = plain.load(plain.resolve("chroma-demo")).components["transformer"]
    (root / "Lora").mkdir()
    for family, loras in (("z", z_image_loras(z, 1)), ("chroma", chroma_loras(c, 2))):
        for layout, sd in loras.items():
            save_file({k: v.clone().contiguous() for k, v in sd.items()}, root / "Lora" / f"{family}-{layout}.safetensors")
    return root


@pytest.fixture(scope="module")
def orch(lora_dir, tmp_path_factory):
    from sdcodex.runtime import LocalModels, build_orchestrator

    return build_orchestrator(models=LocalModels(lora_dir), outdir=tmp_path_factory.mktemp("new-lora-out"),
                              device="cpu")


def image(result) -> np.ndarray:
    return np.asarray(result.pil_images[0])


def test_z_image_lora_layouts_equal_diffusers_load_lora_weights(orch, lora_dir):
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline
    from safetensors.torch import load_file

    before = image(orch.run(Z))
    results = {layout: orch.run({**Z, "prompt": f"a lighthouse <lora:z-{layout}:0.8>"})
               for layout in ("peft", "toolkit", "kohya", "original")}
    for layout, result in results.items():
        assert result.info["loras"][0]["layers"] == 5, layout
        assert np.array_equal(image(result), image(results["toolkit"])), layout
    assert not np.array_equal(before, image(results["toolkit"]))
    assert np.array_equal(before, image(orch.run(Z)))  # nothing leaks into the next run
    pipe = ZImagePipeline.from_pretrained(lora_dir / "z-image-demo", local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(load_file(lora_dir / "Lora" / "z-toolkit.safetensors"), adapter_name="z")
    pipe.set_adapters(["z"], [0.8])
    ref = pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=2, guidance_scale=0.0,
               generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert_same(results["toolkit"].pil_images[0], ref)


def test_chroma_lora_layouts_give_the_same_pixels(orch):
    before = image(orch.run(C))
    peft = orch.run({**C, "loras": [{"name": "chroma-peft", "weight": 1.0}]})
    assert not np.array_equal(before, image(peft)) and peft.info["loras"][0]["layers"] == 8
    for layout in ("kohya", "comfy"):  # alpha = rank: scale 1, like the PEFT file
        result = orch.run({**C, "prompt": f"a lighthouse <lora:chroma-{layout}:1>"})
        assert np.array_equal(image(result), image(peft)), layout
    assert np.array_equal(before, image(orch.run(C)))
    from sdcodex.media.infotext import build_infotext

    assert 'Lora hashes: "chroma-peft: ' in build_infotext(peft.info["infotext_fields"])


def test_a_lora_of_another_family_is_refused_naming_it(orch):
    with pytest.raises(ValidationError) as err:
        orch.run({**C, "loras": [{"name": "z-original"}]})
    assert err.value.field == "loras[0].name" and "Z-Image" in str(err.value) and err.value.allowed == ["chroma"]
    with pytest.raises(ValidationError) as err:
        orch.run({**Z, "prompt": "a lighthouse <lora:chroma-kohya:1>"})
    assert err.value.field == "prompt" and "FLUX" in str(err.value) and "z_image" in str(err.value)
