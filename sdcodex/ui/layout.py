"""The page: quicksettings row (Engine, Checkpoint of that engine's family, Mode, VAE), the demo-model
offer when there are no models, the generation tabs, PNG Info, Presets and the Queue. Engine and mode
changes re-drive tabs, samplers and fields from the engines' declared capabilities."""
from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from . import (caps, controlnet_panel, defaults, demo, extra_networks, ip_adapter_panel, outputs_view, pnginfo,
               presets_view, settings_view, styles_view)
from .assets import DARK_TOGGLE
from .fields import GenTab, build_gen_tab, field_props, tab_keys
from .progress import UIJobs, error_html, progress_html
from .tabs import Quick, quick_refresh_js, render_job, wire_tab

log = logging.getLogger("sdcodex.ui")
QUEUE_HEADERS = ["id", "task", "face", "state", "progress", "position", "model", "submitted"]


def checkpoint_names(models: Any, engine: str | None) -> list[str]:
    try:
        return [e.name for e in models.checkpoints(engine)]
    except Exception:  # noqa: BLE001 - an unknown family or a broken scan: nothing to offer
        log.exception("listing checkpoints failed")
        return []


def vae_names(models: Any) -> list[str]:
    try:
        return ["Automatic"] + [e.name for e in models.entries(kind="vae")]
    except Exception:  # noqa: BLE001
        return ["Automatic"]


def upscaler_names(models: Any) -> list[str]:
    try:
        from sdcodex.models.upscalers import list_upscalers

        return [u["name"] for u in list_upscalers(getattr(models, "models_dir", None))]
    except Exception:  # noqa: BLE001
        return ["None", "Lanczos", "Nearest"]


def hires_upscaler_names(models: Any) -> list[str]:
    try:
        from sdcodex.engines.hires import LATENT_MODES

        latent = list(LATENT_MODES)
    except Exception:  # noqa: BLE001
        latent = []
    return latent + [n for n in upscaler_names(models) if n != "None"]


def initial_engine(models: Any) -> str:
    """The first engine of the Engine list that has a checkpoint, else the first registered engine."""
    keys = caps.engine_keys()
    try:
        families = {getattr(e.family, "value", e.family) for e in models.checkpoints()}
    except Exception:  # noqa: BLE001
        families = set()
    return next((k for k in keys if k in families), keys[0])


