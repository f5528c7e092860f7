"""The experiment mechanism: scales, seeds, results files, resume, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lowrank_es import experiments, results
from lowrank_es.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tmp_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_ES_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setattr(experiments, "checkpoint_dir", lambda name, scale: tmp_path / "ckpt" / f"{name}__{scale}")
    return tmp_path


def test_every_experiment_has_both_scales_and_a_notebook():
    found = experiments.available()
    assert "mechanics" in found
    for name, exp in found.items():
        assert {"quick", "reference"} <= set(exp.scales), name
        assert (ROOT / "notebooks" / f"{exp.notebook}.ipynb").exists(), f"{name}: notebook {exp.notebook} missing"
        assert exp.seeds["reference"] >= exp.seeds["quick"] >= 1, name


def test_committed_reference_results_name_their_provenance():
    for path in sorted((ROOT / "figures" / "results").glob("*__reference.json")):
        rec = json.loads(path.read_text())
        for key in ("experiment", "scale", "config", "seeds", "device", "cpu_count", "jax_version",
                    "code_version", "date", "wall_s", "data", "noise_auto"):
            assert key in rec, f"{path.name} lacks {key}"
        assert rec["scale"] == "reference" and path.name == f"{rec['experiment']}__reference.json"
        assert not rec["code_version"].endswith("-dirty"), f"{path.name} was run from an uncommitted tree"


def test_run_saves_config_seeds_and_metadata(tmp_figures):
    rec = experiments.run("mechanics", "quick", seeds=2, save=True, generations=4)
    path = results.results_path("mechanics", "quick")
    assert path.exists() and json.loads(path.read_text()) == rec
    assert rec["seeds"] == [0, 1] and rec["config"]["generations"] == 4
    assert rec["device"].startswith("cpu") or rec["device"]
    losses = np.asarray(rec["data"]["EGGROLL r=1"]["losses"])
    assert losses.shape == (2, 5) and np.all(np.isfinite(losses))


def test_same_seeds_same_results_and_resume_reuses_finished_jobs(tmp_figures):
    a = experiments.run("mechanics", "quick", seeds=1, resume=True, generations=3)
    cached = sorted(p.name for p in (tmp_figures / "ckpt" / "mechanics__quick").glob("*.json"))
    assert cached == ["eggroll_r_1.json", "eggroll_r_4.json", "openes_full_rank.json"]
    b = experiments.run("mechanics", "quick", seeds=1, resume=True, generations=3)
    c = experiments.run("mechanics", "quick", seeds=1, generations=3)
    assert a["data"] == b["data"] == c["data"]
    # a different config must not reuse the cache
    d = experiments.run("mechanics", "quick", seeds=1, resume=True, generations=2)
    assert len(d["data"]["EGGROLL r=1"]["losses"][0]) == 3


def test_resume_does_not_reuse_jobs_made_by_other_code(tmp_figures, monkeypatch):
    """A cached job is keyed on the package's sources too: after a code change the same config
    runs again instead of coming back stale."""
    experiments.run("mechanics", "quick", seeds=1, resume=True, generations=2)
    file = tmp_figures / "ckpt" / "mechanics__quick" / "eggroll_r_1.json"
    stored = json.loads(file.read_text())
    stored["result"]["losses"] = [[123.0, 123.0, 123.0]]  # what stale code would have left
    file.write_text(json.dumps(stored))
    assert experiments.run("mechanics", "quick", seeds=1, resume=True, generations=2)["data"]["EGGROLL r=1"]["losses"] == [[123.0] * 3]
    monkeypatch.setattr(experiments, "_package_digest", lambda: "other code")
    fresh = experiments.run("mechanics", "quick", seeds=1, resume=True, generations=2)["data"]["EGGROLL r=1"]["losses"]
    assert fresh != [[123.0] * 3] and len(fresh[0]) == 3


def test_a_recorded_run_is_replayed_only_where_asked(tmp_figures, tmp_path, monkeypatch):
    """The test session's hand-over between a notebook's two executions: a run under
    ``RECORD_JOBS`` writes its jobs and never reads them (a widget's timing stays a computation),
    one under ``REPLAY_JOBS`` reads them back and writes nothing; neither touches the resume cache."""
    shared = tmp_path / "shared"
    monkeypatch.setenv(experiments.RECORD_JOBS, str(shared))
    a = experiments.run("mechanics", "quick", seeds=1, generations=2)
    file = shared / "mechanics__quick" / "eggroll_r_1.json"
    stored = json.loads(file.read_text())
    stored["result"]["losses"] = [[123.0] * 3]  # a marker: only a replay can return it
    file.write_text(json.dumps(stored))
    assert experiments.run("mechanics", "quick", seeds=1, generations=2)["data"] == a["data"]
    file.write_text(json.dumps(stored))  # the recording run wrote its own result over the marker
    monkeypatch.delenv(experiments.RECORD_JOBS)
    monkeypatch.setenv(experiments.REPLAY_JOBS, str(shared))
    b = experiments.run("mechanics", "quick", seeds=1, generations=2)
    assert b["data"]["EGGROLL r=1"]["losses"] == [[123.0] * 3]
    assert b["data"]["EGGROLL r=4"] == a["data"]["EGGROLL r=4"]
    c = experiments.run("mechanics", "quick", seeds=1, generations=3)  # another config: computed, not written
    assert len(c["data"]["EGGROLL r=1"]["losses"][0]) == 4
    assert sorted(p.name for p in (shared / "mechanics__quick").glob("*.json")) == [
        "eggroll_r_1.json", "eggroll_r_4.json", "openes_full_rank.json"]
    assert len(json.loads(file.read_text())["result"]["losses"][0]) == 3 and not (tmp_figures / "ckpt").exists()


def test_bad_names_scales_and_seeds_are_clear_errors():
    with pytest.raises(ValueError, match="experiment must be one of"):
        experiments.run("no_such_experiment")
    with pytest.raises(ValueError, match="scale must be one of"):
        experiments.run("mechanics", "huge")
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        experiments.run("mechanics", "quick", seeds=0)
    with pytest.raises(FileNotFoundError, match="python -m lowrank_es run mechanics --scale quick"):
        results.load_results("mechanics", "quick", path="/nonexistent/mechanics__quick.json")


def test_command_line_runs_an_experiment_and_rejects_bad_input(tmp_figures, capsys, monkeypatch):
    monkeypatch.setitem(experiments.get("mechanics").scales, "quick",
                        experiments.get("mechanics").config("quick", generations=2))
    assert cli(["run", "mechanics", "--scale", "quick", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "mechanics at quick scale: 1 seeds" in out and "01_eggroll_mechanics__quick_regression.png" in out
    with pytest.raises(SystemExit):
        cli(["run", "mechanics", "--scale", "nope"])
    assert "scale must be one of" in capsys.readouterr().err


def test_results_are_json_types():
    data = {"a": np.arange(3), "b": np.float32(1.5), "c": (1, 2), "d": float("nan"), "e": {"f": np.bool_(True)}}
    assert results.to_jsonable(data) == {"a": [0, 1, 2], "b": 1.5, "c": [1, 2], "d": None, "e": {"f": True}}
