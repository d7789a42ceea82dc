"""Events of the generation tabs: the live JSON request view, Generate (submit through the job queue and
follow the job's events), Interrupt, Skip, gallery selection with infotext, reuse seed and "send to"."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from sdcodex.core.enums import Task
from sdcodex.core.errors import CodexError, ValidationError

from . import caps, controlnet_panel, ip_adapter_panel, xyz_panel
from .fields import GenTab, field_label
from .guard import fingerprint, needs_confirmation, notice_html
from .progress import Status, UIJobs, error_html, progress_html
from .request import (build_request, check_blank, editor_images, parse_edited, preview_json, reference_images,
                      request_to_fields)
from .tools import wire_batch, wire_tools
from .uploads import BadUpload

log = logging.getLogger("sdcodex.ui")


@dataclass
class Quick:
    """The quicksettings row."""

    engine: Any
    checkpoint: Any
    mode: Any
    vae: Any

    @property
    def components(self) -> list[Any]:
        return [self.engine, self.checkpoint, self.mode, self.vae]

    def values(self, data: dict[Any, Any]) -> dict[str, Any]:
        return {"engine": data.get(self.engine), "model": data.get(self.checkpoint), "mode": data.get(self.mode),
                "vae": data.get(self.vae)}


def tab_images(tab: GenTab, data: dict[Any, Any]) -> dict[str, Any]:
    if "images" in tab.fields:  # reference images (txt2img on FLUX.2): replace placeholders of an edited request
        return {"images": reference_images(data.get(tab.fields["images"]))}
    if tab.image is None:
        return {}
    value = data.get(tab.image)
    if isinstance(value, BadUpload):
        raise ValidationError(value.reason, field="init_image")
    if tab.task is Task.INPAINT:
        return editor_images(value)
    return {"init_image": value.convert("RGB") if value is not None else None}


def tab_request(tab: GenTab, quick: Quick, data: dict[Any, Any], *, encode: bool) -> dict[str, Any]:
    """The strict request this tab sends now (images as base64 when `encode`)."""
    q = quick.values(data)
    values = {key: data.get(comp) for key, comp in tab.fields.items()}
    visible = caps.visible_keys(q["engine"], tab.task)
    if encode:
        check_blank(values, visible)
    request = build_request(tab.task, q, values, visible, tab_images(tab, data), encode=encode)
    plot = xyz_panel.request_part(tab.script, data)
    if plot is not None:
        request["xyz"] = plot
    units = controlnet_panel.request_part(tab.controlnet, data, encode=encode)
    if units:
        request["controls"] = units
    image_prompt = ip_adapter_panel.request_part(getattr(tab, "ip_adapter", None), data, encode=encode)
    if image_prompt is not None:
        request["ip_adapter"] = image_prompt
    return request


def media_info(path: str) -> tuple[str, dict[str, Any]]:
    """(infotext, request payload) of an output file."""
    from sdcodex.media.reader import read_info

    try:
        info = read_info(path)
    except CodexError:
        return "", {}
    return info.get("parameters") or "", info.get("request") or {}


def _inputs(tab: GenTab, quick: Quick) -> set[Any]:
    comps = set(quick.components) | set(tab.field_components) | {tab.edit_json, tab.json_view}
    if tab.image is not None:
        comps.add(tab.image)
    if tab.script is not None:
        comps |= set(tab.script.components)
    if tab.controlnet is not None:
        comps |= set(tab.controlnet.components)
    if getattr(tab, "ip_adapter", None) is not None:
        comps |= set(tab.ip_adapter.components)
    return comps


def wire_tab(tab: GenTab, quick: Quick, jobs: UIJobs, tabs: Any, all_tabs: dict[str, GenTab]) -> None:
    """Attach every event of one generation tab."""
    inputs = _inputs(tab, quick)
    result_out = tab.video if tab.video is not None else tab.gallery

    # the inpaint editor's value is exported from its canvas (WebGL read-back, an upload) each time an event takes it
    # as input: the request view reads the upload kept server-side instead (`uploaded`, set by the upload event)
    uploaded = gr.State(None) if tab.task is Task.INPAINT else None
    preview_inputs = inputs if uploaded is None else (inputs - {tab.image}) | {uploaded}

    def preview(data: dict[Any, Any]) -> tuple[Any, Any]:
        if uploaded is not None:
            data = {**data, tab.image: data.get(uploaded)}
        try:
            req = tab_request(tab, quick, data, encode=False)
        except Exception:  # noqa: BLE001 - the preview must never break the page
            return gr.skip(), gr.skip()
        text = preview_json(req)
        shown = json.loads(text)
        return (gr.skip() if data.get(tab.edit_json) else text), shown

    # user edits (.input), the image, opening the tab or the view refresh it; programmatic field updates (engine
    # switch, send-to) do not each fire a round trip. A quicksettings change refreshes only the open tab's (the
    # page clicks its hidden refresh button, quick_refresh_js): every tab's at once had Gradio's client gather
    # each tab's ~75 inputs, a walk of the whole component tree per input, for seconds on a small machine
    # (a file field has no .input event: its .change fires on upload and clear)
    triggers = [c.input if hasattr(c, "input") else c.change for c in tab.field_components]
    triggers += [tab.edit_json.change, tab.json_box.expand, tab.tab.select, tab.refresh_json.click]
    if tab.script is not None:
        triggers += [c.change for c in tab.script.components]
    if tab.controlnet is not None:
        triggers += [c.change for c in tab.controlnet.components]
    if getattr(tab, "ip_adapter", None) is not None:
        triggers += [c.change for c in tab.ip_adapter.components]
    if tab.image is not None:
        # the inpaint editor's change fires on every brush stroke and while its canvas sets up after an upload: each
        # a round trip whose status update walks Gradio's whole component tree per known component, which froze the
        # page after an upload; its upload and clear are what change the request view (the mask is a placeholder)
        triggers += [] if uploaded is not None else [tab.image.change]
    gr.on(triggers, preview, inputs=preview_inputs, outputs=[tab.json_view, tab.last_request],
          trigger_mode="always_last", show_progress="hidden", queue=False)
    tab.edit_json.change(lambda on: gr.update(interactive=bool(on)), inputs=tab.edit_json, outputs=tab.json_view,
                         show_progress="hidden", queue=False)
    wire_token_counters(tab, quick)
    xyz_panel.wire(tab.script, quick.engine, jobs.service.models)

    confirmed = gr.State("")  # the fingerprint of the huge request the user was asked about

    def generate(data: dict[Any, Any], request: gr.Request):
        session = getattr(request, "session_hash", None)
        try:
            images = tab_images(tab, data)
            if data.get(tab.edit_json):
                req = parse_edited(data.get(tab.json_view) or "", images)
            else:
                req = tab_request(tab, quick, data, encode=True)
            notice = needs_confirmation(req, data.get(confirmed))
            if notice:
                jobs.service.prepare(req)  # an invalid request says so first, not "press again"
                yield {tab.error: notice_html(notice), tab.progress: progress_html(None), confirmed: fingerprint(req)}
                return
            job = jobs.submit(req, session=session, tab=tab.task.value)
        except CodexError as exc:
            yield {tab.error: error_html(exc, field_label), tab.progress: progress_html(None)}
            return
        except Exception as exc:  # noqa: BLE001 - shown in the page, never a silent failure
            log.exception("UI submit failed")
            yield {tab.error: error_html(f"{type(exc).__name__}: {exc}"), tab.progress: progress_html(None)}
            return
        status = Status(job.id)
        yield {tab.error: "", tab.progress: progress_html(status), confirmed: ""}
        for status in jobs.follow(job.id):
            yield {tab.progress: progress_html(status)}
        yield render_job(jobs, job.id, status, progress=tab.progress, error=tab.error, infotext=tab.infotext,
                         gallery=tab.gallery, video=tab.video, result=tab.result)

    tab.generate.click(generate, inputs=inputs | {confirmed},
                       outputs=[tab.progress, tab.error, result_out, tab.infotext, tab.result, confirmed],
                       show_progress="hidden", concurrency_limit=None)
    if tab.image is not None:
        def check_image(value: Any) -> str:
            """Say at once when the upload is not a usable image (the field keeps no framework error)."""
            if isinstance(value, BadUpload):
                return error_html({"field": "init_image", "message": value.reason}, field_label)
            return ""

        if uploaded is None:
            tab.image.upload(check_image, inputs=tab.image, outputs=tab.error, show_progress="hidden", queue=False)
        else:
            # the editor calls its upload/clear listeners from inside a Svelte effect: a server event dispatched there
            # has Gradio's client update every known component's status within the effect, which stalled the page
            # after an upload (the canvas never came). The page only clicks a hidden button, outside the effect; that
            # checks the upload, keeps it for the request view and refreshes the view.
            check = gr.Button("Check the image", elem_id=f"{tab.prefix}-image-check", elem_classes=["codex-hidden"])
            click_js = f"() => {{ setTimeout(() => document.getElementById('{tab.prefix}-image-check')?.click(), 0); }}"
            for event in (tab.image.upload, tab.image.clear):
                event(None, None, None, js=click_js, show_progress="hidden")
            check.click(lambda value: (check_image(value), value), inputs=tab.image, outputs=[tab.error, uploaded],
                        show_progress="hidden", queue=False).then(
                preview, inputs=preview_inputs, outputs=[tab.json_view, tab.last_request], show_progress="hidden",
                queue=False)

    def interrupt(request: gr.Request) -> None:
        jobs.interrupt(getattr(request, "session_hash", None))

    def skip(request: gr.Request) -> None:
        jobs.skip(getattr(request, "session_hash", None))

    tab.interrupt.click(interrupt, None, None, show_progress="hidden", concurrency_limit=None)
    tab.skip.click(skip, None, None, show_progress="hidden", concurrency_limit=None)

    if tab.gallery is not None:
        def select(result: dict[str, Any], evt: gr.SelectData) -> tuple[str, dict[str, Any]]:
            result = dict(result or {})
            result["selected"] = int(evt.index or 0)
            infos = result.get("infotexts") or []
            return (infos[result["selected"]] if result["selected"] < len(infos) else ""), result

        tab.gallery.select(select, inputs=tab.result, outputs=[tab.infotext, tab.result], show_progress="hidden")

    if "seed" in tab.fields:
        def reuse_seed(result: dict[str, Any]) -> Any:
            seeds = (result or {}).get("seeds") or []
            index = (result or {}).get("selected", 0)
            return seeds[index] if index < len(seeds) else (seeds[0] if seeds else gr.skip())

        tab.reuse_seed.click(reuse_seed, inputs=tab.result, outputs=tab.fields["seed"], show_progress="hidden")

    for target_name, button in tab.send.items():
        target = all_tabs[target_name]
        wire_send(button, tab, target, tabs)
    wire_tools(tab, quick)
    wire_batch(tab, quick, jobs)


def quick_refresh_js(tabs: list[GenTab]) -> str:
    """The page's part of a quicksettings change: click the hidden refresh button of the open generation tab."""
    ids = json.dumps([t.prefix for t in tabs])
    return ("() => { for (const p of " + ids + ") { const g = document.getElementById(p + '-generate');"
            " if (g && g.offsetParent !== null) document.getElementById(p + '-refresh-json')?.click(); } }")


