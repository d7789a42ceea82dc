"""Extra networks and prompt styles in a real browser, over a models folder with the demo SD 1.5 model, a tiny
kohya LoRA made from it (training tags in its header, a preview image beside it) and an embedding: the cards with
preview, metadata and search; a LoRA card inserting its tag and the image changing; a style saved from the
prompt, applied by the picker (expanded prompt in the infotext) and by "Apply"; a checkpoint card selecting it.
The preview route serves only previews of listed entries. One page load (browser tests are slow here)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import UIServer
from .test_browser import set_value, tiny

TAGS = {"set1": {"red fox": 12, "snow": 5}, "set2": {"red fox": 3, "forest": 4}}


@pytest.fixture(scope="module")
def ui_server(chromium, ui_models_dir, tmp_path_factory):
    import torch
    from safetensors.torch import save_file

    from sdcodex.runtime import LocalModels
    from tests.features.conftest import kohya_lora

    root = tmp_path_factory.mktemp("networks-models")
    for name in ("sd15-demo", "sd15-inpaint-demo"):
        os.symlink(ui_models_dir / "demo" / name, root / name)
    plain = LocalModels(ui_models_dir)
    sd15 = plain.load(plain.resolve("sd15-demo"))
    (root / "Lora").mkdir()
    save_file(kohya_lora(sd15, 1), root / "Lora" / "tiny-style.safetensors",
              metadata={"ss_base_model_version": "sd_v1", "ss_tag_frequency": json.dumps(TAGS),
                        "ss_output_name": "tiny-style"})
    Image.new("RGB", (30, 40), (200, 30, 30)).save(root / "Lora" / "tiny-style.preview.png")
    Image.new("RGB", (8, 8), (0, 0, 0)).save(root / "secret.png")  # beside no model: never served
    (root / "embeddings").mkdir()
    save_file({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(5))},
              root / "embeddings" / "tinyemb.safetensors")
    with UIServer(root, tmp_path_factory.mktemp("networks-server")) as server:
        yield server


def output_pixels(server, job) -> np.ndarray:
    return np.asarray(Image.open(server.service.outdir / job.result["images"][0]))


def generate(page, server) -> tuple[str, object]:
    """Press Generate; wait for the new job to finish and its infotext to show; (infotext, job)."""
    before = {j.id for j in server.service.store.list(kind="ui", limit=50)}
    shown = page.input_value("#codex-txt2img-infotext textarea")
    page.click("#codex-txt2img-generate")
    deadline = time.time() + 120
    job = None
    while time.time() < deadline:
        job = next((j for j in server.service.store.list(kind="ui", limit=50) if j.id not in before), None)
        if job is not None and job.state in ("done", "failed", "interrupted", "cancelled"):
            break
        time.sleep(0.3)
    assert job is not None and job.state == "done", (job and job.error, page.inner_text("#codex-txt2img-error"))
    page.wait_for_function(f"(() => {{ const v = document.querySelector('#codex-txt2img-infotext textarea').value; "
                           f"return v && v !== {json.dumps(shown)}; }})()", timeout=120_000)
    return page.input_value("#codex-txt2img-infotext textarea"), job


def test_cards_insert_lora_styles_and_checkpoint(page, ui_server):
    # -- API: metadata as A1111 gives it, previews only of listed entries -----------------------------------
    with httpx.Client(base_url=ui_server.url.rstrip("/"), timeout=30) as client:
        loras = client.get("/sdapi/v1/loras").json()
        row = next(r for r in loras if r["name"] == "tiny-style")
        assert row["metadata"]["ss_tag_frequency"] == TAGS and row["alias"] == "tiny-style"
        assert row["base_model"] == "sd_v1" and row["tags"][0] == {"tag": "red fox", "count": 15}
        cards = client.get("/api/v1/networks", params={"kind": "lora"}).json()["cards"]
        assert cards[0]["insert"] == "<lora:tiny-style:1>" and cards[0]["preview_url"]
        r = client.get(cards[0]["preview_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        for bad in ("..%2Fsecret", "..%2F..%2Fsecret", "secret", "sd15-demo", "%2Fetc%2Fpasswd"):
            assert client.get(f"/api/v1/networks/lora/{bad}/preview").status_code == 404, bad
        assert client.get("/api/v1/networks/other/tiny-style/preview").status_code == 422
        emb = client.get("/api/v1/networks", params={"kind": "embedding", "metadata": False}).json()["cards"]
        assert [c["insert"] for c in emb] == ["tinyemb"]

    # -- cards: preview image, metadata, search ------------------------------------------------------------
    page.locator("#codex-extra-networks").get_by_text("Extra networks").first.click()
    page.click("#codex-en-tabs button[role=tab]:text-is('LoRA')")
    card = page.locator("#codex-en-cards-lora .codex-card[data-name='tiny-style']")
    card.wait_for(timeout=30_000)
    assert "base: sd_v1" in card.inner_text() and "red fox" in card.inner_text()
    page.wait_for_function("(() => { const i = document.querySelector(\"#codex-en-cards-lora "
                           ".codex-card[data-name='tiny-style'] img\"); return i && i.complete && "
                           "i.naturalWidth === 30; })()", timeout=15_000)
    set_value(page, "codex-en-search", "zzqx")
    page.wait_for_selector("#codex-en-cards-lora .codex-cards-empty", timeout=15_000)
    set_value(page, "codex-en-search", "forest")  # a training tag finds it
    card.wait_for(timeout=15_000)

    # -- a LoRA card inserts its tag; the image changes ----------------------------------------------------
    page.fill("#codex-txt2img-prompt textarea", "a red fox")
    tiny(page, "txt2img")
    set_value(page, "codex-txt2img-seed", 7)
    plain_info, plain_job = generate(page, ui_server)
    page.click("#codex-txt2img-prompt textarea")
    card.click()
    assert page.input_value("#codex-txt2img-prompt textarea") == "a red fox <lora:tiny-style:1>"
    lora_info, lora_job = generate(page, ui_server)
    assert lora_info.startswith("a red fox <lora:tiny-style:1>") and 'Lora hashes: "tiny-style: ' in lora_info
    assert lora_job.result["info"]["loras"][0]["name"] == "tiny-style"
    assert not np.array_equal(output_pixels(ui_server, plain_job), output_pixels(ui_server, lora_job))
    card.click()  # a second click takes the tag out again (A1111's toggle)
    assert page.input_value("#codex-txt2img-prompt textarea") == "a red fox"

    # -- styles: save the prompt as a style, apply it by the picker and by "Apply" ---------------------------
    page.fill("#codex-txt2img-prompt textarea", "oil painting of {prompt}, warm light")
    page.fill("#codex-txt2img-negative-prompt textarea", "blurry")
    page.locator("#codex-styles-editor").get_by_text("Styles editor").first.click()
    page.click("#codex-style-copy")
    page.wait_for_function("document.querySelector('#codex-style-prompt textarea').value.includes('oil painting')")
    page.fill("#codex-style-name input", "oil")
    page.click("#codex-style-save")
    page.wait_for_function("document.querySelector('#codex-style-status').innerText.includes('Saved style oil')")
    assert [s.name for s in ui_server.service.styles.all().values()] == ["oil"]
    assert ui_server.service.styles.path.read_text(encoding="utf-8-sig").splitlines()[1] == \
        'oil,"oil painting of {prompt}, warm light",blurry'

    page.fill("#codex-txt2img-prompt textarea", "a red fox")
    page.fill("#codex-txt2img-negative-prompt textarea", "")
    page.click("#codex-txt2img-styles input")
    page.click("[role=option][aria-label='oil']")
    page.click("#codex-txt2img-rules")  # close the list
    styled_info, styled_job = generate(page, ui_server)
    assert styled_info.startswith("oil painting of a red fox, warm light\nNegative prompt: blurry\n")
    assert styled_job.request["styles"] == ["oil"] and styled_job.result["info"]["styles"] == ["oil"]
    page.click("#codex-txt2img-styles-apply")
    page.wait_for_function("document.querySelector('#codex-txt2img-prompt textarea').value === "
                           "'oil painting of a red fox, warm light'")
    assert page.input_value("#codex-txt2img-negative-prompt textarea") == "blurry"

    # -- a checkpoint card selects it ---------------------------------------------------------------------
    page.click("#codex-en-tabs button[role=tab]:text-is('Checkpoints')")
    set_value(page, "codex-en-search", "")
    page.click("#codex-en-cards-checkpoint .codex-card[data-name='sd15-inpaint-demo']")
    page.wait_for_function("document.querySelector('#codex-checkpoint input').value === 'sd15-inpaint-demo'",
                           timeout=15_000)
    assert not page.codex_errors
