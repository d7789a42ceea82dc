"""Prompt styles in the page (A1111's styles.csv, see core.styles): a Styles picker under each prompt (several at
once; the request's `styles` key, expanded by the server so the infotext records the expanded prompt), an
"Apply" button that writes the chosen styles into the prompt boxes, and one editor to save the open tab's
prompt as a style, edit or delete one. PNG Info's "send to" reads styles back out of a prompt, as A1111."""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from sdcodex.core.errors import CodexError
from sdcodex.core.styles import Style, apply_styles, extract_styles

log = logging.getLogger("sdcodex.ui")


def build_tab_row(prefix: str) -> tuple[Any, Any]:
    """The Styles picker and its Apply button of one generation tab (inside its layout)."""
    with gr.Row(equal_height=True):
        picker = gr.Dropdown([], value=[], multiselect=True, label="Styles", elem_id=f"{prefix}-styles", scale=5,
                             info="applied to the prompts when generating ({prompt} takes your prompt; otherwise "
                                  "appended with \", \")")
        apply = gr.Button("Apply to prompt", size="sm", elem_id=f"{prefix}-styles-apply", scale=1, min_width=120)
    return picker, apply


@dataclass
class Editor:
    name: Any
    prompt: Any
    negative: Any
    copy: Any
    save: Any
    delete: Any
    status: Any


def build_editor() -> Editor:
    with gr.Accordion("Styles editor", open=False, elem_id="codex-styles-editor"):
        with gr.Row():
            name = gr.Dropdown([], value=None, label="Style", allow_custom_value=True, elem_id="codex-style-name",
                               scale=3, info="pick one to edit, or type a new name")
            copy = gr.Button("Copy the open tab's prompts", elem_id="codex-style-copy", scale=1)
            save = gr.Button("Save", variant="primary", elem_id="codex-style-save", scale=1)
            delete = gr.Button("Delete", variant="stop", elem_id="codex-style-delete", scale=1)
        prompt = gr.Textbox(label="Prompt ({prompt} marks where your prompt goes)", lines=2,
                            elem_id="codex-style-prompt")
        negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="codex-style-negative")
        status = gr.HTML("", elem_id="codex-style-status")
    return Editor(name, prompt, negative, copy, save, delete, status)


def extract_fields(values: dict[str, Any], styles: dict[str, Style]) -> dict[str, Any]:
    """Field values from an image's parameters with the styles its prompts were expanded with taken back out
    (A1111's "apply if any"): the prompts before the styles and the `styles` picker set."""
    if not styles or "prompt" not in values:
        return values
    found, prompt, negative = extract_styles(values.get("prompt") or "", values.get("negative_prompt") or "",
                                             list(styles.values()))
    if not found:
        return values
    return {**values, "prompt": prompt, "negative_prompt": negative, "styles": found}


def wire(editor: Editor, service: Any, blocks: Any, gen_tabs: dict[str, Any]) -> None:
    """Events: each tab's Apply, the editor, and the choices of every picker kept current."""
    store = service.styles
    prompt_tabs = {name: t for name, t in gen_tabs.items() if "styles" in t.fields}
    pickers = [t.fields["styles"] for t in prompt_tabs.values()]

    def choices(keep: list[list[str]] | None = None) -> list[Any]:
        names = store.names()
        ups = [gr.update(choices=names, value=[v for v in (kept or []) if v in names])
               for kept in (keep or [None] * len(pickers))]
        return ups + [gr.update(choices=names)]

    blocks.load(lambda: choices(), None, [*pickers, editor.name], show_progress="hidden")

    for tab in prompt_tabs.values():
        def apply(names: list[str], prompt: str, negative: str) -> tuple[Any, Any, Any]:
            try:
                chosen = store.pick(names or [])
            except CodexError:
                chosen = [store.all()[n] for n in names or [] if n in store.all()]
            p, n = apply_styles(prompt or "", negative or "", chosen)
            return p, n, gr.update(value=[])

        tab.styles_apply.click(apply, inputs=[tab.fields["styles"], tab.fields["prompt"], tab.fields["negative_prompt"]],
                               outputs=[tab.fields["prompt"], tab.fields["negative_prompt"], tab.fields["styles"]],
                               show_progress="hidden")

    active = gr.State("txt2img")
    for name, tab in prompt_tabs.items():
        tab.tab.select(lambda _n=name: _n, None, active, show_progress="hidden", queue=False)

    def show(name: str | None) -> tuple[Any, Any]:
        style = store.all().get(name or "")
        return (style.prompt, style.negative_prompt) if style else (gr.skip(), gr.skip())

    editor.name.input(show, inputs=editor.name, outputs=[editor.prompt, editor.negative], show_progress="hidden")
    texts = [c for t in prompt_tabs.values() for c in (t.fields["prompt"], t.fields["negative_prompt"])]

    def copy(current: str, *values: str) -> tuple[str, str]:
        names = list(prompt_tabs)
        i = names.index(current) if current in names else 0
        return values[2 * i] or "", values[2 * i + 1] or ""

    editor.copy.click(copy, inputs=[active, *texts], outputs=[editor.prompt, editor.negative],
                      show_progress="hidden")

    def save(name: str | None, prompt: str, negative: str, *kept: list[str]) -> list[Any]:
        try:
            style = store.save(Style((name or "").strip(), prompt or "", negative or ""))
        except CodexError as exc:
            return [_error(exc)] + [gr.skip()] * (len(pickers) + 1)
        return [f"Saved style <b>{html.escape(style.name)}</b> to <code>{html.escape(str(store.path))}</code>."] \
            + choices(list(kept))[:-1] + [gr.update(choices=store.names(), value=style.name)]

    def delete(name: str | None, *kept: list[str]) -> list[Any]:
        try:
            store.delete((name or "").strip())
        except CodexError as exc:
            return [_error(exc)] + [gr.skip()] * (len(pickers) + 1)
        return [f"Deleted style <b>{html.escape(name or '')}</b>."] + choices(list(kept))[:-1] \
            + [gr.update(choices=store.names(), value=None)]

    outs = [editor.status, *pickers, editor.name]
    editor.save.click(save, inputs=[editor.name, editor.prompt, editor.negative, *pickers], outputs=outs,
                      show_progress="hidden")
    editor.delete.click(delete, inputs=[editor.name, *pickers], outputs=outs, show_progress="hidden")


def _error(exc: CodexError) -> str:
    from .progress import error_html

    return error_html(exc)
