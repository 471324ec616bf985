"""Kill-and-resume: a real training job killed with SIGKILL after a checkpoint, then resumed, ends on
exactly the weights of an uninterrupted run (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import ROOT

JOB = ROOT / "tests" / "helpers" / "jobs" / "trainer_job.py"
pytestmark = pytest.mark.slow


def _job(*args, **kw):
    return subprocess.Popen([sys.executable, str(JOB), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=os.environ.copy(), **kw)


def _kill_after_checkpoint(ckpt: Path, out: Path, *extra) -> int:
    """Start the job slowed down, SIGKILL it once a checkpoint is published; the checkpoint's step."""
    proc = _job(ckpt, out, "--delay", "0.4", *extra)
    deadline = time.monotonic() + 600
    while not (ckpt / "latest.json").exists():
        assert proc.poll() is None, "the job ended before writing a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    return json.loads((ckpt / "latest.json").read_text())["step"]


@pytest.mark.parametrize("accum", [2])  # accumulation windows and all: the default path is a subset
def test_killed_run_resumes_to_the_same_weights(tmp_path, data_dir, accum):
    reference, resumed = tmp_path / "reference.safetensors", tmp_path / "resumed.safetensors"
    proc = _job(tmp_path / "ck-ref", reference, "--accum", accum)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "resumed_from=None" in out
    total = int(out.split("steps=")[1].split()[0])

    step = _kill_after_checkpoint(tmp_path / "ck", resumed, "--accum", accum)
    assert 0 < step < total
    proc = _job(tmp_path / "ck", resumed, "--accum", accum)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and f"resumed_from={step}" in out

    a, b = load_file(str(reference)), load_file(str(resumed))
    assert a.keys() == b.keys() and len(a) > 20
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ after resume: {different[:5]}"
