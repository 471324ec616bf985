"""kdbench capacity-gap --assistant (teacher assistants, TAKD): bad input (fast) and a real tiny sweep
on SST-2 (slow, under a minute): the 6-layer all-MiniLM-L6-v2 teacher teaches a 3-layer assistant (its
own first 3 layers), which teaches the 1-layer student; the curve record holds the direct and the
via-assistant point with their paired comparison, and --resume reruns only what is gone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kdbench.config import SuiteConfig, load_suite
from kdbench.report.record import read_record
from kdbench.sweeps.capacity_gap import via_suite
from kdbench.sweeps.capacity_law import vs_direct
from tests.cli_helpers import run_kdbench
from tests.test_capacity_gap import MINILM, TINY
from tests.test_capacity_law import ACCURACY, HOW, outcomes, table

ONE = ["--teachers", MINILM, "--student-layers", f"{MINILM}:1"]


def test_via_against_direct_on_constructed_outcomes():
    direct = outcomes(600, 0.7, 1)
    better = direct.copy()
    better[np.flatnonzero(~direct)[:100]] = True  # right on 100 more examples
    out = vs_direct(ACCURACY, {"big": table(better), "mid": table(direct)}, {"big": table(direct), "mid": table(direct)}, HOW)
    big, mid = out["big"], out["mid"]
    assert big["finding"] == "via the assistant is better" and big["delta"] == pytest.approx(100 / 600)
    assert big["test"].startswith("exact McNemar") and big["p_value"] <= big["p_holm"] < 0.05
    assert big["ci"][0] <= big["delta"] <= big["ci"][1] and big["n_samples"] == HOW.n_samples
    assert mid == {**mid, "delta": 0.0, "p_value": 1.0, "finding": "no significant difference"}
    worse = vs_direct(ACCURACY, {"big": table(direct)}, {"big": table(better)}, HOW)["big"]
    assert worse["finding"] == "direct is better" and worse["delta"] < 0


@pytest.mark.parametrize("args, message", [
    ([*ONE, "--assistant", "config:num_hidden_layers"], "--assistant 'config:num_hidden_layers' is not config:KEY=VALUE"),
    ([*ONE, "--assistant", "layers:x"], "--assistant 'layers:x' is not layers:K with K >= 1"),
    ([*ONE, "--assistant", "no-such-org/no-such-assistant"], "model 'no-such-org/no-such-assistant'"),
    ([*ONE, "--assistant", "layers:6"], f"the assistant layers:6 (22,713,216 parameters) is not smaller than teacher {MINILM}"),
    (["--teachers", MINILM, "--student-layers", f"{MINILM}:3", "--assistant", "layers:2"],
     f"the assistant layers:2 (15,615,360 parameters) is not larger than student {MINILM}@L3"),
    (["--teacher-layers", f"{MINILM}:6", "--student", "config:num_hidden_layers=1", "--assistant",
      "config:num_hidden_layers=3,intermediate_size=768"], "built from the assistant config:num_hidden_layers=3"),
    (["--teacher-layers", f"{MINILM}:6", "--student", "config:num_hidden_layers=1", "--assistant",
      "config:num_hidden_layers=1"], "the assistant config:num_hidden_layers=1 is also a student"),
])
def test_bad_assistant_is_one_line_exit_2(tmp_path, args, message):
    out = run_kdbench("capacity-gap", "--suite", "quickstart", *args, "--reports-dir", tmp_path / "reports")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "reports").exists()  # nothing half-written


def test_every_task_learns_from_its_own_assistant(tmp_path):
    """A via point of a suite of several tasks, some with their own teacher (per_task): each task's
    teacher is the assistant saved for that task, used as it is."""
    suite = SuiteConfig.model_validate(via_suite(load_suite("full").model_dump(mode="json"), tmp_path / "run"))
    for task in suite.tasks:
        teacher = suite.for_task(task).teacher
        assert (teacher.model, teacher.finetune, teacher.layers) == (str(tmp_path / "run" / "models" / task / "student"),
                                                                     None, None)


def test_resume_takes_no_new_assistant(tmp_path):
    folder = tmp_path / "capacity-gap-x"
    folder.mkdir()
    out = run_kdbench("capacity-gap", "--resume", folder, "--assistant", "layers:3")
    assert out.returncode == 2 and "drop --assistant" in out.stderr, out.stderr


@pytest.mark.slow
def test_assistant_sweep_records_compares_and_resumes(tmp_path):
    env = {"KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    reports = tmp_path / "reports"
    out = run_kdbench("capacity-gap", "--suite", "quickstart", *ONE, "--assistant", "layers:3", "--seeds", "0", *TINY,
                      "--reports-dir", reports, "--leaderboard-dir", tmp_path / "lb", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = reports.glob("capacity-gap-*")
    curve = json.loads((sweep_dir / "capacity_gap.json").read_text())
    assert curve["assistant"] == "layers:3"
    c = curve["tasks"]["sst2"]
    (direct,), (via,) = c["points"], c["assistant_points"]
    assert via["student"] == direct["student"] == f"{MINILM}@L1" and via["teacher"] == direct["teacher"] == MINILM
    assert via["assistant"] == "layers:3" and direct["student_params"] < via["assistant_params"] < direct["teacher_params"]
    assert via["direct_value"] == direct["value"] and via["ci"][0] <= via["value"] <= via["ci"][1]
    t = via["vs_direct"]
    assert t["test"].startswith("exact McNemar") and 0 <= t["p_value"] <= t["p_holm"] <= 1 and t["ci"][0] <= t["delta"] <= t["ci"][1]
    assert t["delta"] == pytest.approx(via["value"] - direct["value"]) and t["finding"] in (
        "via the assistant is better", "direct is better", "no significant difference")
    assert (t["finding"] == "no significant difference") == (t["p_holm"] >= 0.05)

    # provenance: the assistant was distilled from the (fine-tuned) teacher, and taught the via point's student
    record = lambda run: json.loads((sweep_dir / run["path"] / "report.json").read_text())  # noqa: E731
    (taught,), (via_run,), (direct_run,) = via["assistant_runs"], via["runs"], direct["runs"]
    a, v, d = record(taught), record(via_run), record(direct_run)
    assert a["config"]["teacher"]["model"] == MINILM and a["config"]["student"] == {**a["config"]["student"],
                                                                                  "builder": "layer_selection", "layers": [0, 1, 2]}
    assert a["models"]["teacher"]["cache_key"] == d["models"]["teacher"]["cache_key"]  # the teacher fine-tuned once
    assert a["models"]["teacher"]["reused_from_cache"] and a["models"]["student"]["method"] == "kd"
    assistant_folder = (sweep_dir / taught["path"] / "models" / "sst2" / "student").resolve()
    assert Path(v["models"]["teacher"]["id"]) == assistant_folder and v["config"]["teacher"]["finetune"] is None
    assert v["models"]["teacher"]["params"] == a["models"]["student"]["params"] == via["assistant_params"]
    assert v["results"]["sst2"]["teacher"]["accuracy"]["value"] == a["results"]["sst2"]["student"]["accuracy"]["value"]
    assert v["models"]["student"]["params"] == d["models"]["student"]["params"]  # the same student
    assert "via assistant layers:3" in out.stdout and t["finding"] in out.stdout
    page = (sweep_dir / "report.html").read_text()
    assert "Through the assistant" in page and t["finding"] in page
    (curve_entry,) = read_record(sweep_dir / "report.json")["capacity_gap"]["sst2"]["curves"]  # validates (schema)
    (lb,) = curve_entry["via_assistant"]
    assert lb == {"teacher": MINILM, "assistant": "layers:3", "assistant_params": via["assistant_params"],
                  "value": via["value"], "ci": via["ci"], "delta": t["delta"], "p_holm": t["p_holm"], "finding": t["finding"]}

    # resume: the via point's run is gone; only it reruns, from the same assistant
    shutil.rmtree(sweep_dir / via_run["path"])
    out = run_kdbench("capacity-gap", "--resume", sweep_dir, "--leaderboard-dir", tmp_path / "lb", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count(": skipped (finished") == 2 and "-via-layers-3-seed0: running" in out.stderr
    again = json.loads((sweep_dir / "capacity_gap.json").read_text())["tasks"]["sst2"]["assistant_points"][0]
    assert [r["status"] for r in again["runs"] + again["assistant_runs"]] == ["ran", "skipped"]
    assert Path(record(again["runs"][0])["models"]["teacher"]["id"]) == assistant_folder
    # resumed again with nothing lost: every point, the via point too, is finished
    out = run_kdbench("capacity-gap", "--resume", sweep_dir, "--leaderboard-dir", tmp_path / "lb", env=env)
    assert out.returncode == 0 and out.stderr.count(": skipped (finished") == 3, out.stderr[-3000:]


def test_help_names_the_assistant():
    out = run_kdbench("capacity-gap", "--help")
    assert out.returncode == 0 and "--assistant SPEC" in out.stdout and "layers:K" in out.stdout
