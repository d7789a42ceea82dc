"""Infotext: build -> parse -> request round trips, and parsing real AUTOMATIC1111 output."""
from __future__ import annotations

from sdcodex.media.infotext import build_infotext, infotext_to_request, parse_infotext, quote

A1111_HIRES_LORA_TI = (
    "masterpiece, best quality, 1girl, solo, looking at viewer, <lora:add_detail:0.8>\n"
    "Negative prompt: easynegative, (worst quality, low quality:1.4)\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3866384587, Size: 512x768, "
    "Model hash: 7f96a1a9ca, Model: anythingV5_PrtRE, Denoising strength: 0.45, Clip skip: 2, "
    "Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef", '
    'TI hashes: "easynegative: c74b4e810b03", Version: v1.10.1'
)
A1111_OLD_SAMPLER = (
    "a photo of an astronaut riding a horse on mars\n"
    "Negative prompt: blurry\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234, Size: 768x512, Model hash: e6bb9ea85b, "
    "Model: sd_xl_base_1.0, VAE hash: 235745af8d, VAE: sdxl_vae.safetensors, Version: v1.6.0"
)
A1111_INPAINT_MULTILINE = (
    "a red car,\nparked on a street\n\nat night\n"
    "Negative prompt: lowres,\nbad anatomy\n"
    "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 42, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, "
    'ADetailer model: face_yolov8n.pt, ADetailer prompt: "detailed face, smile", ADetailer confidence: 0.3, '
    'Wildcard prompt: "a \\"quoted\\" word, x: y", Seed resize from: 640x480, Version: v1.10.1'
)