def wire_token_counters(tab: GenTab, quick: Quick) -> None:
    """`used/75` under each prompt box (growing by chunks, as A1111's), counted by the engine's own encoder."""
    extra = [tab.fields[k] for k in ("emphasis", "steps") if k in tab.fields]
    if tab.token_counters:
        caps.warm_prompt_tokens()
    for key, counter in tab.token_counters.items():
        box = tab.fields[key]

        def count(text: str, engine: str, *rest: Any) -> str:
            values = dict(zip([k for k in ("emphasis", "steps") if k in tab.fields], rest))
            return caps.prompt_tokens(engine, text, values.get("emphasis"), values.get("steps"))

        gr.on([box.change, quick.engine.change] + [c.change for c in extra], count,
              inputs=[box, quick.engine, *extra], outputs=counter, trigger_mode="always_last",
              show_progress="hidden", queue=False)


def wire_send(button: Any, source: GenTab, target: GenTab, tabs: Any) -> None:
    """Send the selected output image (and its generation values) to another tab."""
    keys = target.field_keys

    def send(result: dict[str, Any]) -> list[Any]:
        result = result or {}
        images = result.get("images") or []
        index = result.get("selected", 0)
        if not images:
            return [gr.skip()] * (len(keys) + 2)
        path = images[index] if index < len(images) else images[0]
        _infotext, request = media_info(path)
        values = request_to_fields(request, target.task)
        return ([path] + [gr.update(value=values[k]) if k in values else gr.skip() for k in keys]
                + [gr.Tabs(selected=target.task.value)])

    button.click(send, inputs=source.result, outputs=[target.image, *target.field_components, tabs],
                 show_progress="hidden")


def render_job(jobs: UIJobs, job_id: str, status: Status, *, progress: Any, error: Any, infotext: Any,
               gallery: Any = None, video: Any = None, result: Any = None) -> dict[Any, Any]:
    """The final update for a finished job: progress, error, outputs (gallery and/or video player),
    infotext of the first output, and the result state (paths, infotexts, seeds, selected index)."""
    job = jobs.job(job_id)
    images, videos = jobs.outputs(job) if job is not None else ([], [])
    infos = [media_info(p)[0] for p in images + videos]
    seeds = list(((job.result or {}).get("info") or {}).get("seeds") or []) if job is not None else []
    out: dict[Any, Any] = {progress: progress_html(status), infotext: infos[0] if infos else ""}
    failure = job.error if job is not None else {"message": f"job {job_id} is gone"}
    out[error] = error_html(failure, field_label) if failure else ""
    if result is not None:
        out[result] = {"job": job_id, "images": images, "videos": videos, "infotexts": infos, "seeds": seeds,
                       "selected": 0}
    if video is not None:
        out[video] = videos[0] if videos else None
    if gallery is not None:
        out[gallery] = images
    return out
