"""Runs that survive each other: two processes at once over one leaderboard folder, one
fine-tune cache entry, one teacher-output cache entry, one run folder. Each test starts real
processes and checks what the lock makes observable (a whole site, one computation, a refusal)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from filelock import FileLock

from kdbench.report import leaderboard
from tests.helpers import ROOT
from tests.helpers.reports import make_run


def _start(code: str, *args, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def _finish(procs) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    return outs


def _go_when_ready(tmp_path, n: int) -> None:
    """Release ``n`` workers together once each has imported what it needs (they wait for ``go``)."""
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("ready-*"))) < n:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.05)
    (tmp_path / "go").touch()


WAIT = """
import sys, time
from pathlib import Path
tmp = Path(sys.argv[1]); (tmp / f"ready-{sys.argv[2]}").touch()
while not (tmp / "go").exists():
    time.sleep(0.01)
"""

BUILDER = WAIT.replace("import sys, time", "import sys, time\nfrom tests.helpers.reports import make_run\n"
                       "from kdbench.report import leaderboard") + """
reports, out, tag = tmp / "reports", tmp / "lb", sys.argv[2]
for i in range(3):
    make_run(reports, f"new-{tag}-{i}", seed=i, created=f"2026-02-0{i + 1}T00:00:0{tag}+00:00")
    leaderboard.build(reports, out)
"""


def test_racing_leaderboard_builds_leave_a_whole_site(tmp_path):
    """Two runs finishing into a folder of many earlier runs, each rebuilding the leaderboard: the
    site lists every run, and every run it lists has its page."""
    for i in range(20):
        make_run(tmp_path / "reports", f"old-{i:02d}", seed=i, created=f"2026-01-01T00:{i:02d}:00+00:00")
    procs = [_start(BUILDER, tmp_path, tag) for tag in (1, 2)]
    _go_when_ready(tmp_path, 2)
    _finish(procs)
    out = tmp_path / "lb"
    runs = sorted(p.name for p in (tmp_path / "reports").iterdir())
    index = (out / "index.html").read_text()
    listed = sorted(set(re.findall(r'href="runs/([^"]+)\.html"', index)))
    assert listed == runs
    assert sorted(p.stem for p in (out / "runs").glob("*.html")) == runs
    owned = json.loads((out / leaderboard.MANIFEST).read_text())["files"]
    assert sorted(f[len("runs/"):-len(".html")] for f in owned if f.startswith("runs/")) == runs
    assert all((out / f).is_file() for f in owned)


FINETUNE = WAIT.replace("import sys, time", "import sys, time\nfrom kdbench.models import cache") + """
key = "k" * 24
with cache.entry_lock(key):
    if cache.is_cached(key):
        print("reused")
    else:
        folder = cache.finetuned_dir(key)
        (tmp / f"making-{sys.argv[2]}").touch()
        time.sleep(1.0)  # a fine-tune: the other process must wait all through it
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "kdbench_cache.json").write_text("{}")
        print("made")
"""


def test_two_runs_fine_tune_one_teacher_once(tmp_path):
    """The fine-tune cache entry is looked up and made under its lock: of two runs that need it at
    once, one makes it and the other waits, then reuses it (the last test here: through the recipe)."""
    env = {"KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    procs = [_start(FINETUNE, tmp_path, tag, env=env) for tag in (1, 2)]
    _go_when_ready(tmp_path, 2)
    outs = sorted(o.strip() for o in _finish(procs))
    assert outs == ["made", "reused"] and len(list(tmp_path.glob("making-*"))) == 1


TEACHER_OUTPUTS = WAIT.replace("import sys, time", "import sys, time\nimport numpy as np\n"
                               "from kdbench.distill.teacher_cache import cached_array") + """
def compute():
    (tmp / f"computed-{sys.argv[2]}").touch()
    time.sleep(1.0)  # the teacher's forward passes
    return np.arange(6, dtype=np.float32).reshape(3, 2)

values, reused = cached_array("teacher_logits", {"teacher": "t", "data": "d"}, compute, rows=3)
print(reused, values.tolist())
"""


def test_two_runs_compute_one_teachers_outputs_once(tmp_path):
    env = {"KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    procs = [_start(TEACHER_OUTPUTS, tmp_path, tag, env=env) for tag in (1, 2)]
    _go_when_ready(tmp_path, 2)
    outs = sorted(o.strip() for o in _finish(procs))
    assert outs == ["False [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]", "True [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]"]
    assert len(list(tmp_path.glob("computed-*"))) == 1


def test_resume_of_a_run_in_progress_is_refused(tmp_path):
    """The writer of a run holds its staging folder's lock for the run's life; here this test
    process holds it, as a running `kdbench train-and-eval` does."""
    from kdbench.config import load_suite
    from tests.helpers.cli import run_kdbench

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
