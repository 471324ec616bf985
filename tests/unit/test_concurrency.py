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

from tests.helpers.reports import make_run

from kdbench.report import leaderboard
from tests.helpers import ROOT
from tests.helpers.concurrency import _finish


def _start(code: str, *args, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


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
