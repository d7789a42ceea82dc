"""Runs an X/Y/Z plot as ONE job: every cell through the orchestrator's own path (so each cell's image is saved
with its own infotext, and a cell equals the single job with its parameters), in A1111's order (the costly
axis outermost, so a checkpoint loads once), progress over the whole plot (total = the sum of the cells'
steps), interrupt stops the plot, skip skips a cell; then the labelled grid, saved with the plot's infotext."""
from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Iterator

from .errors import CodexError, ValidationError
from .events import Event, EventSink
from .xyz import AXES, Cell, Plan, plan_plot

if TYPE_CHECKING:  # pragma: no cover
    from .orchestrator import Orchestrator, Result

log = logging.getLogger("sdcodex.xyz")

#: request keys an axis sets (an error on one of them while preparing a cell is an error of that axis' values)
_SETS = {"size": ("width", "height"), "prompt_sr": ("prompt", "negative_prompt"), "prompt_order": ("prompt",)}


@contextlib.contextmanager
def cell_errors(plan: Plan, cell: Cell) -> Iterator[None]:
    """A problem of one cell's request, named as the axis value that made it (`xyz.x.values`)."""
    try:
        yield
    except CodexError as exc:
        field = exc.field or ""
        for axis, index in zip(plan.axes, cell.position):
            keys = _SETS.get(axis.kind, (axis.kind,))
            if axis.kind != "nothing" and (field in keys or field.split("[")[0] in keys):
                value = axis.values[index]
                exc.field = f"xyz.{axis.name}.values"
                exc.message = f"value {value!r} ({axis.label}): {exc.message}"
                exc.args = (exc.message,)
                if isinstance(exc, ValidationError) and exc.errors:
                    exc.errors[0] = {**exc.errors[0], "field": exc.field, "message": exc.message}
                break
        raise


def prepare_plot(orch: "Orchestrator", raw: dict[str, Any], *, transform: Any = None) -> tuple[Plan, list[tuple]]:
    """Expand the plot and prepare every cell (validate, resolve the model, fill the preset, parse params):
    a bad value in any cell fails the whole request before anything runs. `transform(request)` (the server's
    path confinement) runs on each cell's request first. Returns the plan and each cell's `prepare()` tuple."""
    plan = plan_plot(raw)
    prepared = []
    for cell in plan.cells:
        with cell_errors(plan, cell):
            if transform is not None:
                cell.request = transform(cell.request)
            prepared.append(orch.prepare(cell.request))
    return plan, prepared


def _estimate(params: Any) -> int:
    """A cell's steps before its engine says (img2img runs steps x denoising; hires adds its pass)."""
    steps = int(params.steps or 1)
    if getattr(params, "init_image", None) is not None and params.denoising_strength is not None:
        steps = max(1, min(int(steps * params.denoising_strength), steps))
    hires = params.hires if isinstance(params.hires, dict) else None
    if hires:
        steps += int(hires.get("steps") or params.steps or 0)
    return steps * int(params.batch_count or 1)


class PlotProgress:
    """Progress of the whole plot: each cell's engine plans and steps on a child sink whose counts run over
    the plot (done/total of all cells), and whose events name the cell."""

    def __init__(self, events: EventSink, plan: Plan, estimates: list[int]) -> None:
        self.events = events
        self.plan = plan
        self.totals = list(estimates)
        self.done = 0
        self.position = 0  # how many cells have started

    @property
    def total(self) -> int:
        return max(sum(self.totals), 1)

    def cell_sink(self, index: int) -> EventSink:
        return _CellSink(self, index)

    def finished(self, index: int, steps_done: int) -> None:
        self.totals[index] = steps_done
        self.done = sum(self.totals[i] for i in self.plan.order[:self.position])


class _CellSink(EventSink):
    def __init__(self, plot: PlotProgress, index: int) -> None:
        super().__init__([self._forward], plot.events.control, preview_every=plot.events.preview_every)
        self.plot = plot
        self.index = index
        self.cell = plot.plan.cells[index]
        plot.position += 1
        self.run_number = plot.position

    def plan(self, total_steps: int) -> None:
        self.plot.totals[self.index] = int(total_steps)
        super().plan(self.plot.total)
        self.total_steps = self.plot.total
        self.done_steps = self.plot.done
        self.started_at = self.plot.done

    def _forward(self, event: Event) -> None:
        if event.kind == "done":
            return  # the plot ends once, after the grid
        data = dict(event.data)
        data["cell"] = list(self.cell.position)
        if event.kind == "progress":
            data["image_index"], data["images"] = self.run_number - 1, len(self.plot.plan.cells)
        elif event.kind == "start":
            data["images"] = len(self.plot.plan.cells)
        self.plot.events.emit(event.kind, **data)

    @property
    def steps_in_cell(self) -> int:
        return self.done_steps - getattr(self, "started_at", self.done_steps)


