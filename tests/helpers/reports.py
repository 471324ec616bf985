"""Synthetic but self-consistent run folders (record + samples computed with the real metric
registry) for fast tests of the leaderboard, the loader and the gate."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

from kdbench.metrics.classification import ClassifierPairTable, ClassifierTable
from kdbench.metrics.spec import Resampling, score
from kdbench.predictions import ClassifierPredictions
from kdbench.report.record import write_record

METRICS = ["accuracy", "ece", "brier", "nll", "ts_temperature", "ts_ece_after"]
PAIR_METRICS = ["label_loyalty", "probability_loyalty"]
TASK_SPEC = {
    "name": "sst2", "family": "glue", "description": "synthetic",
    "dataset": {"id": "nyu-mll/glue", "config": "sst2", "train_split": "train", "eval_split": "validation"},
    "columns": {"text": "sentence", "text_pair": None, "label": "label", "id": "idx"},
    "label_names": ["negative", "positive"], "metrics": METRICS, "main_score": "accuracy", "pair_metrics": PAIR_METRICS,
}


def _probs(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    right = rng.random(labels.size) < accuracy
    pred = np.where(right, labels, 1 - labels)
    conf = rng.uniform(0.55, 0.99, labels.size)
    probs = np.empty((labels.size, 2))
    probs[np.arange(labels.size), pred] = conf
    probs[np.arange(labels.size), 1 - pred] = 1 - conf
    return probs


def make_run(reports_dir: Path, run_id: str, *, accuracies: dict[str, float] | None = None, n: int = 400,
             seed: int = 0, data_seed: int = 0, created: str = "2026-01-01T00:00:00+00:00", suite: str = "quickstart",
             model_ids: dict[str, str] | None = None, params: dict[str, int] | None = None,
             eval_cfg: dict | None = None, extra: dict | None = None) -> Path:
    """A run folder with ``report.json`` and ``samples.parquet``; ``accuracies`` per role (the
    student's probabilities are drawn with its own seed so that two runs differ)."""
    accuracies = accuracies or {"teacher": 0.9, "student": 0.85}
    rng = np.random.default_rng(data_seed)
    labels = rng.integers(0, 2, n)
    ids = [str(i) for i in range(n)]
    preds = {}
    for i, (role, acc) in enumerate(accuracies.items()):
        role_rng = np.random.default_rng(1000 * (i + 1) + (seed if role != "teacher" else 0))
        preds[role] = ClassifierPredictions("sst2", role, ids, _probs(labels, acc, role_rng), labels)
    eval_cfg = {"batch_size": 64, "bootstrap_samples": 200, "confidence": 0.95, "ece_bins": 15,
                "latency_batches": [1, 32], **(eval_cfg or {})}
    how = Resampling(200, 0.95, 0, eval_cfg)
    results = {role: score(ClassifierTable(p.probs, p.labels), METRICS, how) for role, p in preds.items()}
    pairs = {f"{role}|teacher": score(ClassifierPairTable(preds["teacher"].probs, p.probs), PAIR_METRICS, how)
             for role, p in preds.items() if role != "teacher"}
    model_ids = model_ids or {}
    params = params or {}
    models = {role: {"id": model_ids.get(role, "sentence-transformers/all-MiniLM-L6-v2" if role == "teacher"
                                         else f"models/sst2/{role}"),
                     "revision": None, "params": params.get(role, 22_713_986 if role == "teacher" else 15_616_130),
                     **({"method": "kd", "loss": "forward_kl", "layer_map": [0, 5]} if role == "student" else {})}
              for role in preds}
    sha = hashlib.sha256(json.dumps([ids, labels.tolist()]).encode()).hexdigest()
    record = {
        "schema_version": 1, "kdbench_version": "0.1.0", "git_hash": None, "run_id": run_id, "created": created,
        "suite": suite, "config": {"name": suite, "seed": seed, "max_length": 64, "eval": eval_cfg,
                                   "task_specs": {"sst2": copy.deepcopy(TASK_SPEC)}},
        "environment": {"dtype": "bf16", "device": "cpu"}, "seeds": [seed], "models": models,
        "datasets": {"sst2": {"id": "nyu-mll/glue", "config": "sst2", "split": "validation", "rows": n, "sha256": sha}},
        "results": {"sst2": results}, "pairs": {"sst2": pairs},
        "efficiency": {role: {"params": models[role]["params"], "latency_ms_b1": 4.0 if role == "teacher" else 2.0,
                              "latency_ms_b32": 0.5 if role == "teacher" else 0.2, "throughput_eps": 1000.0,
                              "peak_rss_mb": 500.0} for role in preds},
        "efficiency_task": "sst2", **(extra or {}),
    }
    run_dir = Path(reports_dir) / run_id
    run_dir.mkdir(parents=True)
    write_record(run_dir / "report.json", record)
    import pandas as pd

    pd.concat([p.to_frame() for p in preds.values()], ignore_index=True).to_parquet(run_dir / "samples.parquet",
                                                                                   index=False)
    return run_dir


def edit_record(run_dir: Path, fn) -> None:
    """Change a written record in place, bypassing validation (to make bad inputs)."""
    path = Path(run_dir) / "report.json"
    record = json.loads(path.read_text())
    fn(record)
    path.write_text(json.dumps(record))
