"""Extra-network cards from files: the preview beside a model (A1111/Civitai names, in order), header metadata with
JSON values decoded, A1111's NAME.json and Civitai's NAME.civitai.info sidecars, what a click inserts; previews
found only for entries the inventory lists."""
from __future__ import annotations

import json

import torch
from PIL import Image
from safetensors.torch import save_file

from sdcodex.models.networks import a1111_loras, card, describe, find_preview, insert_text, preview_path, top_tags


def test_preview_order_sidecars_and_insert_text(tmp_path):
    model = tmp_path / "Lora" / "style.safetensors"
    model.parent.mkdir()
    tags = {"a": {"fox": 2, " snow": 1}, "b": {"fox": 4, "tree": 9}}
    save_file({"x": torch.zeros(1)}, model, metadata={"ss_tag_frequency": json.dumps(tags), "ss_base_model_version":
                                                      "sdxl_base_v1-0", "ss_output_name": "style", "other": "{bad"})
    assert preview_path(model) is None
    Image.new("RGB", (2, 2)).save(model.with_name("style.png"))
    assert preview_path(model) == model.with_name("style.png")
    Image.new("RGB", (2, 2)).save(model.with_name("style.preview.webp"))
    assert preview_path(model) == model.with_name("style.preview.webp")  # NAME.preview.* first

    model.with_name("style.json").write_text(json.dumps({"activation text": "oil style", "preferred weight": 0.7,
                                                         "description": "test"}))
    model.with_name("style.civitai.info").write_text(json.dumps({"trainedWords": ["oilpaint", "brush"]}))

    class Entry:
        name, path, kind, family, filename, size = "style", model, "lora", None, model.name, 1

    c = card(Entry, "lora")
    assert c["metadata"]["ss_tag_frequency"] == tags and c["metadata"]["other"] == "{bad"  # JSON decoded when valid
    assert c["base_model"] == "sdxl_base_v1-0" and c["trigger_words"] == ["oilpaint", "brush"]
    assert c["tags"][:2] == [{"tag": "tree", "count": 9}, {"tag": "fox", "count": 6}]
    assert c["insert"] == "<lora:style:0.7> oil style" and c["description"] == "test" and c["preview"]
    assert insert_text("embedding", "emb", {}) == "emb" and insert_text("checkpoint", "m", {}) == ""
    assert insert_text("lora", "x", describe({})) == "<lora:x:1>"
    assert describe({"modelspec.trigger_phrase": "a, b", "modelspec.architecture": "stable-diffusion-v1"}) \
        ["trigger_words"] == ["a", "b"]
    assert top_tags({"ss_tag_frequency": "not a dict"}) == []

    class Inventory:
        def entries(self, kind=None, family=None):
            return [Entry] if kind in (None, "lora") else []

    assert find_preview(Inventory(), "lora", "style") == model.with_name("style.preview.webp")
    for name in ("../style", "style.preview", str(model), "missing"):
        assert find_preview(Inventory(), "lora", name) is None
    assert find_preview(Inventory(), "checkpoint", "style") is None and find_preview(Inventory(), "x", "style") is None
    row = a1111_loras(Inventory())[0]
    assert row["alias"] == "style" and row["metadata"]["ss_tag_frequency"] == tags and row["trigger_words"]
