"""The Gradio web UI, mounted at / on the server's FastAPI app. It is a face like the APIs: it builds
the same strict request and submits it through the server's job queue (`service.submit`), following
the job's stored events — it never calls an engine or the orchestrator itself."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def mount_ui(app: Any, service: Any, path: str = "/") -> Any:
    """Build the page for `service` (a CodexService) and mount it on `app` at `path`; returns the app.

    Routes already on the app (/api/v1, /sdapi/v1, /v1, /docs) keep precedence over the mount."""
    import gradio as gr

    from .assets import CSS, JS
    from .layout import build_blocks

    blocks = build_blocks(service)
    blocks.queue(default_concurrency_limit=None)
    from sdcodex.core.enums import Task

    # only the folders jobs write to (<outdir>/<task>/<date>/...), never the database, even when --db puts
    # it in the outputs folder
    served = [str(Path(service.outdir) / folder) for task in Task for folder in (task.value, f"{task.value}-grids")]
    db = str(service.store.path.absolute())
    app = gr.mount_gradio_app(app, blocks, path=path, allowed_paths=served,
                              blocked_paths=[db, db + "-wal", db + "-shm", db + "-journal"], css=CSS, js=JS,
                              footer_links=[], ssr_mode=False, show_error=True,
                              # Gradio's run history copies every event's inputs and the definitions of its
                              # output components into localStorage and rewrites the whole list on each event:
                              # with this page's engine switch (hundreds of outputs) the browser spent tens of
                              # seconds in it, and it would keep prompts and images in the browser
                              run_history=False)
    app.state.codex_ui = blocks
    return app


#: the name `sdcodex.server.app.mount_ui` looks for
mount = mount_ui
