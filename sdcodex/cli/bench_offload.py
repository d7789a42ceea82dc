"""`sdcodex benchmark --offload`: one model run under each offloading policy (none, model, group, sequential) side
by side — time per run and peak device memory (CUDA: torch.cuda.max_memory_allocated; CPU: the peak of the
process's resident memory above what it held when the run started). Policies the device cannot run are listed
with the reason.
"""
from __future__ import annotations

import re
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sdcodex.core.errors import CodexError

SCHEMA = "sdcodex.benchmark.offload/1"
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


# --------------------------------------------------------------------------------------------- peak memory
def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


@contextmanager
def peak_memory(device: str) -> Iterator[dict[str, Any]]:
    """Measure the block's peak memory into the yielded dict: `peak_mb` (the peak while it ran), `delta_mb` (the
    peak above what was held when it started) and `measure` (what was measured)."""
    import torch

    out: dict[str, Any] = {"peak_mb": None, "delta_mb": None, "measure": None}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        out.update(peak_mb=round(peak / 2**20, 1), delta_mb=round((peak - before) / 2**20, 1),
                   measure="CUDA: torch.cuda.max_memory_allocated during the run (weights on the device included); "
                           "delta: above what was allocated when it started")
        return
    try:
        _CLEAR_REFS.write_text("5")          # Linux: reset the process's resident high-water mark (VmHWM)
        before = _status_kib("VmRSS")
    except OSError:
        before = None
    yield out
    peak = _status_kib("VmHWM") if before is not None else None
    if peak is not None:
        out.update(peak_mb=round(peak / 1024, 1), delta_mb=round((peak - before) / 1024, 1),
                   measure="CPU: the process's peak resident memory during the run (VmHWM after resetting it; "
                           "weights in RAM included); delta: above the resident memory when it started")
    else:
        out["measure"] = "not measured: needs Linux /proc/self/clear_refs"


# --------------------------------------------------------------------------------------------------- running
def run_policies(orch: Any, case: Any, policies: list[str], *, repeat: int, seed: int,
                 log: Any = None) -> list[dict[str, Any]]:
    """For each policy: one warm-up run (installs the policy's hooks), then `repeat` measured runs."""
    import torch

    from sdcodex.engines.memory import offload_unavailable

    kind = torch.device(orch.device).type
    rows: list[dict[str, Any]] = []
    for policy in policies:
        row: dict[str, Any] = {"engine": case.engine, "model": case.entry.name, "task": case.task.value,
                               "width": case.width, "height": case.height, "steps": case.steps, "policy": policy}
        reason = offload_unavailable(policy, kind)
        if reason:
            rows.append({**row, "status": "skipped", "reason": f"{reason}; this device is {orch.device}"})
            continue
        request = {**case.request(seed), "offload": policy}
        try:
            warm = orch.run(request)
            walls, denoise, peaks, deltas = [], [], [], []
            measure = None
            for k in range(repeat):
                with peak_memory(orch.device) as mem:
                    t = time.perf_counter()
                    result = orch.run(request)
                    walls.append(time.perf_counter() - t)
                denoise.append(result.info["metrics"].get("denoise") or 0.0)
                peaks.append(mem["peak_mb"])
                deltas.append(mem["delta_mb"])
                measure = mem["measure"]
                if log:
                    log(f"  {case.entry.name} offload={policy}: run {k + 1}/{repeat} {walls[-1]:.3f}s "
                        f"peak {mem['peak_mb']} MB")
        except CodexError as exc:
            rows.append({**row, "status": "error", "reason": str(exc)})
            continue
        memory = warm.info.get("memory") or {}
        known = [p for p in peaks if p is not None]
        known_delta = [d for d in deltas if d is not None]
        rows.append({**row, "status": "ok", "effective": memory.get("offload"),
                     "resident_mb": memory.get("resident_mb"),
                     "attention": (warm.info.get("attention") or {}).get("backend"),
                     "compile": bool((warm.info.get("compile") or {}).get("enabled")), "time_s": round(statistics.median(walls), 4),
                     "denoise_s": round(statistics.median(denoise), 4), "peak_mb": max(known) if known else None,
                     "peak_delta_mb": max(known_delta) if known_delta else None,
                     "peak_measure": measure, "runs_s": [round(w, 4) for w in walls]})
    return rows


def format_offload_table(report: dict[str, Any]) -> str:
    """The policies side by side: one line per model x policy; skipped policies with their reason."""
    env = report.get("environment", {})
    lines = [f"sdcodex benchmark --offload on {env.get('device', '?')} (torch {env.get('torch', '?')}, diffusers "
             f"{env.get('diffusers', '?')}): median of {report['repeat']} run(s) after one warm-up per policy"]
    head = (f"{'model':24s} {'size':>9s} {'steps':>5s} {'policy':10s} {'time s':>8s} {'denoise s':>9s} "
            f"{'peak MB':>9s} {'+delta MB':>9s} {'x none':>7s}")
    lines += [head, "-" * len(head)]
    base: dict[str, dict[str, Any]] = {}
    for row in report["rows"]:
        if row["policy"] == "none" and row["status"] == "ok":
            base[row["model"]] = row
    for row in report["rows"]:
        lead = f"{row['model'][:24]:24s} {row['width']}x{row['height']:<4d} {row['steps']:>5d} {row['policy']:10s}"
        if row["status"] != "ok":
            lines.append(f"{lead} {row['status']}: {row['reason']}")
            continue
        ref = base.get(row["model"])
        ratio = f"{row['time_s'] / ref['time_s']:.2f}" if ref and ref["time_s"] else "-"
        peak = "-" if row["peak_mb"] is None else f"{row['peak_mb']:.1f}"
        delta = "-" if row["peak_delta_mb"] is None else f"{row['peak_delta_mb']:.1f}"
        lines.append(f"{lead} {row['time_s']:>8.3f} {row['denoise_s']:>9.3f} {peak:>9s} {delta:>9s} {ratio:>7s}")
    measures = sorted({r["peak_measure"] for r in report["rows"] if r.get("peak_measure")})
    for measure in measures:
        lines.append(f"peak MB — {measure}")
    for note in report.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


__all__ = ["SCHEMA", "format_offload_table", "peak_memory", "run_policies"]
