"""Renders a `sdcodex benchmark` report: the terminal table and a PNG bar chart drawn with Pillow (stacked
per-stage seconds per model x size, with the raw Diffusers time beside it when it was measured)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: stacked segments, in drawing order; "other" is total minus the timed stages (validation, presets, hashing)
SEGMENTS = ("load", "text_encode", "denoise", "decode", "save", "other")
COLORS = {"load": (141, 160, 203), "text_encode": (252, 141, 98), "denoise": (102, 194, 165),
          "decode": (231, 138, 195), "save": (166, 216, 84), "other": (200, 200, 200)}
BASELINE_COLOR = (90, 90, 90)
WIDTH = 1000
LABEL_W = 290       # row labels on the left
VALUE_W = 190       # value labels on the right
HEADER_H = 74       # title + legend
ROW_H = 46
FOOTER_H = 40       # axis ticks


# ------------------------------------------------------------------------------------------------ table
def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as fixed-width text: one line per model x size, then the Diffusers comparison if asked."""
    env = report.get("environment", {})
    lines = [f"sdcodex benchmark on {env.get('device', '?')} (torch {env.get('torch', '?')}, diffusers "
             f"{env.get('diffusers', '?')}): median of {report['repeat']} run(s) after one warm-up, seconds"]
    head = (f"{'engine':15s} {'model':24s} {'task':8s} {'size':>9s} {'frm':>3s} {'steps':>5s} {'load':>7s} "
            f"{'text_enc':>8s} {'denoise':>8s} {'decode':>7s} {'save':>7s} {'total':>8s} {'it/s':>7s} "
            f"{'RSS MB':>8s} {'VRAM MB':>8s}")
    lines += [head, "-" * len(head)]
    for row in report["rows"]:
        size = f"{row['width']}x{row['height']}"
        lead = (f"{row['engine']:15s} {row['model'][:24]:24s} {row['task']:8s} {size:>9s} "
                f"{row['num_frames'] or '-':>3} {row['steps']:>5d}")
        if row.get("error"):
            lines.append(f"{lead} ERROR: {row['error']}")
            continue
        st = row["stages_s"]
        lines.append(f"{lead} {_num(st['load']):>7s} {_num(st['text_encode']):>8s} {_num(st['denoise']):>8s} "
                     f"{_num(st['decode']):>7s} {_num(st['save']):>7s} {_num(st['total']):>8s} "
                     f"{_num(row.get('it_per_s'), 2):>7s} {_num(row.get('peak_rss_mb'), 0):>8s} "
                     f"{_num(row.get('peak_vram_mb'), 0):>8s}")
    lines.append("load is the model-cache hit of a warm run; cold load (first run): " + ", ".join(
        f"{r['model']} {_num(r.get('cold_load_s'))}s" for r in report["rows"] if not r.get("error")))
    lines.append("peak RSS is the process peak so far (it never goes down); peak VRAM is per run (CUDA only)")
    if report.get("compare_diffusers"):
        lines.append("")
        lines.append("raw Diffusers comparison (interleaved ours/theirs; ratio = median ours / median diffusers):")
        for row in report["rows"]:
            lines.append("  " + compare_line(row))
    for note in report.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def compare_line(row: dict[str, Any]) -> str:
    label = f"{row['engine']} {row['model']} {row['width']}x{row['height']} {row['task']}:"
    cmp = row.get("compare_diffusers")
    if row.get("error"):
        return f"{label} not measured ({row['error']})"
    if not cmp:
        return f"{label} not measured"
    if cmp["status"] != "ok":
        what = "not implemented" if cmp["status"] == "not_implemented" else "failed"
        return f"{label} raw Diffusers comparison {what}: {cmp['reason']}"
    same = cmp.get("max_pixel_diff")
    pixels = ("same pixels" if same == 0 else f"max pixel difference {same}" if same is not None
              else "pixels not compared")
    return (f"{label} ours {_num(cmp['ours_median_s'], 4)}s, diffusers {_num(cmp['diffusers_median_s'], 4)}s, "
            f"ratio {_num(cmp['ratio'])} (without save {_num(cmp['ratio_without_save'])}); {cmp['pipeline']} + "
            f"{cmp['scheduler_class']}; {pixels}")


