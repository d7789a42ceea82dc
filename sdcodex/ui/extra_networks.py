"""The extra networks panel (as A1111's cards): checkpoints, LoRAs, embeddings and VAEs of the models folder,
each with its preview image (or a placeholder), base model, trigger words and top training tags, with a search
box and a refresh button. A click on a LoRA or embedding card inserts `<lora:NAME:1>` or the embedding's name
into the prompt box last used in the open tab (page JS, see assets.py); a checkpoint or VAE card selects it in
the quicksettings row (a checkpoint of another family switches the engine too)."""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import gradio as gr

log = logging.getLogger("sdcodex.ui")

KINDS = (("checkpoint", "Checkpoints"), ("lora", "LoRA"), ("embedding", "Textual Inversion"), ("vae", "VAE"))
PLACEHOLDER = ("data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 4 3'>"
               "<rect width='4' height='3' fill='%23d1d5db'/><text x='2' y='1.9' font-size='0.9' "
               "text-anchor='middle' fill='%236b7280'>no preview</text></svg>")


@dataclass
class Panel:
    search: Any
    refresh: Any
    cards: dict[str, Any]
    select: Any
    status: Any


def matches(card: dict[str, Any], query: str) -> bool:
    """Every word of the query is in the card's name, file name, base model, trigger words or tags."""
    words = query.lower().split()
    if not words:
        return True
    hay = " ".join([card.get("name") or "", card.get("filename") or "", str(card.get("base_model") or ""),
                    " ".join(card.get("trigger_words") or []), " ".join(t["tag"] for t in card.get("tags") or []),
                    str(card.get("family") or "")]).lower()
    return all(w in hay for w in words)


def preview_src(card: dict[str, Any]) -> str:
    if not card.get("preview"):
        return PLACEHOLDER
    return f"/api/v1/networks/{card['kind']}/{quote(card['name'], safe='')}/preview"


def card_html(card: dict[str, Any]) -> str:
    e = html.escape
    lines = []
    if card.get("family"):
        lines.append(e(str(card["family"])))
    if card.get("base_model"):
        lines.append("base: " + e(str(card["base_model"])))
    if card.get("trigger_words"):
        lines.append("triggers: " + e(", ".join(card["trigger_words"])))
    tags = ", ".join(t["tag"] for t in (card.get("tags") or [])[:6])
    if tags:
        lines.append("tags: " + e(tags))
    title = card.get("description") or card.get("filename") or card["name"]
    return (f'<div class="codex-card" role="button" tabindex="0" data-kind="{e(card["kind"])}" '
            f'data-name="{e(card["name"])}" data-insert="{e(card.get("insert") or "")}" title="{e(str(title))}">'
            f'<img src="{e(preview_src(card))}" alt="" loading="lazy">'
            f'<div class="codex-card-name">{e(card["name"])}</div>'
            f'<div class="codex-card-meta">{"<br>".join(lines)}</div></div>')


def cards_html(cards: list[dict[str, Any]], query: str = "") -> str:
    shown = [c for c in cards if matches(c, query)]
    if not shown:
        what = "matches the search" if cards else "is in the models folder"
        return f'<div class="codex-cards-empty">Nothing of this kind {what}.</div>'
    return '<div class="codex-cards">' + "".join(card_html(c) for c in shown) + "</div>"


def render(service: Any, query: str = "") -> list[str]:
    """The HTML of every kind's cards, filtered by the search text."""
    out = []
    for kind, _label in KINDS:
        try:
            cards = service.network_cards(kind, with_metadata=False)
        except Exception:  # noqa: BLE001 - a broken scan must not break the page
            log.exception("listing %s cards failed", kind)
            cards = []
        out.append(cards_html(cards, query or ""))
    return out


def build_panel() -> Panel:
    """Lay out the panel (inside a gr.Blocks context)."""
    with gr.Accordion("Extra networks", open=False, elem_id="codex-extra-networks"):
        with gr.Row():
            search = gr.Textbox(label="Search", placeholder="name, base model, trigger word or tag",
                                elem_id="codex-en-search", scale=4)
            refresh = gr.Button("↻ Refresh", elem_id="codex-en-refresh", scale=0, min_width=110)
        status = gr.Markdown("Click a LoRA or embedding card to add it to the prompt you last typed in; a checkpoint "
                             "or VAE card selects it.", elem_id="codex-en-status")
        cards = {}
        with gr.Tabs(elem_id="codex-en-tabs"):
            for kind, label in KINDS:
                with gr.Tab(label, id=f"en-{kind}", elem_id=f"codex-en-tab-{kind}"):
                    cards[kind] = gr.HTML("", elem_id=f"codex-en-cards-{kind}")
        # the page JS writes "kind<TAB>name" here when a checkpoint or VAE card is clicked
        select = gr.Textbox("", elem_id="codex-en-select", elem_classes=["codex-hidden"], show_label=False,
                            container=False)
    return Panel(search, refresh, cards, select, status)


def wire(panel: Panel, service: Any, blocks: Any, quick: Any, switch_outputs: list[Any],
         switch: Callable[..., list[Any]], checkpoint_names: Callable[[str], list[str]],
         switch_state: Any = None) -> None:
    """Events of the panel. `switch(engine, mode, state)` gives the updates for `switch_outputs` (checkpoint first)
    when the engine changes, `state` being the value of the `switch_state` component (what the page shows);
    `checkpoint_names(engine)` the checkpoints listed for an engine."""
    state_inputs = [] if switch_state is None else [switch_state]
    outs = [panel.cards[k] for k, _ in KINDS]
    panel.search.change(lambda q: render(service, q), inputs=panel.search, outputs=outs, show_progress="hidden",
                       trigger_mode="always_last")

    def refresh(query: str) -> list[str]:
        service.models.refresh()
        return render(service, query)

    panel.refresh.click(refresh, inputs=panel.search, outputs=outs, show_progress="hidden")
    blocks.load(lambda: render(service), None, outs, show_progress="hidden")

    def select(value: str, engine: str, mode: str | None, *state: Any) -> list[Any]:
        skip = [gr.skip()] * (3 + len(switch_outputs))
        kind, _, name = (value or "").partition("\t")
        if not name:
            return [""] + skip
        if kind == "vae":
            return ["", gr.skip(), gr.update(value=name), *[gr.skip()] * len(switch_outputs),
                    f"VAE **{html.escape(name)}** selected."]
        if kind != "checkpoint":
            return [""] + skip
        entry = next((e for e in service.checkpoints() if e.name == name), None)
        if entry is None:
            return ["", *skip[:-1], f"No checkpoint {html.escape(name)!r} any more: press ↻ Refresh."]
        family = getattr(entry.family, "value", entry.family) or engine
        note = f"Checkpoint **{html.escape(name)}** selected."
        if family == engine:
            return ["", gr.skip(), gr.skip(), gr.update(value=name), *[gr.skip()] * (len(switch_outputs) - 1), note]
        updates = switch(family, mode, *state)
        updates[0] = gr.update(choices=checkpoint_names(family), value=name)
        return ["", gr.update(value=family), gr.skip(), *updates, note]

    panel.select.change(select, inputs=[panel.select, quick.engine, quick.mode, *state_inputs],
                       outputs=[panel.select, quick.engine, quick.vae, *switch_outputs, panel.status],
                       show_progress="hidden")
