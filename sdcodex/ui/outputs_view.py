"""The Outputs tab: the outputs folder by task and date, newest first, in pages of thumbnails (videos too); the
selected file's infotext (frames and FPS for a video), "send to" buttons as PNG Info has, download, delete to the
trash and restore from it. Files are named by their `<task>/<date>/<file>` path and checked by media/outputs.py,
so nothing outside the outputs folder is ever read, moved or offered for download."""
from __future__ import annotations

from typing import Any

import gradio as gr

from sdcodex.core.errors import CodexError

from . import pnginfo
from .progress import error_html

ALL = "All"
PER_PAGE = 24
SEND_TARGETS = ("txt2img", "img2img", "inpaint", "upscale")


def _choices(values: list[str]) -> list[str]:
    return [ALL, *values]


def build_outputs_tab(service: Any) -> dict[str, Any]:
    """Lay out the Outputs tab (inside a gr.Tabs); `wire_outputs_tab` connects it once the generation tabs exist."""
    with gr.Tab("Outputs", id="outputs", elem_id="codex-outputs-tab") as tab:
        with gr.Row():
            task = gr.Dropdown([ALL], value=ALL, label="Task", elem_id="codex-outputs-task", scale=2)
            date = gr.Dropdown([ALL], value=ALL, label="Date", elem_id="codex-outputs-date", scale=2)
            prev = gr.Button("◀ Previous", elem_id="codex-outputs-prev", scale=1)
            page = gr.Number(1, precision=0, label="Page", elem_id="codex-outputs-page", scale=1, minimum=1)
            nxt = gr.Button("Next ▶", elem_id="codex-outputs-next", scale=1)
            refresh = gr.Button("↻ Refresh", elem_id="codex-outputs-refresh", scale=1)
        pages = gr.Markdown("", elem_id="codex-outputs-pages")
        gallery = gr.Gallery(label="Outputs", columns=6, height=420, allow_preview=False, interactive=False,
                             fit_columns=False, object_fit="contain",
                             elem_id="codex-outputs-gallery")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2):
                path = gr.Textbox(label="Selected file", interactive=False, elem_id="codex-outputs-path")
                summary = gr.Markdown("", elem_id="codex-outputs-summary")
                infotext = gr.Textbox(label="Parameters (infotext)", lines=5, interactive=False,
                                      elem_id="codex-outputs-infotext", buttons=["copy"])
            with gr.Column(scale=1):
                with gr.Row():
                    send = {t: gr.Button(f"Send to {t}", size="sm", elem_id=f"codex-outputs-send-{t}")
                            for t in SEND_TARGETS}
                with gr.Row():
                    download = gr.DownloadButton("Download", value=None, size="sm", elem_id="codex-outputs-download")
                    delete = gr.Button("Delete (to trash)", variant="stop", size="sm", elem_id="codex-outputs-delete")
                message = gr.HTML("", elem_id="codex-outputs-message")
        with gr.Accordion("Trash", open=False, elem_id="codex-outputs-trash"):
            trash = gr.Dropdown([], value=None, label="Deleted files (latest first)", elem_id="codex-outputs-trash-list")
            restore = gr.Button("Restore", size="sm", elem_id="codex-outputs-restore")
        items = gr.State([])
        state = gr.State({})
    return {"tab": tab, "task": task, "date": date, "prev": prev, "page": page, "next": nxt, "refresh": refresh,
            "pages": pages, "gallery": gallery, "path": path, "summary": summary, "infotext": infotext,
            "send": send, "download": download, "delete": delete, "message": message, "trash": trash,
            "restore": restore, "items": items, "state": state, "service": service}


def _filter(value: Any) -> str | None:
    return None if value in (None, "", ALL) else str(value)