# ------------------------------------------------------------------------------------------------ chart
def chart_size(report: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of the chart for this report: fixed width, one band per row."""
    return WIDTH, HEADER_H + ROW_H * max(1, len(report["rows"])) + FOOTER_H


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, max_width: float) -> str:
    """`text`, cut with an ellipsis so that it is at most max_width pixels wide."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "…", font=font) > max_width:
        text = text[:-1]
    return text + "…"


def segments(row: dict[str, Any]) -> list[tuple[str, float]]:
    st = row.get("stages_s") or {}
    parts = [(name, float(st.get(name) or 0.0)) for name in SEGMENTS[:-1]]
    other = float(st.get("total") or 0.0) - sum(v for _, v in parts)
    return parts + [("other", max(0.0, other))]


def nice_step(span: float, ticks: int = 6) -> float:
    """A 1/2/5 x 10^k step giving about `ticks` ticks over span."""
    raw = max(span, 1e-9) / ticks
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def write_chart(report: dict[str, Any], path: str | Path) -> Path:
    """Draw the stacked per-stage bars (and the Diffusers bar) and save a PNG at `path`."""
    from PIL import Image, ImageDraw

    width, height = chart_size(report)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    title, small, label = _font(16), _font(12), _font(13)
    rows = report["rows"]
    env = report.get("environment", {})
    runs = f"{report['repeat']} timed run{'s' if report['repeat'] != 1 else ''}"
    draw.text((12, 10), f"sdcodex benchmark: seconds per stage, median of {runs} after a warm-up, device "
              f"{env.get('device', '?')}", fill="black", font=title)
    x = 12
    for name in SEGMENTS:  # legend
        draw.rectangle((x, 44, x + 14, 58), fill=COLORS[name], outline="black")
        draw.text((x + 19, 44), name, fill="black", font=small)
        x += 34 + int(draw.textlength(name, font=small))
    if report.get("compare_diffusers"):
        draw.rectangle((x, 48, x + 14, 54), fill=BASELINE_COLOR)
        draw.text((x + 19, 44), "raw Diffusers (same work)", fill="black", font=small)

    def total_of(row: dict[str, Any]) -> float:
        cmp = row.get("compare_diffusers") or {}
        return max(float((row.get("stages_s") or {}).get("total") or 0.0), float(cmp.get("diffusers_median_s") or 0))

    top_value = max([total_of(r) for r in rows] + [1e-3])
    step = nice_step(top_value)
    axis_max = step * math.ceil(top_value / step)
    x0, x1 = LABEL_W, width - VALUE_W
    scale = (x1 - x0) / axis_max
    y_axis = HEADER_H + ROW_H * max(1, len(rows))
    for i in range(int(round(axis_max / step)) + 1):  # grid and ticks
        gx = x0 + int(i * step * scale)
        draw.line((gx, HEADER_H - 4, gx, y_axis), fill=(225, 225, 225))
        tick = f"{i * step:.{max(0, -math.floor(math.log10(step)))}f}s"
        draw.text((gx - draw.textlength(tick, font=small) / 2, y_axis + 6), tick, fill="black", font=small)
    draw.line((x0, HEADER_H - 4, x0, y_axis), fill="black")
    draw.line((x0, y_axis, x1, y_axis), fill="black")

    for index, row in enumerate(rows):
        y = HEADER_H + index * ROW_H
        frames = f", {row['num_frames']} frames" if row.get("num_frames") else ""
        room = x0 - 24
        draw.text((12, y + 4), _fit(draw, f"{row['engine']} · {row['model']}", label, room), fill="black",
                  font=label)
        draw.text((12, y + 21), _fit(draw, f"{row['width']}x{row['height']} {row['task']}, {row['steps']} steps"
                                     f"{frames}", small, room), fill=(70, 70, 70), font=small)
        if row.get("error"):
            draw.text((x0 + 6, y + 8), _fit(draw, "error: " + row["error"], small, width - x0 - 12), fill=(200, 0, 0),
                      font=small)
            continue
        bx = float(x0)
        for name, seconds in segments(row):
            w = seconds * scale
            if w >= 0.5:
                draw.rectangle((int(bx), y + 6, max(int(bx), int(bx + w) - 1), y + 26), fill=COLORS[name])
            bx += w
        draw.rectangle((x0, y + 6, max(x0, int(bx) - 1), y + 26), outline="black")
        text = f"{row['stages_s']['total']:.3f}s"
        if row.get("it_per_s"):
            text += f"  {row['it_per_s']:.1f} it/s"
        draw.text((int(bx) + 6, y + 9), text, fill="black", font=small)
        cmp = row.get("compare_diffusers") or {}
        if cmp.get("status") == "ok" and cmp.get("diffusers_median_s") is not None:
            w = int(cmp["diffusers_median_s"] * scale)
            draw.rectangle((x0, y + 30, x0 + max(1, w), y + 38), fill=BASELINE_COLOR)
            draw.text((x0 + w + 6, y + 28), f"{cmp['diffusers_median_s']:.3f}s, ratio {cmp['ratio']:.2f}",
                      fill=BASELINE_COLOR, font=small)
        elif cmp:
            draw.text((x0 + 6, y + 29), "raw Diffusers: not implemented for this engine" if
                      cmp.get("status") == "not_implemented" else "raw Diffusers: failed", fill=(120, 120, 120),
                      font=small)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
