"""kdbench capacity-gap: plan parsing and bad input (fast), and a tiny real sweep of two truncations of
all-MiniLM-L6-v2 with a fixed 1-layer student, over two seeds: each teacher fine-tuned once, the curve
on the leaderboard, and an interrupted sweep resumed without recomputing its finished points (slow)."""
from __future__ import annotations

import json
import shutil

import pytest

from kdbench.errors import KdbenchError
from kdbench.sweeps import capacity_gap as sweep
from tests.cli_helpers import run_kdbench

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TINY = ["--set", "data.train_rows=64", "--set", "data.eval_rows=64", "--set", "distill.epochs=1",
        "--set", "teacher.finetune.epochs=1", "--set", "max_length=32", "--set", "eval.efficiency=false",
        "--set", "baseline=false", "--set", "eval.bootstrap_samples=200"]


def test_teacher_and_seed_parsing():
    teachers = sweep.parse_teachers("a/b", (f"{MINILM}:1, 2",))
    assert [(t.model, t.layers) for t in teachers] == [("a/b", None), (MINILM, 1), (MINILM, 2)]
    assert [t.slug for t in teachers] == ["b", "all-MiniLM-L6-v2-L1", "all-MiniLM-L6-v2-L2"]
    for bad in (f"{MINILM}:1,x", f"{MINILM}:", "1,2", f"{MINILM}:0,2"):
        with pytest.raises(KdbenchError, match="is not MODEL:K1,K2"):
            sweep.parse_teachers(None, (bad,))
    with pytest.raises(KdbenchError, match="named twice"):
        sweep.parse_teachers(f"{MINILM},{MINILM}")
    assert sweep.parse_seeds("0,1,2") == [0, 1, 2]
    with pytest.raises(KdbenchError, match="--seeds"):
        sweep.parse_seeds("0,a")
    assert sweep.student_override("config:num_hidden_layers=1") == [
        'student={"builder": "config", "config": {"num_hidden_layers": 1}}']
    with pytest.raises(KdbenchError, match="config:KEY=VALUE"):
        sweep.student_override("config:num_hidden_layers")


@pytest.mark.parametrize("args, message", [
    (["--teachers", "no-such-org/no-such-model", "--student", "config:num_hidden_layers=1"],
     "model 'no-such-org/no-such-model': cannot load its config"),
    (["--teacher-layers", f"{MINILM}:1,2"], "needs a fixed student: student.builder layer_selection"),
    (["--teacher-layers", f"{MINILM}:one"], "is not MODEL:K1,K2"),
    (["--teacher-layers", f"{MINILM}:1,9", "--student", "config:num_hidden_layers=1"],
     f"capacity-gap teacher {MINILM}@L9: suite quickstart, task sst2: teacher.layers 9: model '{MINILM}' has 6 layers"),
    (["--teachers", f"{MINILM},sentence-transformers/paraphrase-MiniLM-L3-v2", "--student",
      "config:num_hidden_layers=1"], "fixed only when all teachers are one model truncated"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    out = run_kdbench("capacity-gap", "--suite", "quickstart", *args, "--reports-dir", tmp_path / "reports")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "reports").exists()  # nothing half-written


@pytest.mark.slow
def test_sweep_runs_resumes_and_renders(tmp_path):
    env = {"KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    reports, board = tmp_path / "reports", tmp_path / "leaderboards"
    out = run_kdbench("capacity-gap", "--suite", "quickstart", "--teacher-layers", f"{MINILM}:1,2",
                      "--student", "config:num_hidden_layers=1", "--seeds", "0,1", "--jobs", "2", *TINY,
                      "--reports-dir", reports, "--leaderboard-dir", board, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = reports.glob("capacity-gap-*")
    curve = json.loads((sweep_dir / "capacity_gap.json").read_text())["tasks"]["sst2"]
    assert [p["teacher"] for p in curve["points"]] == [f"{MINILM}@L1", f"{MINILM}@L2"]
    assert curve["points"][0]["teacher_params"] < curve["points"][1]["teacher_params"]
    assert curve["best_teacher"] in {p["teacher"] for p in curve["points"]}
    best = next(p for p in curve["points"] if p["teacher"] == curve["best_teacher"])
    assert curve["size_ratio_at_best"] == pytest.approx(curve["student_params"] / best["teacher_params"])
    for point in curve["points"]:
        assert point["n_seeds"] == 2 and len(point["runs"]) == 2 and point["teacher_finetuned_once"]
        assert point["ci"][0] <= point["value"] <= point["ci"][1]
        later = json.loads((sweep_dir / point["runs"][1]["path"] / "report.json").read_text())
        teacher = later["models"]["teacher"]
        # the second seed reused the first seed's fine-tuned teacher and its cached logits
        assert teacher["reused_from_cache"] and teacher["train_logits_reused"]
        assert later["config"]["distill"]["seed"] == 1 and later["config"]["seed"] == 0
    for name in ("capacity_gap-sst2.svg", "capacity_gap-sst2.png", "report.html", "report.json"):
        assert (sweep_dir / name).stat().st_size > 0, name
    assert (board / "plots" / "quickstart-sst2-capacity-gap.svg").exists()
    assert f"{MINILM}@L1" in (board / "runs" / f"{sweep_dir.name}.html").read_text()

    # an interrupted sweep: one point's run is gone; --resume reruns it alone
    kept = sweep_dir / curve["points"][0]["runs"][0]["path"] / "report.json"
    kept_mtime = kept.stat().st_mtime_ns
    lost = sweep_dir / curve["points"][1]["runs"][1]["path"]
    shutil.rmtree(lost)
    out = run_kdbench("capacity-gap", "--resume", sweep_dir, "--leaderboard-dir", board, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count(": skipped (finished") == 3 and "point all-MiniLM-L6-v2-L2-seed1: running" in out.stderr
    assert kept.stat().st_mtime_ns == kept_mtime
    resumed = json.loads((sweep_dir / "capacity_gap.json").read_text())["tasks"]["sst2"]
    assert [r["status"] for p in resumed["points"] for r in p["runs"]] == ["skipped", "skipped", "skipped", "ran"]
    assert resumed["points"][0]["runs"] == [{k: v for k, v in r.items() if k != "wall_s"} | {"status": "skipped"}
                                            for r in curve["points"][0]["runs"]]
    assert all(p["n_seeds"] == 2 for p in resumed["points"])
    rerun = json.loads((sweep_dir / resumed["points"][1]["runs"][1]["path"] / "report.json").read_text())
    assert rerun["models"]["teacher"]["reused_from_cache"]  # the teacher is not fine-tuned again