def test_parse_hires_lora_ti_sample():
    r = parse_infotext(A1111_HIRES_LORA_TI)
    assert r["Prompt"].endswith("<lora:add_detail:0.8>")
    assert r["Negative prompt"] == "easynegative, (worst quality, low quality:1.4)"
    assert (r["Steps"], r["Sampler"], r["Schedule type"], r["CFG scale"]) == ("25", "DPM++ 2M", "Karras", "7")
    assert (r["Size-1"], r["Size-2"], r["width"], r["height"]) == ("512", "768", 512, 768)
    assert r["Lora hashes"] == "add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef"
    assert r["TI hashes"] == "easynegative: c74b4e810b03"
    assert r["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"
    req = infotext_to_request(r)
    assert req["seed"] == 3866384587 and req["steps"] == 25 and req["cfg_scale"] == 7.0
    assert req["clip_skip"] == 2 and req["denoising_strength"] == 0.45
    assert req["hires_scale"] == 2.0 and req["hires_steps"] == 15
    assert req["lora_hashes"] == {"add_detail": "7c6bad76eb54", "more_details": "3b8aa1d351ef"}
    assert req["ti_hashes"] == {"easynegative": "c74b4e810b03"}
    assert req["version"] == "v1.10.1" and "extra" not in req


def test_parse_old_combined_sampler_keeps_raw_name():
    r = parse_infotext(A1111_OLD_SAMPLER)
    assert r["Sampler"] == "DPM++ 2M Karras" and "Schedule type" not in r
    req = infotext_to_request(r)
    assert req["sampler"] == "DPM++ 2M Karras" and "scheduler" not in req
    assert req["vae"] == "sdxl_vae.safetensors" and req["vae_hash"] == "235745af8d"
    assert (req["width"], req["height"], req["cfg_scale"]) == (768, 512, 7.5)


def test_parse_multiline_prompts_and_quoted_values():
    r = parse_infotext(A1111_INPAINT_MULTILINE)
    assert r["Prompt"] == "a red car,\nparked on a street\n\nat night"
    assert r["Negative prompt"] == "lowres,\nbad anatomy"
    assert r["ADetailer prompt"] == "detailed face, smile"
    assert r["Wildcard prompt"] == 'a "quoted" word, x: y'
    assert (r["Seed resize from-1"], r["Seed resize from-2"]) == ("640", "480")
    req = infotext_to_request(r)
    assert req["mask_blur"] == 4 and req["denoising_strength"] == 0.75
    assert req["extra"]["ADetailer model"] == "face_yolov8n.pt"
    assert req["extra"]["Seed resize from"] == "640x480"


def test_build_matches_a1111_format_exactly():
    p = {
        "prompt": "masterpiece, best quality, 1girl, solo, looking at viewer, <lora:add_detail:0.8>",
        "negative_prompt": "easynegative, (worst quality, low quality:1.4)",
        "steps": 25, "sampler": "DPM++ 2M", "scheduler": "Karras", "cfg_scale": 7.0, "seed": 3866384587,
        "width": 512, "height": 768, "model_hash": "7f96a1a9ca", "model": "anythingV5_PrtRE",
        "denoising_strength": 0.45, "clip_skip": 2, "hires_scale": 2, "hires_steps": 15,
        "hires_upscaler": "R-ESRGAN 4x+ Anime6B",
        "lora_hashes": {"add_detail": "7c6bad76eb54", "more_details": "3b8aa1d351ef"},
        "ti_hashes": {"easynegative": "c74b4e810b03"}, "version": "v1.10.1", "task": "txt2img",
    }
    assert build_infotext(p) == A1111_HIRES_LORA_TI


def test_round_trip_build_parse_request():
    p = {
        "prompt": 'line one, "quoted"\nline two: colon', "negative_prompt": "ugly,\nblurry",
        "steps": 30, "sampler": "Euler a", "scheduler": "Automatic", "cfg_scale": 6.5, "seed": 0,
        "width": 832, "height": 1216, "model_hash": "31e35c80fc", "model": "sd_xl_base_1.0",
        "vae_hash": "235745af8d", "vae": "sdxl_vae.safetensors", "denoising_strength": 0.6,
        "clip_skip": 2, "mask_blur": 4, "lora_hashes": {"a b": "0123456789ab"}, "version": "v9",
        "extra": {"ENSD": "31337", "Note": "x, y: z", "Quote": '"q"'},
    }
    req = infotext_to_request(parse_infotext(build_infotext(p)))
    assert req == p


def test_task_rules_for_denoise_mask_blur_clip_skip():
    base = {"prompt": "p", "steps": 20, "sampler": "Euler", "cfg_scale": 7, "seed": 1, "width": 512,
            "height": 512, "denoising_strength": 0.5, "mask_blur": 4, "clip_skip": 1}
    t2i = build_infotext({**base, "task": "txt2img"})
    assert "Denoising strength" not in t2i and "Mask blur" not in t2i and "Clip skip" not in t2i
    i2i = build_infotext({**base, "task": "img2img"})
    assert "Denoising strength: 0.5" in i2i and "Mask blur" not in i2i
    inpaint = build_infotext({**base, "task": "inpaint"})
    assert "Denoising strength: 0.5, Mask blur: 4" in inpaint
    hires = build_infotext({**base, "task": "txt2img", "hires_scale": 1.5})
    assert "Denoising strength: 0.5, Hires upscale: 1.5" in hires


def test_empty_negative_prompt_is_omitted_and_quote_rules():
    text = build_infotext({"prompt": "cat", "steps": 1, "sampler": "Euler", "cfg_scale": 1, "seed": 1,
                           "width": 8, "height": 8, "version": None})
    assert text == "cat\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 8x8"
    assert quote("a, b") == '"a, b"' and quote("a:b") == '"a:b"' and quote("plain") == "plain"
    assert quote(0.1) == "0.1" and quote(7.0) == "7"


SYNTAX_PROMPT = ('masterpiece, (red fox:1.3), ((nested)), [less], \\(escaped\\) \\\\ (unclosed\n'
                 'BREAK [fantasy:cyberpunk:0.5] [cow|horse] a AND b :0.5 — 狐 ü 🙂, "quoted": x')


def test_emphasis_written_only_when_not_original_and_read_back():
    base = {"prompt": SYNTAX_PROMPT, "negative_prompt": "(worst:1.4), [x:y:3]", "steps": 20, "seed": 1,
            "width": 512, "height": 512}
    assert "Emphasis" not in build_infotext({**base, "emphasis": "Original"})
    for mode in ("No norm", "None"):
        text = build_infotext({**base, "emphasis": mode})
        assert f"Emphasis: {mode}" in text.rsplit("\n", 1)[-1]
        req = infotext_to_request(parse_infotext(text))
        assert req["emphasis"] == mode
        assert req["prompt"] == SYNTAX_PROMPT and req["negative_prompt"] == "(worst:1.4), [x:y:3]"
        assert text.startswith(SYNTAX_PROMPT + "\nNegative prompt: (worst:1.4), [x:y:3]\n")


def test_unknown_emphasis_stays_extra():
    req = infotext_to_request(parse_infotext("x\nSteps: 2, Seed: 1, Size: 8x8, Emphasis: Loud"))
    assert "emphasis" not in req and req["extra"]["Emphasis"] == "Loud"
