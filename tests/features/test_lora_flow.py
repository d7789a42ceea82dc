"""LoRA on the flow models (tiny demo FLUX dev and WAN 2.2 TI2V-5B) through the orchestrator: Diffusers/PEFT keys
(`transformer.<module>.lora_A/B`), FLUX kohya (`lora_unet_double_blocks_0_img_attn_qkv`) and ComfyUI/BFL
(`diffusion_model.double_blocks.0...`) names, WAN Wan-Video names (ComfyUI dotted and musubi flat); pixels change,
the same LoRA in every layout gives the same pixels, nothing leaks into the next request, `Lora hashes` in the
infotext, and a LoRA of another family is refused naming it. The LoRA files are made here from the models' shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sdcodex.core.errors import ValidationError
from sdcodex.media.infotext import build_infotext

RANK = 4
FLUX = {"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
        "seed": 3}
WAN = {"task": "txt2vid", "model": "wan22-ti2v-5b-demo", "prompt": "a red fox", "steps": 2, "seed": 7,
       "num_frames": 5, "fps": 8.0, "width": 32, "height": 32}


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * 0.3


def flux_loras(transformer: torch.nn.Module, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """One LoRA in three layouts: kohya (BFL names, fused qkv / linear1, alpha), ComfyUI (BFL dotted names,
    lora_A/B) and its PEFT equivalent written out by hand (fused up matrices split, down shared, adaLN halves
    swapped). Targets: img_in, double block 0 image qkv + proj, single block 0 linear1, final adaLN."""
    gen = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    hidden = cfg.num_attention_heads * cfg.attention_head_dim
    mlp = transformer.single_transformer_blocks[0].proj_mlp.out_features
    mods = {  # BFL name: (down (r, in), up (out, r))
        "img_in": (_randn(gen, RANK, cfg.in_channels), _randn(gen, hidden, RANK)),
        "double_blocks.0.img_attn.qkv": (_randn(gen, RANK, hidden), _randn(gen, 3 * hidden, RANK)),
        "double_blocks.0.img_attn.proj": (_randn(gen, RANK, hidden), _randn(gen, hidden, RANK)),
        "single_blocks.0.linear1": (_randn(gen, RANK, hidden), _randn(gen, 3 * hidden + mlp, RANK)),
        "final_layer.adaLN_modulation.1": (_randn(gen, RANK, hidden), _randn(gen, 2 * hidden, RANK)),
    }
    alpha = torch.tensor(RANK / 2)
    kohya, comfy, peft = {}, {}, {}
    for name, (down, up) in mods.items():
        flat = "lora_unet_" + name.replace(".", "_")
        kohya.update({f"{flat}.lora_down.weight": down, f"{flat}.lora_up.weight": up, f"{flat}.alpha": alpha})
        comfy.update({f"diffusion_model.{name}.lora_A.weight": down, f"diffusion_model.{name}.lora_B.weight": up,
                      f"diffusion_model.{name}.alpha": alpha})

    def put(target: str, down: torch.Tensor, up: torch.Tensor) -> None:
        peft.update({f"transformer.{target}.lora_A.weight": down, f"transformer.{target}.lora_B.weight": up,
                     f"transformer.{target}.alpha": alpha})

    put("x_embedder", *mods["img_in"])
    down, up = mods["double_blocks.0.img_attn.qkv"]
    for i, x in enumerate("qkv"):
        put(f"transformer_blocks.0.attn.to_{x}", down, up[i * hidden:(i + 1) * hidden])
    put("transformer_blocks.0.attn.to_out.0", *mods["double_blocks.0.img_attn.proj"])
    down, up = mods["single_blocks.0.linear1"]
    for i, target in enumerate(("attn.to_q", "attn.to_k", "attn.to_v")):
        put(f"single_transformer_blocks.0.{target}", down, up[i * hidden:(i + 1) * hidden])
    put("single_transformer_blocks.0.proj_mlp", down, up[3 * hidden:])
    down, up = mods["final_layer.adaLN_modulation.1"]
    put("norm_out.linear", down, torch.cat([up[hidden:], up[:hidden]]))  # BFL (shift, scale) -> (scale, shift)
    return {"kohya": kohya, "comfy": comfy, "peft": peft}


_WAN_NAMES = {"self_attn.q": "attn1.to_q", "self_attn.v": "attn1.to_v", "cross_attn.k": "attn2.to_k",
              "ffn.0": "ffn.net.0.proj"}


def wan_loras(transformer: torch.nn.Module, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """One WAN LoRA as PEFT (Diffusers names), ComfyUI (`diffusion_model.blocks.N.self_attn.q`) and musubi/kohya
    (`lora_unet_blocks_N_self_attn_q`) files; the name mapping is written out here."""
    gen = torch.Generator().manual_seed(seed)
    peft, comfy, kohya = {}, {}, {}
    for i in range(len(transformer.blocks)):
        for theirs, ours in _WAN_NAMES.items():
            mod = transformer.get_submodule(f"blocks.{i}.{ours}")
            down, up = _randn(gen, RANK, mod.in_features), _randn(gen, mod.out_features, RANK)
            peft.update({f"transformer.blocks.{i}.{ours}.lora_A.weight": down,
                         f"transformer.blocks.{i}.{ours}.lora_B.weight": up})
            comfy.update({f"diffusion_model.blocks.{i}.{theirs}.lora_A.weight": down,
                          f"diffusion_model.blocks.{i}.{theirs}.lora_B.weight": up})
            flat = f"lora_unet_blocks_{i}_{theirs.replace('.', '_')}"
            kohya.update({f"{flat}.lora_down.weight": down, f"{flat}.lora_up.weight": up,
                          f"{flat}.alpha": torch.tensor(float(RANK))})
    return {"peft": peft, "comfy": comfy, "kohya": kohya}


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory) -> Path:
    from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
    from sdcodex.models.demo import build_demo_model
    from sdcodex.runtime import LocalModels

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("flow-lora-models")
    for family in ("flux", "wan22_ti2v_5b"):
        build_demo_model(family, root)
    plain = LocalModels(root)
    flux = plain.load(plain.resolve("flux-dev-demo")).components["transformer"]
    wan = plain.load(plain.resolve("wan22-ti2v-5b-demo")).components["transformer"]
    (root / "Lora").mkdir()
    for layout, sd in flux_loras(flux, 1).items():
        save_file({k: v.clone().contiguous() for k, v in sd.items()}, root / "Lora" / f"flux-{layout}.safetensors")
    for layout, sd in wan_loras(wan, 2).items():
        save_file({k: v.clone().contiguous() for k, v in sd.items()}, root / "Lora" / f"wan-{layout}.safetensors")
    # an SD1.5 LoRA (kohya UNet names; the family comes from its metadata)
    gen = torch.Generator().manual_seed(3)
    sd15 = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{sd15}.lora_down.weight": _randn(gen, RANK, 32), f"{sd15}.lora_up.weight": _randn(gen, 32, RANK)},
              root / "Lora" / "sd15-style.safetensors", metadata={"ss_base_model_version": "sd_v1"})
    return root


@pytest.fixture(scope="module")
def orch(flow_dir, tmp_path_factory):
    from sdcodex.runtime import LocalModels, build_orchestrator

    return build_orchestrator(models=LocalModels(flow_dir), outdir=tmp_path_factory.mktemp("flow-lora-out"),
                              device="cpu")


def image(result) -> np.ndarray:
    return np.asarray(result.pil_images[0])


def video(result) -> np.ndarray:
    return np.stack([np.asarray(f) for f in result.frames[0]])


def test_flux_peft_lora_changes_pixels_nothing_leaks_and_hashes(orch):
    before = image(orch.run(FLUX))
    with_lora = orch.run({**FLUX, "loras": [{"name": "flux-peft", "weight": 1.0}]})
    after = image(orch.run(FLUX))
    assert not np.array_equal(before, image(with_lora))
    assert np.array_equal(before, after)
    fields = with_lora.info["infotext_fields"]
    assert set(fields["lora_hashes"]) == {"flux-peft"} and len(fields["lora_hashes"]["flux-peft"]) == 12
    assert 'Lora hashes: "flux-peft: ' in build_infotext(fields)
    assert with_lora.info["loras"][0]["layers"] == 10  # x_embedder, q/k/v/out, q/k/v/proj_mlp, norm_out


def test_flux_kohya_and_comfy_layouts_equal_the_peft_lora(orch):
    peft = image(orch.run({**FLUX, "prompt": "a lighthouse <lora:flux-peft:0.8>"}))
    for layout in ("kohya", "comfy"):
        result = orch.run({**FLUX, "prompt": f"a lighthouse <lora:flux-{layout}:0.8>"})
        assert np.array_equal(image(result), peft), layout  # fused qkv/linear1 split, adaLN halves swapped
        assert result.info["loras"][0]["layers"] == 10
    assert not np.array_equal(peft, image(orch.run(FLUX)))


def test_wan_lora_layouts_change_frames_equally_and_nothing_leaks(orch):
    before = video(orch.run(WAN))
    peft = orch.run({**WAN, "loras": [{"name": "wan-peft", "weight": 1.0}]})
    assert not np.array_equal(before, video(peft))
    for layout in ("comfy", "kohya"):  # kohya alpha = rank: scale 1, like the PEFT file
        assert np.array_equal(video(orch.run({**WAN, "prompt": f"a red fox <lora:wan-{layout}:1>"})), video(peft))
    assert np.array_equal(before, video(orch.run(WAN)))
    fields = peft.info["infotext_fields"]
    assert 'Lora hashes: "wan-peft: ' in build_infotext(fields)


def test_lora_of_another_family_is_refused_and_nothing_changes(orch):
    before = image(orch.run(FLUX))
    with pytest.raises(ValidationError) as err:  # a WAN LoRA (no family in its header): no layer exists in FLUX
        orch.run({**FLUX, "loras": [{"name": "flux-peft"}, {"name": "wan-peft"}]})
    assert err.value.field == "loras[1].name" and "does not fit this flux model" in str(err.value)
    with pytest.raises(ValidationError) as err:  # detected as SD1.5 from its metadata
        orch.run({**FLUX, "prompt": "a lighthouse <lora:sd15-style:1>"})
    assert err.value.field == "prompt" and "sd15" in str(err.value) and "flux" in str(err.value)
    with pytest.raises(ValidationError) as err:
        orch.run({**WAN, "loras": [{"name": "flux-kohya"}]})
    assert err.value.field == "loras[0].name" and "for FLUX models" in str(err.value)
    assert err.value.allowed == ["wan22_ti2v_5b"]
    with pytest.raises(ValidationError) as err:
        orch.run({**FLUX, "loras": [{"name": "wan-comfy"}]})
    assert "for WAN models" in str(err.value) and "flux" in str(err.value)
    assert np.array_equal(before, image(orch.run(FLUX)))
