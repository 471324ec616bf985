"""Runs that survive each other: two processes at once over one leaderboard folder, one
fine-tune cache entry, one teacher-output cache entry, one run folder. Each test starts real
processes and checks what the lock makes observable (a whole site, one computation, a refusal)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from filelock import FileLock

from tests.helpers.concurrency import _finish


def test_resume_of_a_run_in_progress_is_refused(tmp_path):
    """The writer of a run holds its staging folder's lock for the run's life; here this test
    process holds it, as a running `kdbench train-and-eval` does."""
    from tests.helpers.cli import run_kdbench

    from kdbench.config import load_suite

    staging = tmp_path / "reports" / ".20260101-000000-quickstart-abcdef.partial"
    (staging / "checkpoints").mkdir(parents=True)
    suite = load_suite("quickstart", ["data.train_rows=64", "data.eval_rows=8", "eval.efficiency=false"])
    (staging / "resume.json").write_text(json.dumps({"suite": suite.model_dump(mode="json"), "include_paths": [],
                                                   "leaderboard_dir": str(tmp_path / "lb")}))
    with FileLock(staging / ".lock"):  # kdbench.report.rundir.RUN_LOCK
        before = sorted(p.name for p in staging.rglob("*"))
        proc = run_kdbench("train-and-eval", "--resume", staging)
    assert proc.returncode == 2 and "in progress in another kdbench process" in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in staging.rglob("*")) == before  # untouched


@pytest.mark.slow
def test_two_real_runs_at_once_share_the_teacher_and_the_site(tmp_path, data_dir):
    """Two `train-and-eval` into one reports folder and one cache at once: the teacher is fine-tuned
    once (the other run reuses it), and the leaderboard lists both runs with their pages."""
    args = ["train-and-eval", "--train-rows", "64", "--eval-rows", "32", "--layers", "0", "--epochs", "1",
            "--set", "teacher.finetune.epochs=1", "--set", "eval.efficiency=false", "--set", "baseline=false",
            "--reports-dir", tmp_path / "reports", "--leaderboard-dir", tmp_path / "lb"]
    env = {**os.environ, "KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-m", "kdbench", *map(str, args), "--seed", "0"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    _finish(procs)
    runs = sorted(p for p in (tmp_path / "reports").iterdir())
    assert len(runs) == 2
    teachers = [json.loads((r / "report.json").read_text())["models"]["teacher"] for r in runs]
    assert sorted(t["reused_from_cache"] for t in teachers) == [False, True]
    assert len({t["cache_key"] for t in teachers}) == 1
    index = (tmp_path / "lb" / "index.html").read_text()
    for r in runs:
        assert f'href="runs/{r.name}.html"' in index and (tmp_path / "lb" / "runs" / f"{r.name}.html").is_file()
