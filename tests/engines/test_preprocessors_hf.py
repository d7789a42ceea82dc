"""Depth / normal / segmentation preprocessors on transformers' models: tiny random-config DPT, Depth Anything,
ZoeDepth and UperNet models saved where `sdcodex cache-models annotator-…` puts them; our module output equals running the
transformers model directly plus the A1111 extension's post-processing, written out here step by step (normal
map gradients by OpenCV's Sobel). Missing folders name the module and the cache-models command."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from sdcodex.cli.catalogue import CATALOGUE  # noqa: E402
from sdcodex.core.errors import ValidationError  # noqa: E402
from sdcodex.engines import preprocessors as P  # noqa: E402
from sdcodex.engines import preprocessors_hf as H  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _tiny_models():
    from transformers import (BeitConfig, ConvNextConfig, DepthAnythingConfig, DepthAnythingForDepthEstimation,
                              Dinov2Config, DPTConfig, DPTForDepthEstimation, UperNetConfig,
                              UperNetForSemanticSegmentation, ZoeDepthConfig, ZoeDepthForDepthEstimation)
    torch.manual_seed(0)
    dpt = DPTForDepthEstimation(DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=64,
        patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
        head_in_index=-1, reassemble_factors=[4, 2, 1, 0.5]))
    anything = DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                                     image_size=518, patch_size=14, out_indices=[1, 2, 3, 4],
                                     reshape_hidden_states=False),
        reassemble_hidden_size=32, patch_size=14, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
        head_hidden_size=8))
    upernet = UperNetForSemanticSegmentation(UperNetConfig(
        backbone_config=ConvNextConfig(hidden_sizes=[8, 16, 32, 32], depths=[1, 1, 1, 1],
                                       out_features=["stage1", "stage2", "stage3", "stage4"]),
        hidden_size=16, num_labels=150, use_auxiliary_head=False))
    zoe = ZoeDepthForDepthEstimation(ZoeDepthConfig(
        backbone_config=BeitConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                                   image_size=384, patch_size=16, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                                   use_relative_position_bias=True,
                                   out_features=["stage1", "stage2", "stage3", "stage4"]),
        neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5],
        bottleneck_features=16, num_relative_features=8, bin_embedding_dim=16, num_attractors=[8, 4, 2, 1]))
    # random heads give a flat (or all-zero, after ReLU) depth: larger, seeded weights outside the backbone vary it
    for seed, model in enumerate((dpt, anything, zoe)):
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if not name.startswith(("backbone", "dpt.")):
                    param.copy_(torch.randn(param.shape, generator=gen) * (0.3 if param.ndim > 1 else 0.1) +
                                (0.0 if param.ndim > 1 else 0.05))
    return {"annotator-depth-midas": dpt, "annotator-depth-anything": anything, "annotator-seg-ade20k": upernet,
            "annotator-depth-zoe": zoe}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    models = _tiny_models()
    for name, model in models.items():
        model.eval().save_pretrained(str(CATALOGUE[name].dest(root)))
    yield root, models
    H.unload()


def _padded(image: Image.Image) -> np.ndarray:
    arr = np.asarray(image.convert("RGB"))
    h, w = arr.shape[:2]
    return np.pad(arr, [(0, (-h) % 64), (0, (-w) % 64), (0, 0)], mode="edge")


def test_depth_normal_and_segmentation_equal_the_transformers_models(models_dir):
    root, models = models_dir
    image = Image.fromarray(skdata.astronaut()).resize((80, 64), Image.BOX)  # resolution 64: the input size
    work = _padded(image)                                                    # 128 x 64: the extension's pad to 64
    with torch.inference_mode():
        # depth_midas: DPT on [-1, 1] pixels of a 64 x 64 square (bicubic), the depth bilinear back to 128 x 64;
        # min-max to 0..255 over the padded map
        square = np.asarray(Image.fromarray(work).resize((64, 64), Image.BICUBIC))
        x = torch.from_numpy(square.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
        raw = models["annotator-depth-midas"](pixel_values=x).predicted_depth[:, None]
        raw = torch.nn.functional.interpolate(raw, size=(64, 128), mode="bilinear", align_corners=False)[0, 0].numpy()
        rel = (raw - raw.min()) / (raw - raw.min()).max()
        ref_depth = (rel * 255.0).clip(0, 255).astype(np.uint8)[:64, :80]
        # normal_midas: OpenCV Sobel gradients of the raw depth, background (rel < 0.4) flat, z = 2 pi, BGR order
        gx, gy = cv2.Sobel(raw, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(raw, cv2.CV_32F, 0, 1, ksize=3)
        gx[rel < 0.4], gy[rel < 0.4] = 0, 0
        normal = np.stack([gx, gy, np.full_like(gx, 2 * np.pi)], axis=2)
        normal /= np.sqrt((normal ** 2).sum(axis=2, keepdims=True))
        ref_normal = (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1][:64, :80]
        # depth_anything: 128 x 64 -> short side >= 518, multiples of 14: 1036 x 518 (bicubic), ImageNet norm,
        # depth bilinear back to 128 x 64, min-max
        big = np.asarray(Image.fromarray(work).resize((1036, 518), Image.BICUBIC)).astype(np.float32) / 255.0
        xa = (torch.from_numpy(big).permute(2, 0, 1)[None] - MEAN) / STD
        da = models["annotator-depth-anything"](pixel_values=xa).predicted_depth[:, None]
        da = torch.nn.functional.interpolate(da, size=(64, 128), mode="bilinear", align_corners=False)[0, 0].numpy()
        ref_anything = ((da - da.min()) / (da - da.min()).max() * 255.0).clip(0, 255).astype(np.uint8)[:64, :80]
        # depth_zoe: ZoeDepth's infer on [0, 1] pixels: reflect pad int(sqrt(64 / 2) * 3) = 16 rows and
        # int(sqrt(128 / 2) * 3) = 24 columns -> 176 x 96; the scale nearest 1 toward 512 x 384 is 512 / 176 on both
        # axes: 512 x 288 (bilinear, corners aligned), [-1, 1]; depth bicubic back, unpadded, mirrored run averaged;
        # then the 2nd..85th percentile stretched with near = white
        F = torch.nn.functional
        xz = torch.from_numpy(work.astype(np.float32) / 255.0).permute(2, 0, 1)[None]

        def zoe_once(t):
            t = F.pad(t, [24, 24, 16, 16], mode="reflect")
            net = F.interpolate(t, (288, 512), mode="bilinear", align_corners=True) * 2 - 1
            d = models["annotator-depth-zoe"](pixel_values=net).predicted_depth[:, None]
            return F.interpolate(d, size=(96, 176), mode="bicubic", align_corners=False)[:, :, 16:80, 24:152]

        dz = ((zoe_once(xz) + torch.flip(zoe_once(torch.flip(xz, dims=[3])), dims=[3])) / 2)[0, 0].numpy()
        lo, hi = np.percentile(dz, 2), np.percentile(dz, 85)
        ref_zoe = ((1.0 - (dz - lo) / (hi - lo)) * 255.0).clip(0, 255).astype(np.uint8)[:64, :80]
        # seg_ufade20k: ImageNet norm at the working size, arg-max class painted with the ADE20K palette
        xs = (torch.from_numpy(work.astype(np.float32) / 255.0).permute(2, 0, 1)[None] - MEAN) / STD
        classes = models["annotator-seg-ade20k"](pixel_values=xs).logits[0].argmax(0).numpy()[:64, :80]

    assert H.depth_anything_size(128, 64) == (1036, 518) and H.depth_anything_size(700, 600) == (602, 518)
    ours = {m: np.asarray(P.run_preprocessor(m, image, resolution=64, models_dir=root))
            for m in ("depth_midas", "normal_midas", "depth_anything", "depth_zoe", "seg_ufade20k")}
    for ref in (ref_depth, ref_normal, ref_anything, ref_zoe):
        assert ref.std() > 5  # the tiny models give a varied map (no flat or NaN output)
    assert len(np.unique(classes)) > 1
    assert np.array_equal(ours["depth_midas"], np.repeat(ref_depth[:, :, None], 3, axis=2))
    assert np.abs(ours["normal_midas"].astype(int) - ref_normal).max() <= 1   # float32 sums in another order
    assert np.array_equal(ours["depth_anything"], np.repeat(ref_anything[:, :, None], 3, axis=2))
    assert H.zoe_size(176, 96) == (512, 288)
    assert np.abs(ours["depth_zoe"].astype(int) - ref_zoe[:, :, None]).max() <= 1  # float32 percentile rounding
    palette = H.ade20k_palette()
    assert palette.shape == (150, 3) and palette[0].tolist() == [120, 120, 120] and palette[2].tolist() == [6, 230, 230]
    assert np.array_equal(ours["seg_ufade20k"], palette[classes])
    # a background threshold of 0 keeps every gradient; the slider is the extension's
    assert P.module_details()["normal_map"]["sliders"][1] == {"name": "Normal Background Threshold", "value": 0.4,
                                                               "min": 0.0, "max": 1.0, "step": 0.01}


def test_missing_model_folder_names_the_module_and_the_command(tmp_path):
    names = P.list_modules(alias_names=True)
    assert {"depth_midas", "normal_midas", "depth_anything", "depth_anything_v2", "depth_zoe", "seg_ufade20k"} <= set(names)
    with pytest.raises(ValidationError) as e:
        P.run_preprocessor("depth_anything_v2", Image.new("RGB", (64, 64)), resolution=64, models_dir=tmp_path,
                           field="controls[2].module")
    assert e.value.field == "controls[2].module"
    assert "depth_anything_v2" in str(e.value) and "sdcodex cache-models annotator-depth-anything-v2" in str(e.value)
    assert CATALOGUE["annotator-depth-anything-v2"].dest(tmp_path) == tmp_path / "annotators" / "depth_anything_v2"
