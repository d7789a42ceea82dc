"""The Settings tab: every setting of the server's settings store (core/settings.py) in its section, the same
values `/sdapi/v1/options` reads and writes. "Apply settings" saves only what changed, all or nothing; a bad value
is shown naming the setting and what is allowed. Values are read again whenever the tab is opened."""
from __future__ import annotations

import json
from typing import Any

import gradio as gr

from sdcodex.core.errors import CodexError
from sdcodex.core.settings import Option, sections

from .progress import error_html


def _component(opt: Option, value: Any, service: Any) -> Any:
    elem_id = f"codex-setting-{opt.key.replace('_', '-').lower()}"
    info = f"{opt.key} — takes effect: {opt.effect}" if opt.effect else opt.key
    if opt.kind == "bool":
        return gr.Checkbox(value=bool(value), label=opt.label, info=info, elem_id=elem_id)
    if opt.kind in ("int", "float"):
        return gr.Number(value=value, label=opt.label, info=info, elem_id=elem_id,
                         precision=0 if opt.kind == "int" else None)
    if opt.kind == "choice":
        return gr.Dropdown(list(opt.choices), value=value, label=opt.label, info=info, elem_id=elem_id)
    if opt.key == "sd_model_checkpoint":
        names = checkpoint_titles(service)
        return gr.Dropdown(names, value=value, label=opt.label, info=info, elem_id=elem_id, allow_custom_value=True)
    if opt.kind == "family_defaults":
        return gr.Code(json.dumps(value or {}, indent=2), language="json", label=f"{opt.label} — JSON: "
                       '{"sd15": {"steps": 20, "width": 512, "height": 512, "cfg_scale": 7, "sampler": "Euler a"}}',
                       interactive=True, elem_id=elem_id)
    return gr.Textbox(value="" if value is None else str(value), label=opt.label, info=info, elem_id=elem_id)


def checkpoint_titles(service: Any) -> list[str]:
    try:
        return [service.title(e) for e in service.checkpoints()]
    except Exception:  # noqa: BLE001 - a broken scan: nothing to offer
        return []


def _display(opt: Option, value: Any) -> Any:
    if opt.kind == "family_defaults":
        return json.dumps(value or {}, indent=2)
    if opt.kind in ("str", "pattern") and opt.key != "sd_model_checkpoint":
        return "" if value is None else str(value)
    return value


def _parse(opt: Option, value: Any) -> Any:
    """A component's value as the store takes it (numbers from the page come as floats; JSON as text)."""
    if opt.kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if opt.kind == "family_defaults":
        try:
            return json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise CodexError(f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                             field=opt.key) from None
    if opt.key == "sd_model_checkpoint":
        return value or None
    return value


def build_settings_tab(service: Any) -> dict[str, Any]:
    """Lay out the Settings tab (inside a gr.Tabs) and wire it to `service` (a CodexService)."""
    values = service.options()
    options: list[Option] = []
    components: list[Any] = []
    with gr.Tab("Settings", id="settings", elem_id="codex-settings-tab") as tab:
        gr.Markdown("The server's settings, shared with the A1111 API (`/sdapi/v1/options`). They take effect on "
                    "the next job; queued jobs keep what they were submitted with. See docs/settings.md.")
        with gr.Row():
            apply = gr.Button("Apply settings", variant="primary", elem_id="codex-settings-apply", scale=1)
            reload = gr.Button("Reload", elem_id="codex-settings-reload", scale=0, min_width=100)
        status = gr.HTML("", elem_id="codex-settings-status")
        for section, opts in sections():
            with gr.Accordion(section, open=True, elem_classes=["codex-settings-section"]):
                for opt in opts:
                    options.append(opt)
                    components.append(_component(opt, _display(opt, values.get(opt.key)), service))

    def current() -> list[Any]:
        now = service.options()
        out = []
        for opt in options:
            update = {"value": _display(opt, now.get(opt.key))}
            if opt.key == "sd_model_checkpoint":
                update["choices"] = checkpoint_titles(service)
            out.append(gr.update(**update))
        return out

    def save(*given: Any) -> list[Any]:
        now = service.options()
        try:
            changed = {}
            for opt, value in zip(options, given):
                parsed = _parse(opt, value)
                if parsed != now.get(opt.key):
                    changed[opt.key] = parsed
            if changed:
                service.set_options(changed)  # the same call as POST /sdapi/v1/options
            keys = set(changed)
        except CodexError as exc:
            return [error_html(exc)] + [gr.skip()] * len(options)
        text = ("Saved: " + ", ".join(sorted(keys))) if keys else "Nothing changed."
        return [f'<div class="codex-ok" role="status">{text}</div>'] + current()

    apply.click(save, inputs=components, outputs=[status, *components], show_progress="hidden")
    reload.click(lambda: [""] + current(), outputs=[status, *components], show_progress="hidden")
    tab.select(lambda: current(), outputs=components, show_progress="hidden")
    return {"tab": tab, "apply": apply, "status": status, "components": dict(zip([o.key for o in options],
                                                                                components))}
