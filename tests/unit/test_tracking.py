"""Experiment trackers (``--log-with``) through accelerate's trackers: a real tiny KD training (a
2-of-6-layer MiniLM student on SST-2 rows, MiniLM teacher logits, TAID) logs its curves to
TensorBoard, read back from the event files; W&B offline and a local MLflow store where their
extras are installed; a missing extra is one line naming it."""
from __future__ import annotations

import copy
import importlib.util
import os

import pytest

from kdbench import tracking
from kdbench.errors import KdbenchError
from tests.helpers.tracking import scalars

ALPHA = 0.7


@pytest.fixture(scope="module")
def job(data_dir):
    from tests.helpers.jobs.trainer_job import job

    return job(rows=48, loss="taid", loss_args={"t": 0.4}, alpha=ALPHA, epochs=1, batch_size=8, warmup_ratio=0.34)


def _train_under(job, names, logs, desc="train student on sst2"):
    from kdbench.distill.trainer import train

    student, tokenizer, features, cfg, loss_fn, _ = job
    with tracking.scope(names, logs, "run-1"):
        return train(copy.deepcopy(student), tokenizer, features, cfg, loss_fn, seed=0, dtype="fp32", desc=desc)


def test_tensorboard_event_files_hold_every_curve_of_a_training(job, tmp_path):
    stats = _train_under(job, ["tensorboard"], tmp_path / "logs")
    curves = scalars(tmp_path / "logs/tensorboard/train-student-on-sst2")
    assert set(curves) == {"train/loss", "train/kd_loss", "train/label_loss", "train/lr", "train/taid_t"}
    assert all([s for s, _ in c] == list(range(1, stats.steps + 1)) for c in curves.values())
    # the loss is alpha * KD + (1 - alpha) * label, step by step (one micro-batch per step)
    for (_, loss), (_, kd), (_, label) in zip(curves["train/loss"], curves["train/kd_loss"], curves["train/label_loss"]):
        assert loss == pytest.approx(ALPHA * kd + (1 - ALPHA) * label, rel=1e-5)
    assert curves["train/loss"][-1][1] == pytest.approx(stats.final_loss, rel=1e-6)
    # linear warm-up over 2 of the 6 steps, then linear decay to 0 (transformers' schedule), as used by each step
    lr = [v for _, v in curves["train/lr"]]
    assert lr == pytest.approx([1e-4 * f for f in (0.0, 0.5, 1.0, 0.75, 0.5, 0.25)], rel=1e-6)  # float32 events
    t = [v for _, v in curves["train/taid_t"]]
    assert t == sorted(t) and 0.4 < t[0] and t[-1] == pytest.approx(1.0)


def test_no_scope_no_tracker_files(job, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _train_under(job, [], tmp_path / "logs")
    assert not any(tmp_path.iterdir())


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(KdbenchError, match=r"^--log-with mlflow: mlflow is not installed \(pip install 'kdbench\[mlflow\]'\)$"):
        tracking.check(["tensorboard", "mlflow"])


def test_wandb_offline_writes_the_run_on_disk(job, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _train_under(job, ["wandb"], tmp_path / "logs")
    runs = list((tmp_path / "logs/wandb/wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    # the run file is wandb-core's record log (no Python reader ships): its history records name every curve
    log = next(runs[0].glob("*.wandb")).read_bytes()
    for key in ("train/loss", "train/kd_loss", "train/label_loss", "train/lr", "train/taid_t", "train-student-on-sst2"):
        assert key.encode() in log, key


def test_mlflow_logs_into_the_run_folder(job, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stats = _train_under(job, ["mlflow"], tmp_path / "logs")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'logs/mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("kdbench").experiment_id])
    assert run.data.tags["mlflow.runName"] == "train-student-on-sst2" and run.data.tags["kdbench_run_id"] == "run-1"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(1, stats.steps + 1))
    assert os.environ.get("MLFLOW_TRACKING_URI") is None
