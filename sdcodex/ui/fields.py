"""The components of one generation tab: a table of field specs (one per request key, A1111 labels),
and `build_gen_tab()` which lays out prompt, Generate/Interrupt/Skip, the task's fields, the progress
bar, the gallery or video player with infotext, send-to buttons and the strict JSON request view."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from sdcodex.core.enums import Task
from sdcodex.core.request import TASK_KEYS

from . import caps, controlnet_panel, ip_adapter_panel, styles_view, xyz_panel
from .tools import add_batch, add_buttons
from .uploads import free_slider, safe_image, safe_image_editor

RESIZE_MODES = [("Just resize", "just_resize"), ("Crop and resize", "crop_and_resize"),
                ("Resize and fill", "resize_and_fill")]
IMAGE_FORMATS = ["png", "webp", "jpeg"]
VIDEO_FORMATS = ["mp4", "webm", "gif", "webp"]
#: the output format choice that sends no `output_format`: the Settings tab's format applies (docs/settings.md)
FROM_SETTINGS = ("From Settings", "")

# key -> (kind, label, options). Kinds: text, number, slider, dropdown, checkbox, radio.
SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sampler": ("dropdown", "Sampling method", {}),
    "images": ("files", "Input images for editing (FLUX.2: up to 10 references; Qwen-Image-Edit: 1-3 to edit)", {}),
    "scheduler": ("dropdown", "Schedule type", {}),
    "steps": ("slider", "Sampling steps", {"minimum": 1, "maximum": 150, "step": 1, "value": 20}),
    "width": ("number", "Width", {"value": 512, "step": 8, "precision": 0}),
    "height": ("number", "Height", {"value": 512, "step": 8, "precision": 0}),
    "batch_count": ("slider", "Batch count", {"minimum": 1, "maximum": 100, "step": 1, "value": 1}),
    "batch_size": ("slider", "Batch size", {"minimum": 1, "maximum": 8, "step": 1, "value": 1}),
    "cfg_scale": ("slider", "CFG Scale", {"minimum": 0, "maximum": 30, "step": 0.5, "value": 7.0}),
    "distilled_cfg_scale": ("slider", "Distilled CFG Scale", {"minimum": 0, "maximum": 30, "step": 0.1,
                                                              "value": 3.5}),
    "guidance_scale_2": ("slider", "CFG Scale (low-noise expert)", {"minimum": 0, "maximum": 30, "step": 0.1,
                                                                   "value": 3.0}),
    "flow_shift": ("number", "Flow shift", {"value": None}),
    "seed": ("number", "Seed", {"value": -1, "precision": 0, "info": "-1 = random; 0 is a valid seed"}),
    "denoising_strength": ("slider", "Denoising strength", {"minimum": 0, "maximum": 1, "step": 0.01,
                                                            "value": 0.75}),
    "resize_mode": ("radio", "Resize mode", {"choices": RESIZE_MODES, "value": "just_resize"}),
    "mask_blur": ("slider", "Mask blur", {"minimum": 0, "maximum": 64, "step": 1, "value": 4}),
    "mask_invert": ("checkbox", "Inpaint not masked (invert the mask)", {"value": False}),
    "inpaint_full_res": ("checkbox", "Only masked (inpaint at full resolution)", {"value": False}),
    "inpaint_full_res_padding": ("slider", "Only masked padding, pixels", {"minimum": 0, "maximum": 256,
                                                                          "step": 4, "value": 32}),
    "upscaler": ("dropdown", "Upscaler", {}),
    "scale": ("slider", "Scale by", {"minimum": 1, "maximum": 8, "step": 0.05, "value": 2}),
    "tile_size": ("slider", "Tile size (0 = whole image)", {"minimum": 0, "maximum": 1024, "step": 16,
                                                           "value": 192}),
    "tile_overlap": ("slider", "Tile overlap", {"minimum": 0, "maximum": 256, "step": 4, "value": 16}),
    "num_frames": ("number", "Frames", {"value": 25, "precision": 0}),
    "fps": ("number", "FPS", {"value": 8}),
    "audio": ("checkbox", "Sound track (LTX-2: AAC in mp4, Opus in webm)", {"value": True}),
    "motion_bucket_id": ("slider", "Motion bucket id", {"minimum": 0, "maximum": 255, "step": 1, "value": 127}),
    "noise_aug_strength": ("number", "Noise augmentation", {"value": 0.02}),
    "decode_chunk_size": ("number", "Decode chunk size", {"value": None, "precision": 0}),
    "clip_skip": ("slider", "Clip skip", {"minimum": 1, "maximum": 12, "step": 1, "value": 1}),
    "output_format": ("dropdown", "Output format", {}),
    "hires.enabled": ("checkbox", "Hires. fix", {"value": False}),
    "hires.scale": ("slider", "Upscale by", {"minimum": 1.05, "maximum": 4, "step": 0.05, "value": 2}),
    "hires.steps": ("slider", "Hires steps (0 = same)", {"minimum": 0, "maximum": 150, "step": 1, "value": 0}),
    "hires.denoising_strength": ("slider", "Denoising strength", {"minimum": 0, "maximum": 1, "step": 0.01,
                                                                  "value": 0.7}),
    "hires.upscaler": ("dropdown", "Upscaler", {}),
}
#: layout groups, in order; a key shows in a tab when the task takes it
GROUPS: tuple[tuple[str, ...], ...] = (
    ("images",),
    ("sampler", "scheduler", "steps"),
    ("width", "height", "num_frames", "fps", "audio"),
    ("batch_count", "batch_size", "seed"),
    ("cfg_scale", "distilled_cfg_scale", "guidance_scale_2", "flow_shift"),
    ("denoising_strength", "resize_mode"),
    ("mask_blur", "mask_invert", "inpaint_full_res", "inpaint_full_res_padding"),
    ("upscaler", "scale", "tile_size", "tile_overlap"),
    ("motion_bucket_id", "noise_aug_strength", "decode_chunk_size"),
    ("clip_skip", "output_format"),
)
HIRES_KEYS = ("hires.scale", "hires.steps", "hires.denoising_strength", "hires.upscaler")
IMAGE_INPUT_TASKS = {Task.IMG2IMG, Task.UPSCALE, Task.IMG2VID}
#: where "send to" goes from each tab
SEND_TARGETS = {Task.TXT2IMG: ("img2img", "inpaint", "upscale"), Task.IMG2IMG: ("img2img", "inpaint", "upscale"),
                Task.INPAINT: ("img2img", "inpaint", "upscale"), Task.UPSCALE: ("img2img", "inpaint"),
                Task.TXT2VID: (), Task.IMG2VID: ()}


#: labels of the request keys that have no field of their own in SPECS (errors name a field by its label)
OTHER_LABELS = {"init_image": "Image", "mask": "Image (painted mask)", "model": "Checkpoint", "engine": "Engine",
                "mode": "Mode", "vae": "VAE", "prompt": "Prompt", "negative_prompt": "Negative prompt",
                "hires": "Hires. fix", "task": "Tab"}


def field_label(key: str) -> str:
    """The label a field shows for a request key or JSON path ("hires.steps", "images[1]"); the key itself when
    it has no field."""
    base = key.split("[")[0]
    if key in SPECS:
        return SPECS[key][1] if not key.startswith("hires.") else f"Hires. fix › {SPECS[key][1]}"
    if base in SPECS:
        return SPECS[base][1].split(" (")[0] + key[len(base):]
    return OTHER_LABELS.get(key, key)


@dataclass
class GenTab:
    """Handles to one generation tab's components."""

    task: Task
    tab: Any
    fields: dict[str, Any]
    image: Any
    prompt_keys: tuple[str, ...]
    generate: Any
    interrupt: Any
    skip: Any
    progress: Any
    error: Any
    gallery: Any
    video: Any
    infotext: Any
    json_view: Any
    edit_json: Any
    rules: Any
    result: Any
    last_request: Any
    reuse_seed: Any
    json_box: Any = None
    styles_apply: Any = None  # the Styles picker's "Apply to prompt" button (styles_view)
    token_counters: dict[str, Any] = field(default_factory=dict)  # prompt key -> counter
    send: dict[str, Any] = field(default_factory=dict)
    script: Any = None  # the Script dropdown with its X/Y/Z plot panel (xyz_panel.XyzPanel)
    controlnet: Any = None  # the ControlNet units panel (controlnet_panel.ControlPanel)
    ip_adapter: Any = None  # the IP-Adapter panel (ip_adapter_panel.IpAdapterPanel)
    tools: dict[str, Any] = field(default_factory=dict)  # tools.py: swap, aspect, random seed, ↙, img2img batch
    refresh_json: Any = None  # a hidden button: the page clicks the open tab's after a quicksettings change

    @property
    def field_keys(self) -> list[str]:
        return list(self.fields)

    @property
    def field_components(self) -> list[Any]:
        return list(self.fields.values())

    @property
    def prefix(self) -> str:
        return f"codex-{self.task.value}"