def run_plot(orch: "Orchestrator", raw: dict[str, Any], *, events: EventSink, job_id: str | None = None) -> "Result":
    from .orchestrator import Result

    t0 = time.perf_counter()
    plan, prepared = prepare_plot(orch, raw)
    first_params = prepared[0][4]
    progress = PlotProgress(events, plan, [_estimate(p[4]) for p in prepared])
    nx, ny, nz = plan.shape
    log.info("x/y/z plot: %d cells (%dx%dx%d), %d steps planned", len(plan.cells), nx, ny, nz, progress.total)
    events.emit("stage", stage="xyz", cells=len(plan.cells), shape=[nx, ny, nz])
    results: list[Result | None] = [None] * len(plan.cells)
    warnings: list[str] = []
    interrupted = False
    for index in plan.order:
        if events.control.interrupted:
            interrupted = True
            break
        cell = plan.cells[index]
        sink = progress.cell_sink(index)
        try:
            result = orch.run(cell.request, events=sink, job_id=f"{job_id}.{index}" if job_id else None)
        except CodexError as exc:
            if exc.code == "interrupted":
                interrupted = True
                break
            warnings.append(f"cell {cell.position} failed: {exc}")
            log.warning("x/y/z cell %s failed: %s", cell.position, exc)
            progress.finished(index, sink.steps_in_cell)
            continue
        progress.finished(index, sink.steps_in_cell)
        results[index] = result
        if result.info.get("interrupted"):
            interrupted = True
            break
    done = [r for r in results if r is not None]
    if not done:
        if interrupted:
            return Result(info={"interrupted": True, "xyz": {"shape": [nx, ny, nz], "cells": []}})
        raise CodexError("no cell of the X/Y/Z plot produced an image: " + "; ".join(warnings))
    return _assemble(orch, plan, results, first_params, warnings, interrupted, progress, time.perf_counter() - t0)


def _assemble(orch: Any, plan: Plan, results: list[Any], params: Any, warnings: list[str], interrupted: bool,
              progress: PlotProgress, elapsed: float) -> "Result":
    """The grid (and sub-grids), saved, then the result: grids first, then every cell's images in grid order."""
    from .orchestrator import Result

    nx, ny, nz = plan.shape
    first = next((r for r in results if r is not None and r.pil_images), None) or next(r for r in results if r)
    cells_pil = [(r.pil_images[0] if r is not None and r.pil_images else None) for r in results]
    out = Result()
    layout: dict[str, Any] = {}
    base_fields = dict(first.info.get("infotext_fields") or {})
    fmt = params.output_format.value
    task = params.task.value
    grids = []
    drawer = getattr(orch, "grid_drawer", None)
    if drawer is not None and any(im is not None for im in cells_pil):
        axes = plan.axes
        main, subs, layout = drawer(cells_pil, (nx, ny, nz), axes[0].labels, axes[1].labels, axes[2].labels,
                                    draw_legend=plan.options["draw_legend"], margin=plan.options["margin_size"])
        grids.append((main, True))
        if plan.options["include_sub_grids"] and nz > 1:
            grids += [(g, False) for g in subs]
    elif drawer is None:
        warnings.append("no grid drawer: the plot's grid was not made")
    seed = next((r.info["seeds"][0] for r in results if r is not None and r.info.get("seeds")), None)
    for image, with_z in grids:
        fields = {**base_fields, "extra": {**(base_fields.get("extra") or {}), **plan.infotext_extra(with_z=with_z)}}
        out.pil_images.append(image)
        if orch.saver is not None:
            out.images.append(orch.saver.save_image(image, task=f"{task}-grids", seed=seed, fmt=fmt, fields=fields,
                                                    request=plan.request))
    cells_info = []
    for index, (cell, result) in enumerate(zip(plan.cells, results)):
        entry: dict[str, Any] = {"x": cell.ix, "y": cell.iy, "z": cell.iz,
                                 "labels": [a.labels[i] for a, i in zip(plan.axes, cell.position)]}
        if result is not None:
            start = len(out.pil_images)
            out.pil_images += result.pil_images
            out.images += result.images
            entry.update(images=list(range(start, len(out.pil_images))), seeds=result.info.get("seeds") or [],
                         skipped=result.info.get("skipped") or 0)
            warnings += [w for w in result.info.get("warnings") or [] if w not in warnings]
        else:
            entry.update(images=[], seeds=[], skipped=0, missing=True)
        cells_info.append(entry)
    grid_fields = {**base_fields, "extra": {**(base_fields.get("extra") or {}), **plan.infotext_extra(with_z=True)}}
    info = {k: v for k, v in first.info.items() if k not in ("request", "infotext_fields", "metrics", "warnings",
                                                                 "seeds", "interrupted", "skipped")}
    info.update({
        "seeds": [s for c in cells_info for s in c["seeds"][:1]],
        "request": plan.request,
        "infotext_fields": grid_fields,
        "warnings": warnings,
        "interrupted": interrupted,
        "skipped": sum(c["skipped"] for c in cells_info),
        "xyz": {"shape": [nx, ny, nz], "grids": len(grids), "layout": layout, "order": plan.order,
                "total_steps": progress.total,
                "axes": [{"axis": a.name, "type": a.kind, "label": a.label, "values": a.values, "labels": a.labels}
                         for a in plan.axes if a.kind != "nothing"],
                "include_sub_images": plan.options["include_sub_images"], "cells": cells_info},
        "metrics": {"total": round(elapsed, 4), "cells": sum(1 for r in results if r is not None)},
    })
    out.info = info
    progress.events.emit("done", images=len(out.pil_images), videos=0, interrupted=interrupted)
    return out


__all__ = ["AXES", "PlotProgress", "cell_errors", "prepare_plot", "run_plot"]