def wire_outputs_tab(o: dict[str, Any], gen_tabs: dict[str, Any], tabs: Any) -> None:
    service = o["service"]
    folder = service.outputs

    def listing(task: Any, date: Any, page: Any) -> list[Any]:
        """Gallery, page number, page line, filter choices, item paths, trash choices."""
        page = max(1, int(page or 1))
        try:
            data = folder.list(task=_filter(task), date=_filter(date), page=page, per_page=PER_PAGE)
            if page > data["pages"]:
                page = data["pages"]
                data = folder.list(task=_filter(task), date=_filter(date), page=page, per_page=PER_PAGE)
        except CodexError as exc:
            return [gr.skip(), gr.skip(), error_html(exc), gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        gallery = [(str(folder.root / i["path"]), f"{i['task']} · {i['name']}") for i in data["items"]]
        line = (f"{data['total']} file{'s' if data['total'] != 1 else ''} · page {data['page']} of {data['pages']}"
                if data["total"] else "No outputs here yet.")
        trashed = [i["path"] for i in folder.list(per_page=200, trash=True)["items"]]
        return [gallery, data["page"], line,
                gr.update(choices=_choices(data["tasks"]), value=task if task in _choices(data["tasks"]) else ALL),
                gr.update(choices=_choices(data["dates"]), value=date if date in _choices(data["dates"]) else ALL),
                [i["path"] for i in data["items"]], gr.update(choices=trashed, value=trashed[0] if trashed else None)]

    list_outputs = [o["gallery"], o["page"], o["pages"], o["task"], o["date"], o["items"], o["trash"]]
    inputs = [o["task"], o["date"], o["page"]]
    o["refresh"].click(listing, inputs=inputs, outputs=list_outputs, show_progress="hidden")
    o["tab"].select(listing, inputs=inputs, outputs=list_outputs, show_progress="hidden")
    o["task"].input(lambda t, d: listing(t, d, 1), inputs=[o["task"], o["date"]], outputs=list_outputs,
                    show_progress="hidden")
    o["date"].input(lambda t, d: listing(t, d, 1), inputs=[o["task"], o["date"]], outputs=list_outputs,
                    show_progress="hidden")
    o["prev"].click(lambda t, d, p: listing(t, d, int(p or 1) - 1), inputs=inputs, outputs=list_outputs,
                    show_progress="hidden")
    o["next"].click(lambda t, d, p: listing(t, d, int(p or 1) + 1), inputs=inputs, outputs=list_outputs,
                    show_progress="hidden")

    def select(evt: gr.SelectData, paths: list[str]) -> list[Any]:
        """Path, summary, infotext, download, message, send-to state for the clicked thumbnail."""
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(index, int) or not 0 <= index < len(paths):
            return [gr.skip()] * 6
        rel = paths[index]
        try:
            file = folder.check(rel)
        except CodexError as exc:
            return ["", "", "", gr.update(value=None), error_html(exc), {}]
        data = pnginfo.read(str(file))
        if data.get("error") is not None:
            return [rel, "", "", gr.update(value=str(file)), error_html(data["error"]), {}]
        return [rel, data["summary"], data["parameters"], gr.update(value=str(file)), "",
                {"request": data["request"], "path": str(file), "still": data["still"]}]

    o["gallery"].select(select, inputs=o["items"],
                        outputs=[o["path"], o["summary"], o["infotext"], o["download"], o["message"], o["state"]],
                        show_progress="hidden")
    pnginfo.wire_send({k: v for k, v in o["send"].items() if k in gen_tabs}, o["state"], gen_tabs, tabs)

    # delete: message, path, summary, infotext, download, state, then the listing
    def delete_all(rel: str, task: Any, date: Any, page: Any) -> list[Any]:
        if not rel:
            return ([error_html({"field": "Selected file", "message": "pick a file in the gallery first"})]
                    + [gr.skip()] * (5 + len(list_outputs)))
        try:
            trashed = folder.delete(rel)
        except CodexError as exc:
            return [error_html(exc)] + [gr.skip()] * (5 + len(list_outputs))
        note = f'<div class="codex-ok" role="status">Moved to the trash: {trashed} (Trash, below, restores it)</div>'
        return [note, "", "", "", gr.update(value=None), {}] + listing(task, date, page)

    o["delete"].click(delete_all, inputs=[o["path"], *inputs],
                      outputs=[o["message"], o["path"], o["summary"], o["infotext"], o["download"], o["state"],
                               *list_outputs], show_progress="hidden")

    def restore(rel: str | None, task: Any, date: Any, page: Any) -> list[Any]:
        if not rel:
            return ([error_html({"field": "Deleted files", "message": "the trash is empty"})]
                    + [gr.skip()] * len(list_outputs))
        try:
            back = folder.restore(rel)
        except CodexError as exc:
            return [error_html(exc)] + [gr.skip()] * len(list_outputs)
        return [f'<div class="codex-ok" role="status">Restored: {back}</div>'] + listing(task, date, page)

    o["restore"].click(restore, inputs=[o["trash"], *inputs], outputs=[o["message"], *list_outputs],
                       show_progress="hidden")