def build_blocks(service: Any) -> gr.Blocks:
    models = service.models
    jobs = UIJobs(service)
    gen_tabs: dict[str, GenTab] = {}
    engine0 = initial_engine(models)
    with gr.Blocks(title="Codex") as blocks:
        with gr.Row(elem_id="codex-quicksettings"):
            engine = gr.Dropdown(caps.engine_choices(), value=engine0, label="Engine", elem_id="codex-engine",
                                 scale=2)
            names = checkpoint_names(models, engine0)
            checkpoint = gr.Dropdown(names, value=names[0] if names else None, label="Checkpoint",
                                     elem_id="codex-checkpoint", scale=3, allow_custom_value=True)
            refresh = gr.Button("↻", elem_id="codex-refresh", scale=0, min_width=48)
            mode = gr.Dropdown(caps.modes_for(engine0), value="normal", label="Mode", elem_id="codex-mode", scale=1)
            vae = gr.Dropdown(vae_names(models), value="Automatic", label="VAE", elem_id="codex-vae", scale=2)
            gr.Button("◐", elem_id="codex-dark", scale=0, min_width=40).click(None, js=DARK_TOGGLE)
        queue_line = gr.Markdown("", elem_id="codex-queue-line")
        with gr.Group(visible=not names, elem_id="codex-demo", elem_classes=["codex-demo"]) as demo_box:
            gr.Markdown(demo.notice(models))
            with gr.Row():
                demo_families = gr.CheckboxGroup(demo.families(), value=list(demo.DEFAULT_FAMILIES),
                                                 label="Demo families (random weights)", elem_id="codex-demo-families")
                demo_button = gr.Button("Build demo models (random weights)", variant="primary",
                                        elem_id="codex-demo-build")
        demo_status = gr.Markdown("", elem_id="codex-demo-status")
        quick = Quick(engine, checkpoint, mode, vae)
        # the page is built as the starting engine and model show it; the load and every Engine/Mode switch then
        # send only what differs from what the page shows (`shown`, one record per session): each field update
        # costs Gradio's client a walk of the whole component tree, so sending every field of every tab kept the
        # page busy for tens of seconds on a small machine
        mode0 = _mode_or_first(engine0, "normal")
        model0 = defaults.declared(models, engine0, names[0] if names else None)
        family0 = service.options().get("codex_family_defaults")
        shown0: dict[str, dict[str, Any]] = {}
        with gr.Tabs(elem_id="codex-tabs") as tabs:
            for task, label in caps.GEN_TASKS:
                start = defaults.start_values(engine0, mode0, task, model0, family_defaults=family0)
                props = field_props(task, tab_keys(task), engine0, start)
                visible0 = task.value in caps.tasks_for(engine0)
                rules0 = _rules(engine0, task)
                gen_tabs[task.value] = build_gen_tab(task, label, visible=visible0, rules_text=rules0, props=props)
                shown0[task.value] = {"tab": visible0, "rules": rules0, "fields": props}
            png = _png_info_tab()
            presets = _presets_tab()
            queue = _queue_tab()
            outputs = outputs_view.build_outputs_tab(service)
            settings_view.build_settings_tab(service)
        networks = extra_networks.build_panel()
        style_editor = styles_view.build_editor()
        for tab in gen_tabs.values():
            wire_tab(tab, quick, jobs, tabs, gen_tabs)
        for component in quick.components:  # the open tab's request view follows the quicksettings
            component.change(None, None, None, js=quick_refresh_js(list(gen_tabs.values())), show_progress="hidden")
        controlnet_panel.wire(gen_tabs, models, service)
        ip_adapter_panel.wire(gen_tabs, models)
        _wire_png_info(png, gen_tabs, tabs, service)
        styles_view.wire(style_editor, service, blocks, gen_tabs)
        outputs_view.wire_outputs_tab(outputs, gen_tabs, tabs)
        _wire_presets(presets, gen_tabs, tabs, quick)
        queue_rows = _wire_queue(queue, jobs, queue_line)
        blocks.load(queue_rows, None, [queue["table"], queue_line], show_progress="hidden")

        # -- engine / mode / models -----------------------------------------------------------
        tab_list = list(gen_tabs.values())
        shown = gr.State(shown0)
        engine_outputs = [checkpoint, mode, tabs, shown]
        for tab in tab_list:
            engine_outputs += [tab.tab, tab.rules, *tab.field_components]

        kept = [(t, k) for t in tab_list for k in defaults.KEPT_ON_SWITCH if k in t.fields]
        kept_fields = [t.fields[k] for t, k in kept]

        def current_values(values: tuple[Any, ...]) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for (t, k), v in zip(kept, values):
                out.setdefault(t.task.value, {})[k] = v
            return out

        def engine_updates(engine_key: str, mode_value: str | None, page: dict[str, Any] | None, *,
                           new_checkpoints: bool = True, select_tab: bool = True,
                           current: dict[str, dict[str, Any]] | None = None,
                           checkpoint_name: str | None = None) -> list[Any]:
            """The updates for `engine_outputs`: only what differs from what the page shows (`page`, the `shown`
            record; the user's width/height/steps from `current`); tabs the engine hides keep their fields as they
            are until a switch shows them again."""
            mode_value = _mode_or_first(engine_key, mode_value)
            names = checkpoint_names(models, engine_key)
            model = defaults.declared(models, engine_key, checkpoint_name if not new_checkpoints
                                      else (names[0] if names else None))
            page = {task: dict(record) for task, record in (page or shown0).items()}
            out: list[Any] = [gr.update(choices=names, value=names[0] if names else None) if new_checkpoints
                              else gr.skip(),
                              gr.update(choices=caps.modes_for(engine_key), value=mode_value)]
            tasks = caps.tasks_for(engine_key)
            # a hidden tab cannot stay selected: open the engine's first generation tab
            first = next((t.task.value for t in tab_list if t.task.value in tasks and t.task not in caps.MODEL_FREE),
                         None)
            out.append(gr.Tabs(selected=first) if select_tab and new_checkpoints and first else gr.skip())
            out.append(page)
            family_defaults = service.options().get("codex_family_defaults")  # the Settings tab's, docs/settings.md
            for tab in tab_list:
                record = page.get(tab.task.value) or {"tab": None, "rules": None, "fields": {}}
                fields_shown = dict(record.get("fields") or {})
                if tab.task.value not in tasks:
                    # visible="hidden" (not False) is what hides an already shown tab in Gradio 6
                    out += [gr.update(visible="hidden") if record.get("tab") is not False else gr.skip(), gr.skip()]
                    out += [gr.skip()] * len(tab.fields)
                    page[tab.task.value] = {**record, "tab": False}
                    continue
                rules = _rules(engine_key, tab.task)
                out += [gr.update(visible=True) if record.get("tab") is not True else gr.skip(),
                        rules if record.get("rules") != rules else gr.skip()]
                now = None if current is None else current.get(tab.task.value, {})
                start = defaults.start_values(engine_key, mode_value, tab.task, model, now,
                                              mode_switch=not new_checkpoints, family_defaults=family_defaults)
                for key, props in field_props(tab.task, tab.field_keys, engine_key, start, tab.prompt_keys).items():
                    old = fields_shown.get(key)
                    if old is not None and now and key in now:
                        old = {**old, "value": now[key]}  # the user's kept value, as the page shows it now
                    update, fields_shown[key] = _changed(old, props)
                    out.append(update)
                page[tab.task.value] = {"tab": True, "rules": rules, "fields": fields_shown}
            return out

        engine.input(lambda e, m, p, *cur: engine_updates(e, m, p, current=current_values(cur)),
                     inputs=[engine, mode, shown, *kept_fields], outputs=engine_outputs, show_progress="hidden")
        mode.input(lambda e, m, c, p, *cur: engine_updates(e, m, p, new_checkpoints=False,
                                                           current=current_values(cur), checkpoint_name=c),
                   inputs=[engine, mode, checkpoint, shown, *kept_fields], outputs=engine_outputs,
                   show_progress="hidden")
        # only the fields a model may declare (every output of an event stays in Gradio's client's status list,
        # which it walks on each later event)
        from sdcodex.models.declared import DECLARABLE

        declarable = [(t, k) for t in tab_list if t.task not in caps.MODEL_FREE for k in t.fields if k in DECLARABLE]

        def on_checkpoint(engine_key: str, name: str | None, page: dict[str, Any] | None) -> list[Any]:
            """A selected model fills the values it declares (a demo model: small size, few steps)."""
            model = defaults.declared(models, engine_key, name)
            page = {task: dict(record) for task, record in (page or shown0).items()}
            for t, k in declarable:
                record = page.get(t.task.value)
                if record is not None and k in model:
                    fields_shown = dict(record.get("fields") or {})
                    fields_shown[k] = {**(fields_shown.get(k) or {}), "value": model[k]}
                    page[t.task.value] = record = {**record, "fields": fields_shown}
            return [gr.update(value=model[k]) if k in model else gr.skip() for _t, k in declarable] + [page]

        checkpoint.input(on_checkpoint, inputs=[engine, checkpoint, shown],
                         outputs=[*(t.fields[k] for t, k in declarable), shown], show_progress="hidden")
        extra_networks.wire(networks, service, blocks, quick, engine_outputs, engine_updates,
                            lambda e: checkpoint_names(models, e), switch_state=shown)
        upscaler_fields = [t.fields[k] for t in tab_list for k in ("upscaler", "hires.upscaler") if k in t.fields]
        upscaler_kinds = [k for t in tab_list for k in ("upscaler", "hires.upscaler") if k in t.fields]

        def on_load(current_mode: str | None, page: dict[str, Any] | None) -> list[Any]:
            engine_key = initial_engine(models)
            names = checkpoint_names(models, engine_key)
            ups = {"upscaler": upscaler_names(models), "hires.upscaler": hires_upscaler_names(models)}
            return ([gr.update(value=engine_key), gr.update(choices=vae_names(models)),
                     gr.update(visible=not models.checkpoints())]
                    + engine_updates(engine_key, current_mode or "normal", page, select_tab=False)
                    + [gr.update(choices=ups[k], value=ups[k][0] if ups[k] else None) for k in upscaler_kinds]
                    + [gr.update(value=names[0] if names else None)])

        load_outputs = [engine, vae, demo_box, *engine_outputs, *upscaler_fields, checkpoint]
        blocks.load(on_load, inputs=[mode, shown], outputs=load_outputs, show_progress="hidden")

        def on_refresh(engine_key: str) -> list[Any]:
            models.refresh()
            names = checkpoint_names(models, engine_key)
            return [gr.update(choices=names, value=names[0] if names else None), gr.update(choices=vae_names(models)),
                    gr.update(visible=not models.checkpoints())]

        refresh.click(on_refresh, inputs=[engine], outputs=[checkpoint, vae, demo_box], show_progress="hidden")

        def on_demo(chosen: list[str], mode_value: str | None, page: dict[str, Any] | None) -> list[Any]:
            try:
                status = demo.build(models, chosen)
            except Exception as exc:  # noqa: BLE001 - shown in the page
                log.exception("building the demo models failed")
                return [error_html(f"building the demo models failed: {exc}")] + [gr.skip()] * (len(load_outputs))
            return [status] + on_load(mode_value, page)

        demo_button.click(on_demo, inputs=[demo_families, mode, shown], outputs=[demo_status, *load_outputs])
    return blocks


