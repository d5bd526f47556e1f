"""The markdown summary: best run per task, change against the previous sweep, failures."""

from __future__ import annotations

from tests.sweep.helpers import save_tiny_checkpoint
from vimpac_core.sweep import append_results, load_sweep, plan_sweep, sweep_summary


def _sweep(tmp_path):
    return load_sweep({"name": "nightly", "output": str(tmp_path / "sweep"), "grid": {"lr": [1e-4, 5e-5]},
                       "tasks": {"ucf": {"data": "d/u"}, "hmdb": {"data": "d/h"}}})


def _metrics(top1):
    return {"top1": top1, "top5": min(1.0, top1 + 0.3), "mean_class_accuracy": top1 - 0.05}


def test_summary_text_best_per_task_and_change_against_the_previous_sweep(tmp_path):
    pre = tmp_path / "pre"
    save_tiny_checkpoint(pre / "stage1" / "checkpoints" / "final", step=4)
    sweep = _sweep(tmp_path)
    first = plan_sweep(sweep, f"latest:{pre}")
    ucf1, ucf2, hmdb1, hmdb2 = first.runs
    append_results(sweep.output, [
        first.row(ucf1, "ok", metrics=_metrics(0.40), wall_time_s=3.0),
        first.row(ucf2, "ok", metrics=_metrics(0.55), wall_time_s=3.0),
        first.row(hmdb1, "failed", error="Traceback...\nFileNotFoundError: d/h/shards: no such folder", wall_time_s=1.0),
        first.row(hmdb2, "failed", error="RuntimeError: out of memory", wall_time_s=1.0),
    ])
    save_tiny_checkpoint(pre / "stage2" / "checkpoints" / "step_00000006", step=6)
    second = plan_sweep(sweep, f"latest:{pre}")
    table = append_results(sweep.output, [
        second.row(second.runs[0], "ok", metrics=_metrics(0.60), wall_time_s=3.0),
        second.row(second.runs[1], "ok", metrics=_metrics(0.50), wall_time_s=3.0),
        second.row(second.runs[2], "ok", metrics=_metrics(0.30), wall_time_s=3.0),
        second.row(second.runs[3], "failed", error="RuntimeError: boom", wall_time_s=1.0),
    ])
    text = sweep_summary(table, second.sweep_id, name="nightly", checkpoint_note=second.checkpoint.note,
                         swept=second.swept)
    ck = pre / "stage2" / "checkpoints" / "step_00000006"
    assert text.splitlines()[:5] == [
        f"# Fine-tune sweep `nightly` ({second.sweep_id})", "",
        f"- checkpoint: `{ck}` (sha256 `{second.digest[:12]}`), from `latest:{pre}`: stage 2 of 2: newest complete "
        f"checkpoint step_00000006 (step 6) in {ck.parent}",
        "- runs: 4: 3 ok, 1 failed, 0 skipped (already done for this checkpoint and config)",
        f"- previous sweep: {first.sweep_id}",
    ]
    assert "| task | run | top-1 | top-5 | mean class acc. | lr | previous top-1 | change |" in text
    assert f"| ucf | `{second.runs[0].run.run_id}` | 60.0 | 90.0 | 55.0 | 0.0001 | 55.0 | +5.0 |" in text
    assert f"| hmdb | `{second.runs[2].run.run_id}` | 30.0 | 60.0 | 25.0 | 0.0001 | n/a | new |" in text
    assert text.endswith(f"## Failed runs\n\n- `{second.runs[3].run.run_id}` (hmdb): RuntimeError: boom\n")

    first_text = sweep_summary(table, first.sweep_id, name="nightly", checkpoint_note=first.checkpoint.note,
                               swept=first.swept)
    assert "- previous sweep: none (first in this table)" in first_text
    assert f"| ucf | `{ucf2.run.run_id}` | 55.0 |" in first_text
    assert "No successful run for: hmdb." in first_text
    assert "FileNotFoundError: d/h/shards: no such folder" in first_text  # the error's last line