def tab_keys(task: Task) -> list[str]:
    """Field keys a tab has (before the engine hides some), in layout order."""
    keys = TASK_KEYS[task]
    out = [k for group in GROUPS for k in group if k in keys]
    if "hires" in keys:
        out += ["hires.enabled", *HIRES_KEYS]
    return out


def make_field(key: str, task: Task, props: dict[str, Any] | None = None) -> Any:
    """The field of `key` in a `task` tab; `props` (visible, choices, step, value: `field_props`) override the spec's
    so the page is built as the starting engine shows it."""
    kind, label, opts = SPECS[key]
    opts = dict(opts)
    props = dict(props or {})
    elem_id = f"codex-{task.value}-{key.replace('.', '-').replace('_', '-')}"
    if key == "output_format":
        choices = VIDEO_FORMATS if task.is_video else IMAGE_FORMATS
        return gr.Dropdown(label=label, elem_id=elem_id,
                           **{"choices": [FROM_SETTINGS, *choices], "value": FROM_SETTINGS[1], **props})
    if key in ("sampler", "scheduler", "upscaler", "hires.upscaler"):
        start = "Automatic" if key in ("sampler", "scheduler") else "None"
        return gr.Dropdown(label=label, elem_id=elem_id, allow_custom_value=True,
                           **{"choices": [start], "value": start, **props})
    opts.update(props)
    if kind == "number":
        return gr.Number(label=label, elem_id=elem_id, **opts)
    if kind == "slider":  # typed values go to the request as typed: out of range is the API's error, not a clamp
        return free_slider(label=label, elem_id=elem_id, elem_classes=["codex-slider"], **opts)
    if kind == "files":
        return gr.File(label=label, elem_id=elem_id, file_count="multiple", file_types=["image"], type="filepath",
                       **opts)
    if kind == "checkbox":
        return gr.Checkbox(label=label, elem_id=elem_id, **opts)
    if kind == "radio":
        return gr.Radio(label=label, elem_id=elem_id, **opts)
    raise ValueError(key)


