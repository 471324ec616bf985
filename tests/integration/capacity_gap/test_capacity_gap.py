"""kdbench capacity-gap: plan parsing and bad input (fast), and a tiny real grid: two students (the first
1 and 2 layers of all-MiniLM-L6-v2) × two truncations of it as teachers × two seeds: each teacher
fine-tuned once, each student's baseline trained once per seed, the verdicts and the fit in the curve
record, the grid on the leaderboard, and an interrupted sweep resumed without recomputing its
finished points (slow). The statistics on constructed outcomes: tests/unit/sweeps/test_capacity_law.py."""
from __future__ import annotations

import json
import shutil

import pytest

from kdbench.report.record import read_record
from tests.helpers.capacity_gap import MINILM, TINY
from tests.helpers.cli import run_kdbench


@pytest.mark.parametrize("args, message", [
    (["--teachers", "no-such-org/no-such-model", "--student", "config:num_hidden_layers=1"],
     "model 'no-such-org/no-such-model': cannot load its config"),
    (["--teacher-layers", f"{MINILM}:1,2"], "needs a fixed student: student.builder layer_selection"),
    (["--teacher-layers", f"{MINILM}:one"], "is not MODEL:K1,K2"),
    (["--teacher-layers", f"{MINILM}:1,9", "--student", "config:num_hidden_layers=1"],
     f"capacity-gap teacher {MINILM}@L9: suite quickstart, task sst2: teacher.layers 9: model '{MINILM}' has 6 layers"),
    (["--teachers", f"{MINILM},sentence-transformers/paraphrase-MiniLM-L3-v2", "--student",
      "config:num_hidden_layers=1"], "fixed only when all teachers are one model truncated"),
    (["--teacher-layers", f"{MINILM}:1", "--students", "no-such-org/no-such-student,config:num_hidden_layers=1"],
     "model 'no-such-org/no-such-student'"),
    (["--teacher-layers", f"{MINILM}:1", "--students", "config:num_hidden_layers=1,config:num_hidden_layers=1"],
     "a student is named twice"),
    (["--teacher-layers", f"{MINILM}:1", "--student-layers", f"{MINILM}:2,9"],
     f"capacity-gap teacher {MINILM}@L1 with student {MINILM}@L9:"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    out = run_kdbench("capacity-gap", "--suite", "quickstart", *args, "--reports-dir", tmp_path / "reports")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "reports").exists()  # nothing half-written


@pytest.mark.slow
def test_grid_sweep_runs_resumes_and_renders(tmp_path):
    env = {"KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    reports, board = tmp_path / "reports", tmp_path / "leaderboards"
    out = run_kdbench("capacity-gap", "--suite", "quickstart", "--teacher-layers", f"{MINILM}:1,2",
                      "--student-layers", f"{MINILM}:1,2", "--seeds", "0,1", "--jobs", "2", *TINY,
                      "--set", "baseline=true", "--reports-dir", reports, "--leaderboard-dir", board, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = reports.glob("capacity-gap-*")
    curve = json.loads((sweep_dir / "capacity_gap.json").read_text())
    students, teachers = [f"{MINILM}@L1", f"{MINILM}@L2"], [f"{MINILM}@L1", f"{MINILM}@L2"]
    assert curve["students"] == students and curve["teachers"] == teachers
    c = curve["tasks"]["sst2"]
    assert c["metric"] == "accuracy" and c["higher_is_better"] and "seeds resampled" in c["ci_method"]
    assert [(p["student"], p["teacher"]) for p in c["points"]] == [(s, t) for s in students for t in teachers]
    assert c["points"][0]["student_params"] < c["points"][2]["student_params"]  # 1 layer < 2 layers
    assert c["points"][0]["teacher_params"] < c["points"][1]["teacher_params"]
    records = {}
    for point in c["points"]:
        assert point["n_seeds"] == 2 and len(point["runs"]) == 2 and point["teacher_finetuned_once"]
        assert point["ci"][0] <= point["value"] <= point["ci"][1] and point["ci"][0] < point["ci"][1]
        for run in point["runs"]:
            records[point["student"], point["teacher"], run["seed"]] = json.loads(
                (sweep_dir / run["path"] / "report.json").read_text())
    for (student, teacher, seed), record in records.items():
        assert record["config"]["distill"]["seed"] == seed and record["config"]["seed"] == 0
        assert record["config"]["student"]["layers"] == list(range(students.index(student) + 1))
        # each teacher fine-tuned once for the whole grid: every later point reused it and its logits
        if (student, seed) != (students[0], 0):
            assert record["models"]["teacher"]["reused_from_cache"] and record["models"]["teacher"]["train_logits_reused"]
        # the no-KD baseline does not depend on the teacher: trained in the first teacher's points only
        assert ("baseline" in record["results"]["sst2"]) == (teacher == teachers[0])
    for s in c["students"]:
        assert s["top_teacher"] in teachers and s["top_teacher"] in s["best_tier"]
        assert s["baseline"]["ci"][0] <= s["baseline"]["value"] <= s["baseline"]["ci"][1]
        (cmp,) = s["comparisons"]
        assert cmp["in_tier"] == (cmp["teacher"] in s["best_tier"]) and cmp["test"].startswith("exact McNemar")
        helps = s["baseline_test"]["p_value"] < 0.05 and s["baseline_test"]["delta"] > 0
        assert s["no_teacher_helps"] is (not helps)
        assert s["best_teacher"] == (s["top_teacher"] if helps else None) and s["verdict"]
        assert (s["optimal_teacher_params"] is None) == (not helps)
    fit = c["fit"]
    assert not fit["enough_data"] and "a law needs at least 3" in fit["limits"][0]  # two students cannot show a law
    for name in ("capacity_gap-sst2.svg", "capacity_gap-sst2.png", "capacity_law-sst2.svg", "capacity_law-sst2.png",
                 "report.html", "report.json"):
        assert (sweep_dir / name).stat().st_size > 0, name
    page = (sweep_dir / "report.html").read_text()
    assert "Too little data to show a law" in page and all(s["verdict"] in page for s in c["students"])
    record = read_record(sweep_dir / "report.json")  # the leaderboard's record validates
    entry = record["capacity_gap"]["sst2"]
    assert [e["student"] for e in entry["curves"]] == students and len(entry["curves"][0]["points"]) == 2
    assert entry["fit"]["limits"] == fit["limits"]
    assert (board / "plots" / "quickstart-sst2-capacity-gap.svg").exists()
    run_page = (board / "runs" / f"{sweep_dir.name}.html").read_text()
    assert all(f"<code>{s}</code>" in run_page for s in students)

    # an interrupted sweep: one point's run is gone; --resume reruns it alone
    kept = sweep_dir / c["points"][0]["runs"][0]["path"] / "report.json"
    kept_mtime = kept.stat().st_mtime_ns
    lost = sweep_dir / c["points"][3]["runs"][1]["path"]
    shutil.rmtree(lost)
    out = run_kdbench("capacity-gap", "--resume", sweep_dir, "--leaderboard-dir", board, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count(": skipped (finished") == 7
    assert "point all-MiniLM-L6-v2-L2--all-MiniLM-L6-v2-L2-seed1: running" in out.stderr
    assert kept.stat().st_mtime_ns == kept_mtime
    resumed = json.loads((sweep_dir / "capacity_gap.json").read_text())["tasks"]["sst2"]
    assert [r["status"] for p in resumed["points"] for r in p["runs"]] == ["skipped"] * 7 + ["ran"]
    assert resumed["points"][0]["runs"] == [{k: v for k, v in r.items() if k != "wall_s"} | {"status": "skipped"}
                                            for r in c["points"][0]["runs"]]
    assert all(p["n_seeds"] == 2 for p in resumed["points"])
    rerun = json.loads((sweep_dir / resumed["points"][3]["runs"][1]["path"] / "report.json").read_text())
    assert rerun["models"]["teacher"]["reused_from_cache"]  # the teacher is not fine-tuned again
