"""kdbench capacity-gap --assistant on a real tiny SST-2 sweep (slow, under a minute): the 6-layer
all-MiniLM-L6-v2 teacher teaches a 3-layer assistant (its own first 3 layers), which teaches the 1-layer
student; the curve record holds the direct and the via-assistant point with their paired comparison, and
--resume reruns only what is gone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kdbench.report.record import read_record
from tests.helpers.capacity_gap import MINILM, TINY
from tests.helpers.cli import run_kdbench

ONE = ["--teachers", MINILM, "--student-layers", f"{MINILM}:1"]


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
