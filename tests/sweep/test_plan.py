"""Run keys, the results table and the skip logic: only new work runs again."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

from tests.sweep.helpers import save_tiny_checkpoint
from vimpac_core.errors import ConfigError
from vimpac_core.sweep import append_results, load_sweep, plan_sweep, read_results
from vimpac_core.sweep.checkpoints import checkpoint_digest
from vimpac_core.sweep.grid import RunSpec
from vimpac_core.sweep.results import FIXED_SCHEMA, result_row


def _sweep(tmp_path, **over):
    doc = {"name": "t", "output": str(tmp_path / "sweep"), "grid": {"lr": [1e-4, 5e-5]},
           "tasks": {"a": {"data": "d/a"}, "b": {"data": "d/b"}}, **over}
    return load_sweep(doc)


def _record(plan, statuses):
    rows = [plan.row(p, s, metrics={"top1": 0.5, "top5": 0.9, "mean_class_accuracy": 0.4} if s == "ok" else None,
                     wall_time_s=1.5, error=None if s == "ok" else "RuntimeError: boom")
            for p, s in zip(plan.todo(), statuses, strict=True)]
    return append_results(plan.sweep.output, rows)


def test_ok_runs_are_skipped_failed_ones_rerun_and_a_new_checkpoint_is_new_work(tmp_path):
    pre = tmp_path / "pre"
    ck = save_tiny_checkpoint(pre / "checkpoints" / "step_00000002", step=2)
    sweep = _sweep(tmp_path)
    first = plan_sweep(sweep, f"latest:{pre}")
    assert first.digest == checkpoint_digest(ck) and first.checkpoint.path == ck
    assert first.load == str(tmp_path / "sweep" / "checkpoints" / first.digest[:16])  # pinned
    assert [p.output for p in first.runs][0] == f"{tmp_path}/sweep/runs/{first.runs[0].run.run_id}/{first.digest[:12]}"
    assert len(first.todo()) == 4 and first.skipped_rows() == []
    assert first.finetune_config(first.runs[0]) == {"data": "d/a", "lr": 1e-4, "output": first.runs[0].output,
                                                    "load": first.load}
    _record(first, ["ok", "failed", "ok", "ok"])

    again = plan_sweep(sweep, f"latest:{pre}")
    assert again.sweep_id != first.sweep_id and again.digest == first.digest
    assert [p.run.run_id for p in again.todo()] == [first.runs[1].run.run_id]  # only the failed one
    skipped = again.skipped_rows()
    assert [r["status"] for r in skipped] == ["skipped"] * 3 and all(r["top1"] == 0.5 for r in skipped)
    assert skipped[0]["output"] == first.runs[0].output and skipped[0]["sweep_id"] == again.sweep_id

    save_tiny_checkpoint(pre / "checkpoints" / "step_00000004", step=4)  # pre-training moved on
    newer = plan_sweep(sweep, f"latest:{pre}")
    assert newer.digest != first.digest and len(newer.todo()) == 4
    assert {p.run.run_id for p in newer.runs} == {p.run.run_id for p in first.runs}  # same configs, new keys
    assert {p.key for p in newer.runs}.isdisjoint(p.key for p in first.runs)
    # an explicit folder with the same weights is the same work, and is not pinned
    same = plan_sweep(sweep, str(ck))
    assert len(same.todo()) == 1 and same.load == str(ck)


def test_results_table_columns_and_atomic_append(tmp_path):
    ck = save_tiny_checkpoint(tmp_path / "ck" / "final", step=1)
    plan = plan_sweep(_sweep(tmp_path, grid={"lr": [1e-4], "last_test_clips": [[1, 2]]}), str(ck))
    table = _record(plan, ["ok", "failed"])
    assert table.column_names == [*FIXED_SCHEMA.names, "lr", "last_test_clips"]
    on_disk = pq.read_table(tmp_path / "sweep" / "results.parquet")
    assert on_disk.equals(table) and read_results(str(tmp_path / "sweep")).num_rows == 2
    first = on_disk.to_pylist()[0]
    assert (first["status"], first["top1"], first["lr"], first["last_test_clips"]) == ("ok", 0.5, 1e-4, "[1,2]")
    assert first["config"] == '{"data":"d/a","last_test_clips":[1,2],"lr":0.0001}'  # as written
    assert first["checkpoint"] == str(ck) and first["checkpoint_source"] == str(ck)
    assert on_disk.to_pylist()[1]["error"] == "RuntimeError: boom"
    # a later sweep sweeping other fields: both kept, missing cells empty
    other = plan_sweep(_sweep(tmp_path, grid={"seed": [3], "last_test_clips": [5]}), str(ck))
    table = _record(other, ["ok", "ok"])
    assert table.num_rows == 4 and table.column("seed").to_pylist() == [None, None, 3, 3]
    assert table.column("last_test_clips").to_pylist() == ["[1,2]", "[1,2]", "[5]", "[5]"]  # canonical: a list
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["results.parquet"]  # no temporaries


def test_a_missing_checkpoint_or_bad_config_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint: sweep 't' names none"):
        plan_sweep(_sweep(tmp_path))
    with pytest.raises(ConfigError, match="base.output"):
        plan_sweep(_sweep(tmp_path, base={"output": "x"}), "latest:/nonexistent")  # config first
    assert not (tmp_path / "sweep").exists()


def test_a_swept_column_whose_type_changes_becomes_text(tmp_path):
    started = datetime.now(timezone.utc)
    rows = []
    for value in (7, [7, 8]):
        run = RunSpec("a-0", "a", {"x": value}, {"x": value}, {"x": value})
        rows.append(result_row(sweep_id=str(value), started_at=started, run=run, key="k", checkpoint="c",
                               checkpoint_digest="d", checkpoint_source="c", status="ok", output="o", swept=["x"]))
    append_results(str(tmp_path), rows[:1])
    assert append_results(str(tmp_path), rows[1:]).column("x").to_pylist() == ["7", "[7,8]"]


def test_run_configs_are_validated_as_fine_tune_configs_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"task a at \{\"lr\":-1.0\}: invalid fine-tuning config: lr"):
        plan_sweep(_sweep(tmp_path, grid={"lr": [1e-4, -1.0]}), "latest:/nonexistent")
    with pytest.raises(ConfigError, match="data"):
        plan_sweep(load_sweep({"output": str(tmp_path / "o"), "tasks": {"a": {}}}), "latest:/nonexistent")
    sweep = _sweep(tmp_path, grid={"lr": ["1e-4", 1.0e-4]})  # YAML reads 1e-4 as text: the same value
    with pytest.raises(ConfigError, match="give the same config"):
        plan_sweep(sweep, "latest:/nonexistent")
