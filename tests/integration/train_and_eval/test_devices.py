"""The device setting on a CPU-only machine: resolution (auto → cpu), the one-line errors for a GPU
that is not there (no CUDA, an index that does not exist, an index under a launcher), the CLI
refusing before any work, the record's accelerator fields, the placement helpers, and a CPU run
that is the same with the device given explicitly."""
from __future__ import annotations

import pytest

from tests.helpers.cli import run_kdbench
from tests.helpers.devices import NO_GPU


@pytest.mark.skipif(not NO_GPU, reason="checks the CPU-only behaviour")
@pytest.mark.parametrize("command", [
    ["train-and-eval", "--device", "cuda"],
    ["train-and-eval", "--device", "cuda:1", "--set", "eval.efficiency=false"],
    ["eval", "--suite", "quickstart", "--teacher", "sentence-transformers/all-MiniLM-L6-v2", "--device", "cuda"],
    ["capacity-gap", "--suite", "quickstart", "--teachers", "sentence-transformers/all-MiniLM-L6-v2", "--device", "cuda"],
])
def test_cli_refuses_a_missing_gpu_before_any_work(command, tmp_path):
    proc = run_kdbench(*command, "--reports-dir", tmp_path / "reports", "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kdbench: error: --device {command[command.index('--device') + 1]}:")
    assert "Traceback" not in proc.stderr and not (tmp_path / "reports").exists()


def test_cli_refuses_a_bad_setting_naming_the_key(tmp_path):
    proc = run_kdbench("train-and-eval", "--device", "gpu", "--reports-dir", tmp_path / "r")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--device gpu" in proc.stderr and "expected auto, cpu, cuda or cuda:N" in proc.stderr


@pytest.mark.slow
def test_eval_under_two_launched_processes_writes_one_record_like_one_process(tmp_path, teacher_classifier, tokenizer):
    """``accelerate launch --num_processes 2 -m kdbench eval``: the processes share the evaluation,
    the main one writes the only record, and its scores are those of a one-process run."""
    import json
    import os
    import subprocess
    import sys

    from kdbench.models.loading import save_model

    save_model(teacher_classifier, tokenizer, tmp_path / "model")
    args = ["eval", "--suite", "quickstart", "--teacher", tmp_path / "model", "--eval-rows", "96", "--device", "cpu",
            "--set", "eval.efficiency=false", "--leaderboard-dir", tmp_path / "lb"]
    alone = run_kdbench(*args, "--reports-dir", tmp_path / "one")
    assert alone.returncode == 0, alone.stderr[-2000:]
    launched = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "kdbench", *map(str, args),
         "--reports-dir", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert launched.returncode == 0, launched.stderr[-3000:]
    (one,), (two,) = (list((tmp_path / d).glob("*/report.json")) for d in ("one", "two"))
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert b["environment"]["processes"] == 2 and a["environment"]["processes"] == 1
    assert a["results"] == b["results"] and a["datasets"] == b["datasets"]
    assert launched.stdout.count("report:") == 1  # one process reports
