"""`kdbench train-and-eval --resume`: a real run killed (SIGKILL) while its student trains is
resumed from its staging folder and ends with the same student and baseline weights as an
uninterrupted run; misuse of --resume is a one-line error."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from cli_helpers import run_kdbench
from safetensors.torch import load_file

ARGS = ["--train-rows", "64", "--eval-rows", "32", "--layers", "0", "--epochs", "1", "--set", "distill.batch_size=8",
        "--set", "distill.checkpoint_every=2", "--set", "teacher.finetune.epochs=0.25", "--set", "eval.efficiency=false"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_models(tmp_path, data_dir):
    env = {**os.environ, "KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    ref = run_kdbench("train-and-eval", *ARGS, "--reports-dir", tmp_path / "a", "--leaderboard-dir", tmp_path / "lb",
                      env={"KDBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen([sys.executable, "-m", "kdbench", "train-and-eval", *ARGS, "--reports-dir", str(tmp_path / "b"),
                             "--leaderboard-dir", str(tmp_path / "lb")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not list((tmp_path / "b").glob(".*.partial/checkpoints/sst2/train-student-on-sst2/latest.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the student's first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (staging,) = (tmp_path / "b").glob(".*.partial")
    latest = json.loads((staging / "checkpoints/sst2/train-student-on-sst2/latest.json").read_text())
    assert latest["step"] < 8  # killed mid-training (8 steps)

    resumed = run_kdbench("train-and-eval", "--resume", staging, "--leaderboard-dir", tmp_path / "lb", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not staging.exists()
    (a,), (b,) = (tmp_path / "a").glob("2*"), (tmp_path / "b").glob("2*")
    assert b.name == staging.name[1:-len(".partial")] and not (b / "checkpoints").exists()
    for role in ("student", "baseline"):
        wa, wb = (load_file(str(d / "models/sst2" / role / "model.safetensors")) for d in (a, b))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), role
    record = json.loads((b / "report.json").read_text())
    assert record["models"]["student"]["training"] == {"batch_size": 8, "grad_accum_steps": 1, "effective_batch_size": 8}


def test_resume_takes_no_other_options_and_needs_a_staging_folder(tmp_path):
    staging = tmp_path / ".20260101-000000-quickstart-abcdef.partial"
    staging.mkdir()
    proc = run_kdbench("train-and-eval", "--resume", staging, "--epochs", "2")
    assert proc.returncode == 2 and "drop ['--epochs']" in proc.stderr
    proc = run_kdbench("train-and-eval", "--resume", staging)
    assert proc.returncode == 2 and "not an interrupted run folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
