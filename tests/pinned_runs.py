"""Run folders (record + samples.parquet) made from the pinned predictions of real runs of every family
(tests/data/pinned): scored through the pipeline's scoring step, written as a run would write them.
``edit(role, predictions)`` may change a model's predictions first (a degraded candidate)."""
from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

from test_pinned_records import PINNED, _predictions

from kdbench import pipeline
from kdbench.config import EvalConfig
from kdbench.predictions import samples_frame
from kdbench.report.record import write_record
from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings
from kdbench.tasks.registry import family_class


def load(run: str) -> dict:
    with gzip.open(PINNED / f"{run}.pkl.gz") as f:
        return pickle.load(f)


def write_run(run: str, folder: Path, edit=None, *, bootstrap_samples: int = 200, extra: dict | None = None) -> Path:
    tasks = load(run)
    results, pairs, datasets, specs, kinds, frames = {}, {}, {}, {}, {}, []
    for name, pinned in tasks.items():
        spec = family_class(pinned["spec"]["family"]).Spec.model_validate(
            {"main_score": get_task(name).spec.main_score, **pinned["spec"]})
        task = family_class(spec.family)(spec)
        preds = {role: _predictions(p) for role, p in pinned["predictions"].items()}
        if edit is not None:
            preds = {role: edit(role, p) for role, p in preds.items()}
        task.predict = lambda model, data, role, settings, preds=preds: preds[role]
        s = pinned["settings"]
        settings = RunSettings(s["dtype"], s["max_length"], s["seed"],
                               EvalConfig(**{**s["eval"], "bootstrap_samples": bootstrap_samples}))
        run_ = pipeline.TaskRun(task, dict.fromkeys(preds), {}, {}, None, {})
        _, results[name], pairs[name], task_frames = pipeline._score_task(run_, None, settings)
        frames += task_frames
        kinds[name] = next(iter(preds.values())).kind
        specs[name] = spec.model_dump(mode="json")
        ids = next(iter(preds.values())).example_ids
        datasets[name] = {"id": spec.dataset.id if spec.dataset else name, "config": None, "split": "test",
                          "rows": len(ids), "sha256": hashlib.sha256(repr(ids).encode()).hexdigest()}
    record = {
        "schema_version": 1, "kdbench_version": "0.1.0", "git_hash": None, "run_id": folder.name,
        "created": "2026-01-01T00:00:00+00:00", "suite": run, "seeds": [0],
        "config": {"name": run, "max_length": s["max_length"], "eval": {**s["eval"], "bootstrap_samples": bootstrap_samples},
                   "task_specs": specs},
        "environment": {"device": "cpu", "dtype": s["dtype"]},
        "models": {role: {"id": role, "revision": None, "params": 1} for role in preds},
        "datasets": datasets, "kinds": kinds, "results": results, "pairs": pairs, "efficiency": {}, **(extra or {}),
    }
    folder.mkdir(parents=True)
    write_record(folder / "report.json", record)
    samples_frame(frames).to_parquet(folder / "samples.parquet", index=False)
    return folder