def _mode_or_first(engine_key: str, mode_value: str | None) -> str:
    modes = [m for _label, m in caps.modes_for(engine_key)]
    return mode_value if mode_value in modes else modes[0]


def _rules(engine_key: str, task: Any) -> str:
    """The rules line over a tab's fields: the engine's size rule (and frame rule on a video tab)."""
    if task in caps.MODEL_FREE:
        return "Upscaling runs on its own: no checkpoint needed."
    rules = f"**{caps.caps(engine_key)['label']}** — size: {caps.size_rule(engine_key)}"
    return rules + (f"; frames: {caps.frame_rule(engine_key)}" if task.is_video else "")


def _changed(shown: dict[str, Any] | None, props: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(gr.update of the props that differ from what the field shows — all of them when that is unknown; new choices
    bring their value along — or gr.skip(), and the field's record after it)."""
    if shown is None:
        return gr.update(**props), dict(props)
    changed = {k: v for k, v in props.items() if k not in shown or shown[k] != v}
    if "choices" in changed and "value" in props:
        changed["value"] = props["value"]
    return (gr.update(**changed) if changed else gr.skip()), {**shown, **props}


# -- PNG Info -----------------------------------------------------------------------------------------
def _png_info_tab() -> dict[str, Any]:
    with gr.Tab("PNG Info", id="pnginfo", elem_id="codex-pnginfo-tab"):
        with gr.Row(equal_height=False):
            with gr.Column():
                file = gr.File(label="Image or video (PNG, JPEG, WebP, GIF, MP4, WebM)", type="filepath",
                               file_types=[".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".webm"],
                               elem_id="codex-pnginfo-file")
            with gr.Column():
                error = gr.HTML("", elem_id="codex-pnginfo-error")
                summary = gr.Markdown("", elem_id="codex-pnginfo-summary")
                infotext = gr.Textbox(label="Parameters (infotext)", lines=6, interactive=False,
                                      elem_id="codex-pnginfo-infotext", buttons=["copy"])
                request = gr.Code("{}", language="json", label="Request", interactive=False,
                                  elem_id="codex-pnginfo-request")
                with gr.Row():
                    send = {t: gr.Button(f"Send to {t}", size="sm", elem_id=f"codex-pnginfo-send-{t}")
                            for t in pnginfo.TARGETS}
        state = gr.State({})
    return {"file": file, "error": error, "summary": summary, "infotext": infotext, "request": request,
            "send": send, "state": state}


def _wire_png_info(png: dict[str, Any], gen_tabs: dict[str, GenTab], tabs: Any, service: Any = None) -> None:
    png["file"].change(pnginfo.show, inputs=png["file"],
                       outputs=[png["infotext"], png["request"], png["summary"], png["error"], png["state"]])
    styles = getattr(service, "styles", None)
    pnginfo.wire_send(png["send"], png["state"], gen_tabs, tabs, styles=styles.all if styles is not None else None)


# -- Presets --------------------------------------------------------------------------------------------
def _presets_tab() -> dict[str, Any]:
    with gr.Tab("Presets", id="presets", elem_id="codex-presets-tab"):
        ids = presets_view.preset_ids()
        with gr.Row(equal_height=False):
            with gr.Column():
                choice = gr.Dropdown(ids, value=ids[0] if ids else None, label="Preset",
                                     elem_id="codex-preset-choice")
                summary = gr.Markdown("", elem_id="codex-preset-summary")
                error = gr.HTML("", elem_id="codex-preset-error")
                load = gr.Button("Load these values into the tab", elem_id="codex-preset-load")
            with gr.Column():
                fills = gr.Code("{}", language="json", label="It would fill exactly", interactive=False,
                                elem_id="codex-preset-fills")
                values = gr.Code("{}", language="json", label="Preset values", interactive=False,
                                 elem_id="codex-preset-values")
    return {"choice": choice, "summary": summary, "error": error, "load": load, "fills": fills, "values": values}


def _wire_presets(p: dict[str, Any], gen_tabs: dict[str, GenTab], tabs: Any, quick: Quick) -> None:
    states = [quick.engine, quick.mode, *(t.last_request for t in gen_tabs.values())]
    names = list(gen_tabs)

    def tab_requests(engine_key: str | None, mode_value: str | None, requests: tuple[Any, ...]) -> dict[str, Any]:
        """Each tab's last request under the quicksettings as they are now (a tab's request view is refreshed when
        it is opened or edited, not on every quicksettings change)."""
        return {name: {**(request or {"task": name}), "engine": engine_key, "mode": mode_value or "normal"}
                for name, request in zip(names, requests)}

    def show(preset_id: str | None, engine_key: str | None, mode_value: str | None,
             *requests: dict[str, Any]) -> tuple[str, str, str, str]:
        summary, values, fills, error = presets_view.describe(preset_id, tab_requests(engine_key, mode_value,
                                                                                      requests))
        return summary, values, fills, error

    outs = [p["summary"], p["values"], p["fills"], p["error"]]
    p["choice"].change(show, inputs=[p["choice"], *states], outputs=outs, show_progress="hidden")
    for tab in gen_tabs.values():
        tab.tab.select(show, inputs=[p["choice"], *states], outputs=outs, show_progress="hidden")
    all_fields = [c for t in gen_tabs.values() for c in t.field_components]

    def load(preset_id: str | None, engine_key: str | None, mode_value: str | None,
             *requests: dict[str, Any]) -> list[Any]:
        preset, refusal = presets_view.loadable(preset_id, tab_requests(engine_key, mode_value, requests))
        if refusal:
            return [gr.skip()] * len(all_fields) + [gr.skip(), refusal]
        out: list[Any] = []
        for tab in gen_tabs.values():
            values = presets_view.field_values(preset, tab.task) if preset.task == tab.task.value else {}
            out += [gr.update(value=values[k]) if k in values else gr.skip() for k in tab.field_keys]
        return out + [gr.Tabs(selected=preset.task), ""]

    p["load"].click(load, inputs=[p["choice"], *states], outputs=[*all_fields, tabs, p["error"]],
                    show_progress="hidden")


# -- Queue ----------------------------------------------------------------------------------------------
def _queue_tab() -> dict[str, Any]:
    with gr.Tab("Queue", id="queue", elem_id="codex-queue-tab"):
        gr.Markdown("Jobs keep running when the browser tab closes; they are listed here (all faces: UI, APIs). "
                    "Click a job's row to see its progress and outputs.")
        table = gr.Dataframe(headers=QUEUE_HEADERS, value=[], interactive=False, elem_id="codex-queue-table",
                             wrap=True)
        job_id = gr.State("")  # the job whose row was clicked
        with gr.Row():
            picked = gr.Markdown("", elem_id="codex-queue-picked")
            cancel = gr.Button("Cancel job", variant="stop", elem_id="codex-queue-cancel", scale=1)
            refresh = gr.Button("Refresh", elem_id="codex-queue-refresh", scale=1)
        progress = gr.HTML(progress_html(None), elem_id="codex-queue-progress")
        error = gr.HTML("", elem_id="codex-queue-error")
        gallery = gr.Gallery(label="Outputs", columns=4, height=300, interactive=False, elem_id="codex-queue-gallery")
        video = gr.Video(label="Video", interactive=False, elem_id="codex-queue-video")
        infotext = gr.Textbox(label="Generation info", lines=3, interactive=False, elem_id="codex-queue-infotext")
        timer = gr.Timer(3.0)
    return {"table": table, "job_id": job_id, "picked": picked, "cancel": cancel, "refresh": refresh,
            "progress": progress, "error": error, "gallery": gallery, "video": video, "infotext": infotext,
            "timer": timer}


def _wire_queue(q: dict[str, Any], jobs: UIJobs, queue_line: Any) -> Any:
    def rows() -> tuple[list[list[Any]], str]:
        counts = jobs.store.counts()
        line = (f"Queue: **{counts.get('running', 0)}** running, **{counts.get('queued', 0)}** queued"
                if counts.get("running") or counts.get("queued") else "")
        return jobs.queue_rows(), line

    for trigger in (q["refresh"].click, q["timer"].tick):
        trigger(rows, None, [q["table"], queue_line], show_progress="hidden", queue=False)

    def follow(evt: gr.SelectData, table: Any):
        """A click on a row opens that job: its progress while it runs, then its outputs."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            job_id = str(table.iloc[row, 0]) if hasattr(table, "iloc") else str(table[row][0])
        except Exception:  # noqa: BLE001 - a click outside the rows
            return
        job = jobs.job(job_id)
        if job is None:
            yield {q["error"]: error_html({"field": "job", "message": f"job {job_id} is gone"})}
            return
        yield {q["job_id"]: job_id, q["picked"]: f"Job `{job_id}` ({job.state})", q["error"]: ""}
        status = None
        for status in jobs.follow(job_id):
            yield {q["progress"]: progress_html(status), q["error"]: ""}
        yield render_job(jobs, job_id, status, progress=q["progress"], error=q["error"], infotext=q["infotext"],
                         gallery=q["gallery"], video=q["video"])

    q["table"].select(follow, inputs=q["table"], outputs=[q["job_id"], q["picked"], q["progress"], q["error"],
                                                          q["gallery"], q["video"], q["infotext"]],
                      show_progress="hidden", concurrency_limit=None)

    def cancel(job_id: str) -> str:
        job_id = (job_id or "").strip()
        if not job_id or jobs.job(job_id) is None:
            return error_html({"field": "job", "message": "click a job's row first"})
        jobs.interrupt(None, job_id)
        return ""

    q["cancel"].click(cancel, inputs=q["job_id"], outputs=q["error"], show_progress="hidden")
    return rows
