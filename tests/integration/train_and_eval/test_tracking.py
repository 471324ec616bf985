"""Experiment trackers (``--log-with``) through accelerate's trackers: a real tiny KD training (a
2-of-6-layer MiniLM student on SST-2 rows, MiniLM teacher logits, TAID) logs its curves to
TensorBoard, read back from the event files; W&B offline and a local MLflow store where their
extras are installed; a missing extra is one line naming it."""
from __future__ import annotations

import importlib.util

import pytest

from tests.helpers.cli import run_kdbench
from tests.helpers.tracking import scalars


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_cli_log_with_a_missing_tracker_exits_2_before_any_work(tmp_path):
    proc = run_kdbench("train-and-eval", "--log-with", "wandb", "--reports-dir", tmp_path / "reports")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "kdbench: error: --log-with wandb: wandb is not installed (pip install 'kdbench[wandb]')")
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_a_run_with_log_with_tensorboard_leaves_the_loss_curves(small_runs):
    from kdbench.report.record import read_record

    run = small_runs["rerun"]  # the teacher came from the cache: student and baseline trained
    record = read_record(run)
    logs = run / "logs/tensorboard"
    assert sorted(p.name for p in logs.iterdir()) == ["evaluation", "train-baseline-on-sst2", "train-student-on-sst2"]
    student, baseline = scalars(logs / "train-student-on-sst2"), scalars(logs / "train-baseline-on-sst2")
    steps = record["models"]["student"]["train_steps"]
    assert [s for s, _ in student["train/loss"]] == list(range(1, steps + 1))
    assert {"train/kd_loss", "train/label_loss", "train/lr"} <= set(student)
    assert "train/kd_loss" not in baseline and len(baseline["train/loss"]) == steps
    assert student["train/loss"][-1][1] == pytest.approx(record["models"]["student"]["train_final_loss"], rel=1e-6)
    evaluation = scalars(logs / "evaluation")
    assert evaluation["sst2/student/accuracy"][0][1] == pytest.approx(
        record["results"]["sst2"]["student"]["accuracy"]["value"], rel=1e-6)
