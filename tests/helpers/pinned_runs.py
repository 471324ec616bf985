"""Run folders (record + samples.parquet) made from the pinned predictions of real runs of every family
(tests/data/pinned): scored through the pipeline's scoring step, written as a run would write them.
``edit(role, predictions)`` may change a model's predictions first (a degraded candidate)."""
from __future__ import annotations

import copy
import gzip
import hashlib
import importlib
import pickle
from dataclasses import fields
from pathlib import Path

import numpy as np

from kdbench import pipeline
from kdbench.config import EvalConfig
from kdbench.predictions import samples_frame
from kdbench.report.record import write_record
from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings
from kdbench.tasks.registry import family_class
from tests.helpers import ROOT

PINNED = ROOT / "tests" / "data" / "pinned"


# classes the pinned runs were captured with that are gone: (their path) -> (the class now, its fields then)
RENAMED = {
    # the lm-eval bridge's second GenerationPredictions: the generation family's, with lm-eval's values;
    # ``targets`` are the gold answers and the filter's fallback ("[invalid]") is no answer (None)
    "kdbench.predictions.lm_eval:GenerationPredictions": (
        "kdbench.predictions.lm_eval:LmEvalGenerationPredictions",
        lambda f: {**f, "gold": f["targets"], "answers": [None if a == "[invalid]" else a for a in f["answers"]]}),
}


def _predictions(plain: dict):
    path, values = plain["class"], plain["fields"]
    if path in RENAMED:
        path, convert = RENAMED[path]
        values = convert(values)
    module, name = path.split(":")
    cls = getattr(importlib.import_module(module), name)
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


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


def _degrade(role, p):
    """The student made clearly worse, family by family."""
    if role != "student":
        return p
    rng = np.random.default_rng(0)
    q = copy.copy(p)
    if p.kind == "classifier":  # 60% of its right answers turned wrong
        q.probs = np.where(((p.probs.argmax(1) == p.labels) & (rng.random(len(p.labels)) < 0.6))[:, None],
                           p.probs[:, ::-1], p.probs)
        return q
    if p.kind == "regression":
        q.scores = p.scores + rng.normal(0, 3.0, len(p.scores))
    elif p.kind == "ranking":
        q.doc_ids = [list(reversed(d)) for d in p.doc_ids]
    elif p.kind == "lm":
        q.token_logprobs = [lp - 2.0 for lp in p.token_logprobs]
    return q
