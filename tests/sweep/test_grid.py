"""Sweep YAML -> runs: the grid's cartesian product in a stable order, stable ids, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vimpac_core.errors import ConfigError
from vimpac_core.sweep.grid import expand_runs, load_sweep, swept_fields


def _sweep_file(tmp_path, **over) -> str:
    preset = tmp_path / "ucf.yaml"
    preset.write_text(yaml.safe_dump({"lr": 0.1, "epochs": 50, "output": "runs/x", "load": "ck", "clip_len": 5}))
    doc = {
        "name": "t", "output": str(tmp_path / "sweep"), "base": {"epochs": 2},
        "grid": {"lr": [1e-4, 5e-5], "seed": [0, 1, 2]},
        "tasks": {"ucf": {"preset": str(preset), "data": "tokens/ucf"},
                  "hmdb": {"data": "tokens/hmdb", "clip_len": 3, "grid": {"seed": 7, "frame_rate": [2, 4]}}},
        **over,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_tasks_times_grid_in_a_stable_order(tmp_path):
    sweep = load_sweep(_sweep_file(tmp_path))
    runs = expand_runs(sweep)
    assert [(r.task, r.swept) for r in runs] == [
        ("ucf", {"lr": 1e-4, "seed": 0}), ("ucf", {"lr": 1e-4, "seed": 1}), ("ucf", {"lr": 1e-4, "seed": 2}),
        ("ucf", {"lr": 5e-5, "seed": 0}), ("ucf", {"lr": 5e-5, "seed": 1}), ("ucf", {"lr": 5e-5, "seed": 2}),
        ("hmdb", {"lr": 1e-4, "seed": 7, "frame_rate": 2}), ("hmdb", {"lr": 1e-4, "seed": 7, "frame_rate": 4}),
        ("hmdb", {"lr": 5e-5, "seed": 7, "frame_rate": 2}), ("hmdb", {"lr": 5e-5, "seed": 7, "frame_rate": 4}),
    ]
    # preset < base < task fields < grid point; the preset's output/load are the sweep's to set
    assert runs[0].config == {"lr": 1e-4, "epochs": 2, "clip_len": 5, "data": "tokens/ucf", "seed": 0}
    assert runs[-1].config == {"data": "tokens/hmdb", "clip_len": 3, "epochs": 2, "lr": 5e-5, "seed": 7,
                               "frame_rate": 4}
    assert swept_fields(sweep) == ["lr", "seed", "frame_rate"]
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == len(ids) and ids[0].startswith("ucf-") and len(ids[0]) == len("ucf-") + 10
    assert [r.run_id for r in expand_runs(load_sweep(_sweep_file(tmp_path)))] == ids  # stable


def test_a_changed_config_changes_only_its_runs_ids(tmp_path):
    before = {r.swept["seed"]: r.run_id for r in expand_runs(load_sweep(_sweep_file(tmp_path))) if r.task == "ucf"
              and r.swept["lr"] == 1e-4}
    after = expand_runs(load_sweep(_sweep_file(tmp_path, grid={"lr": [1e-4], "seed": [2, 3]})))
    got = {r.swept["seed"]: r.run_id for r in after if r.task == "ucf"}
    assert got[2] == before[2] and got[3] not in before.values()


def test_a_list_valued_field_is_swept_as_a_list_of_lists(tmp_path):
    sweep = load_sweep({"output": "o", "grid": {"last_test_clips": [[1, 2], [5, 10]]}, "tasks": {"a": {}}})
    assert [r.config["last_test_clips"] for r in expand_runs(sweep)] == [[1, 2], [5, 10]]


def test_normalize_canonicalises_configs_before_ids(tmp_path):
    sweep = load_sweep({"output": "o", "grid": {"lr": ["1e-4", 0.0001]}, "tasks": {"a": {}}})
    assert len({r.run_id for r in expand_runs(sweep)}) == 2

    def normalize(flat):
        if float(flat["lr"]) <= 0:
            raise ConfigError(f"lr: must be > 0 (got {flat['lr']})")
        return {**flat, "lr": float(flat["lr"])}

    with pytest.raises(ConfigError, match="give the same config"):
        expand_runs(sweep, normalize)
    (run,) = expand_runs(load_sweep({"output": "o", "grid": {"lr": ["1e-4"]}, "tasks": {"a": {}}}), normalize)
    assert run.config == {"lr": "1e-4"} and run.canonical == {"lr": 1e-4}  # runs get what was written
    bad = load_sweep({"output": "o", "grid": {"lr": [1e-4, -1]}, "tasks": {"a": {}}})
    with pytest.raises(ConfigError, match=r'task a at \{"lr":-1\}: lr: must be > 0'):
        expand_runs(bad, normalize)


@pytest.mark.parametrize(("doc", "message"), [
    ({"output": "o", "tasks": {}}, "tasks: .*at least 1"),
    ({"output": "o", "tasks": {"a b": {}}}, "task name 'a b'"),
    ({"output": "o", "tasks": {"a": {}}, "grdi": {}}, "grdi: Extra inputs"),
    ({"output": "o", "tasks": {"a": {}}, "grid": {"lr": []}}, r"grid.lr: an empty list"),
    ({"output": "o", "tasks": {"a": {}}, "grid": {"seed": [1, 1]}}, r"grid.seed: .* lists a value twice"),
    ({"output": "o", "tasks": {"a": {"output": "x"}}}, r"tasks.a.output: set by the sweep"),
    ({"output": "o", "tasks": {"a": {}}, "base": {"load": "x"}}, r"base.load: set by the sweep"),
    ({"output": "o", "tasks": {"a": {"grid": {"output": ["x"]}}}}, r"tasks.a.grid.output: set by the sweep"),
])
def test_config_errors_name_the_field(doc, message):
    with pytest.raises(ConfigError, match=message):
        expand_runs(load_sweep(doc))


def test_a_missing_preset_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        expand_runs(load_sweep({"output": "o", "tasks": {"a": {"preset": str(tmp_path / "nope.yaml")}}}))


def test_shipped_sweeps_expand_to_valid_fine_tune_configs():
    from vimpac_core.sweep.plan import canonical_finetune

    repo = Path(__file__).resolve().parents[2]
    example = expand_runs(load_sweep(repo / "configs" / "sweeps" / "example.yaml"), canonical_finetune)
    assert [r.task for r in example] == ["ucf101"] * 4 + ["hmdb51"] * 8
    assert {r.canonical["clip_len"] for r in example if r.task == "hmdb51"} == {5, 10}
    assert {r.canonical["dataset"] for r in example} == {"ucf101", "hmdb51"}
    assert len(expand_runs(load_sweep(repo / "configs" / "sweeps" / "demo.yaml"), canonical_finetune)) == 4
