"""The markdown summary of one sweep: the checkpoint chosen, best run per task, change against
the previous sweep in the same results table, and the failures.

"Best" is the highest top-1 among the sweep's ``ok`` and ``skipped`` rows (a skipped row carries
the metrics of the run it stands for), ties broken by top-5 then mean class accuracy. The previous
sweep is the one whose rows precede this sweep's in the table (rows are appended in time order).
Accuracies are shown as percentages; changes as percentage points.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

SCORED = ("ok", "skipped")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _order(row: dict[str, Any]) -> tuple:
    return tuple(-1.0 if row[m] is None else row[m] for m in ("top1", "top5", "mean_class_accuracy"))


def best_per_task(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """task -> its best scored row (first best in row order), tasks in first-seen order."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["status"] not in SCORED or row["top1"] is None:
            continue
        current = best.get(row["task"])
        if current is None or _order(row) > _order(current):
            best[row["task"]] = row
    return best


def previous_sweep_id(table: pa.Table, sweep_id: str) -> str | None:
    """The sweep recorded just before ``sweep_id`` in ``table`` (None for the first sweep)."""
    ids = table.column("sweep_id").to_pylist()
    before = ids[: ids.index(sweep_id)] if sweep_id in ids else ids
    return before[-1] if before else None


def _change(now: float | None, then: float | None) -> str:
    if now is None or then is None:
        return "new" if then is None else "n/a"
    return f"{100 * (now - then):+.1f}"


def sweep_summary(table: pa.Table, sweep_id: str, *, name: str, checkpoint_note: str,
                  swept: list[str]) -> str:
    """Markdown for sweep ``sweep_id`` of ``table`` (see the module docstring)."""
    rows = [r for r in table.to_pylist() if r["sweep_id"] == sweep_id]
    if not rows:
        return f"# Fine-tune sweep `{name}` ({sweep_id})\n\nNo runs."
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    head = rows[0]
    lines = [
        f"# Fine-tune sweep `{name}` ({sweep_id})", "",
        f"- checkpoint: `{head['checkpoint']}` (sha256 `{head['checkpoint_digest'][:12]}`), "
        f"from `{head['checkpoint_source']}`: {checkpoint_note}",
        f"- runs: {len(rows)}: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped "
        "(already done for this checkpoint and config)",
    ]
    prev_id = previous_sweep_id(table, sweep_id)
    prev_rows = [r for r in table.to_pylist() if r["sweep_id"] == prev_id] if prev_id else []
    prev_best = best_per_task(prev_rows)
    lines.append(f"- previous sweep: {prev_id}" if prev_id else "- previous sweep: none (first in this table)")
    lines += ["", "## Best run per task (top-1 %, change in points against the previous sweep's best)", ""]
    cols = ["task", "run", "top-1", "top-5", "mean class acc.", *swept, "previous top-1", "change"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for task, row in best_per_task(rows).items():
        before = prev_best.get(task)
        then = before["top1"] if before else None
        cells = [task, f"`{row['run_id']}`" + (" (skipped)" if row["status"] == "skipped" else ""),
                 _pct(row["top1"]), _pct(row["top5"]), _pct(row["mean_class_accuracy"]),
                 *(str(row.get(f)) for f in swept), _pct(then), _change(row["top1"], then)]
        lines.append("| " + " | ".join(cells) + " |")
    unscored = sorted({r["task"] for r in rows} - set(best_per_task(rows)))
    if unscored:
        lines += ["", f"No successful run for: {', '.join(unscored)}."]
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""]
        for r in failed:
            error = (r["error"] or "").strip().splitlines()
            lines.append(f"- `{r['run_id']}` ({r['task']}): {error[-1][:300] if error else 'no message'}")
    return "\n".join(lines) + "\n"