def build_gen_tab(task: Task, label: str, *, visible: bool = True, rules_text: str = "",
                  props: dict[str, dict[str, Any]] | None = None) -> GenTab:
    """Lay out one generation tab (inside a gr.Blocks context); `props` (key -> `field_props`) builds the fields as
    the starting engine shows them, so the page's load has nothing to change."""
    props = props or {}
    p = f"codex-{task.value}"
    fields: dict[str, Any] = {}
    counters: dict[str, Any] = {}
    image = None
    styles_apply = None
    with gr.Tab(label, id=task.value, elem_id=f"{p}-tab", visible=visible) as tab:
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                prompt_keys: tuple[str, ...] = ()
                if "prompt" in TASK_KEYS[task]:
                    fields["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id=f"{p}-prompt",
                                                  placeholder="Prompt (Ctrl+Enter to generate, Esc to interrupt)")
                    counters["prompt"] = gr.HTML("", elem_id=f"{p}-prompt-tokens",
                                                 elem_classes=["codex-token-counter"])
                    fields["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2,
                                                           elem_id=f"{p}-negative-prompt")
                    counters["negative_prompt"] = gr.HTML("", elem_id=f"{p}-negative-prompt-tokens",
                                                          elem_classes=["codex-token-counter"])
                    prompt_keys = ("prompt", "negative_prompt")
                    if "styles" in TASK_KEYS[task]:
                        fields["styles"], styles_apply = styles_view.build_tab_row(p)
                elif task is Task.UPSCALE:
                    gr.Markdown("Upscale an image (as A1111's Extras tab): drop it below or use **Send to upscale** "
                                "on a result, pick an upscaler and a scale. No checkpoint is used.",
                                elem_id=f"{p}-intro")
            with gr.Column(scale=1, min_width=180):
                generate = gr.Button("Generate", variant="primary", elem_id=f"{p}-generate")
                with gr.Row():
                    interrupt = gr.Button("Interrupt", variant="stop", size="sm", elem_id=f"{p}-interrupt")
                    skip = gr.Button("Skip", size="sm", elem_id=f"{p}-skip",
                                     visible=task not in caps.MODEL_FREE)  # one image, nothing to skip to
                refresh_json = gr.Button("Refresh the request", elem_id=f"{p}-refresh-json",
                                         elem_classes=["codex-hidden"])
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                if task is Task.INPAINT:
                    image = safe_image_editor(label="Image — paint the area to change", type="pil",
                                           elem_id=f"{p}-image", image_mode="RGBA", layers=False,
                                           sources=("upload", "clipboard"), transforms=(), height=420,
                                           brush=gr.Brush(colors=["#ffffff"], color_mode="fixed",
                                                          default_size=24),
                                           eraser=gr.Eraser(default_size=24))
                elif task in IMAGE_INPUT_TASKS:
                    image = safe_image(label="Image", type="pil", elem_id=f"{p}-image", height=320,
                                     sources=["upload", "clipboard"])
                rules = gr.Markdown(rules_text, elem_id=f"{p}-rules", elem_classes=["codex-rules"])
                keys = tab_keys(task)
                tools: dict[str, Any] = {}
                for group in GROUPS:
                    present = [k for k in group if k in keys]
                    if not present:
                        continue
                    with gr.Row():
                        for key in present:
                            fields[key] = make_field(key, task, props.get(key))
                    if "width" in present or ("seed" in present and "width" not in keys):
                        tools = add_buttons(task, keys, p)
                if "hires.enabled" in keys:
                    with gr.Accordion("Hires. fix", open=False):
                        fields["hires.enabled"] = make_field("hires.enabled", task, props.get("hires.enabled"))
                        with gr.Row():
                            for key in HIRES_KEYS:
                                fields[key] = make_field(key, task, props.get(key))
                control = controlnet_panel.build(task) if task in controlnet_panel.TASKS else None
                ip_panel = ip_adapter_panel.build(task) if task in ip_adapter_panel.TASKS else None
                script = xyz_panel.build(task) if task in xyz_panel.TASKS else None
                tools.update(add_batch(task, p))
            with gr.Column(scale=1):
                progress = gr.HTML('<div class="codex-progress" data-state="idle"></div>', elem_id=f"{p}-progress")
                error = gr.HTML("", elem_id=f"{p}-error")
                video = None
                if task.is_video:
                    video = gr.Video(label="Video", elem_id=f"{p}-video", interactive=False, autoplay=True,
                                     loop=True, height=360)
                    gallery = None
                else:
                    gallery = gr.Gallery(label="Output", elem_id=f"{p}-gallery", columns=2, height=360,
                                         interactive=False, format="png", object_fit="contain",
                                         fit_columns=False)
                infotext = gr.Textbox(label="Generation info (infotext)", lines=4, interactive=False,
                                      elem_id=f"{p}-infotext", buttons=["copy"])
                with gr.Row():
                    reuse_seed = gr.Button("♻ Reuse seed", size="sm", elem_id=f"{p}-reuse-seed",
                                           visible=task not in caps.MODEL_FREE)
                    send = {target: gr.Button(f"Send to {target}", size="sm", elem_id=f"{p}-send-{target}")
                            for target in SEND_TARGETS[task]}
                with gr.Accordion("Request (strict JSON)", open=False, elem_id=f"{p}-json-box") as json_box:
                    edit_json = gr.Checkbox(label="Edit the request (advanced): Generate sends this JSON as it is",
                                            value=False, elem_id=f"{p}-edit-json")
                    json_view = gr.Code("{}", language="json", label="Request", interactive=False, lines=12,
                                        elem_id=f"{p}-json", buttons=["copy"])
        result = gr.State({})
        last_request = gr.State({})
    return GenTab(task=task, tab=tab, fields=fields, image=image, prompt_keys=prompt_keys, generate=generate,
                  interrupt=interrupt, skip=skip, progress=progress, error=error, gallery=gallery, video=video,
                  infotext=infotext, json_view=json_view, edit_json=edit_json, rules=rules, result=result,
                  last_request=last_request, reuse_seed=reuse_seed, json_box=json_box, send=send,
                  token_counters=counters, script=script, controlnet=control,
                  ip_adapter=ip_panel, styles_apply=styles_apply, tools=tools, refresh_json=refresh_json)


def field_props(task: Task, keys: list[str], engine: str | None, start: dict[str, Any],
                prompt_keys: tuple[str, ...] = ("prompt", "negative_prompt")) -> dict[str, dict[str, Any]]:
    """What each field of a `task` tab shows for the engine (key -> visible, sampler/scheduler choices, size step,
    and the value from `start`, ui/defaults.py): the page is built from it and an Engine/Mode switch sends only
    what differs from what the page shows (layout.py)."""
    visible = caps.visible_keys(engine, task)
    c = caps.caps(engine)
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        kw: dict[str, Any] = {}
        if key not in prompt_keys:
            kw["visible"] = key.split(".")[0] in visible
        if key == "sampler":
            kw["choices"] = caps.samplers_for(engine)
        elif key == "scheduler":
            kw["choices"] = caps.schedulers()
        elif key in ("width", "height"):
            kw["step"] = c["size_multiple"]
        if key in start:
            kw["value"] = start[key]
        out[key] = kw
    return out
