"""Every value of the run record is pinned: the predictions of real runs of each family (GLUE
classification and STS-B regression, WNUT-17 NER, DBpedia-Entity retrieval, GSM8K language
modelling and reasoning, the lm-eval bridge's multiple choice and generation), captured with the
code that predates the metric registry (tests/data/pinned/capture.py), are scored again through the
pipeline's scoring step and must give the same ``results`` and ``pairs``, key for key."""
from __future__ import annotations

import gzip
import math
import pickle

import pytest

from kdbench import pipeline
from kdbench.config import EvalConfig
from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings
from kdbench.tasks.registry import family_class
from tests.helpers.pinned_runs import PINNED, _predictions

RUNS = ["glue", "ner", "retrieval", "lm", "reasoning", "lm_eval"]
CI_RTOL = 1e-12  # CI endpoints: percentiles of sums whose summation order may differ in the last bit


def _rescored(pinned: dict):
    # the pinned specs predate main_score (which changes no value): the built-in task's
    spec = family_class(pinned["spec"]["family"]).Spec.model_validate(
        {"main_score": get_task(pinned["spec"]["name"]).spec.main_score, **pinned["spec"]})
    task = family_class(spec.family)(spec)
    predictions = {role: _predictions(p) for role, p in pinned["predictions"].items()}
    task.predict = lambda model, data, role, settings: predictions[role]
    s = pinned["settings"]
    settings = RunSettings(dtype=s["dtype"], max_length=s["max_length"], seed=s["seed"], eval=EvalConfig(**s["eval"]))
    run = pipeline.TaskRun(task, {role: None for role in predictions if role != "ensemble"}, {}, {}, None, {},
                            ensemble=pinned["ensemble"])
    _, results, pairs, _ = pipeline._score_task(run, None, settings)
    return results, pairs


def _same(got: dict, want: dict, where: str) -> None:
    assert list(got) == list(want), where
    for key in want:
        if isinstance(want[key], dict) and "value" not in want[key]:
            _same(got[key], want[key], f"{where}/{key}")
            continue
        g, w = got[key], want[key]
        assert g["value"] == w["value"], (f"{where}/{key}", g, w)
        if w["ci"] is None:
            assert g["ci"] is None, f"{where}/{key}"
        else:
            assert all(math.isclose(a, b, rel_tol=CI_RTOL, abs_tol=1e-15) for a, b in zip(g["ci"], w["ci"])), \
                (f"{where}/{key}", g, w)


# pinned values whose meaning was changed on purpose, each with the reason: (run, task, pair, metric) -> value now
CHANGED = {
    # one answer_agreement meaning (issue 16): two answers lm-eval's filter could not extract ("[invalid]"
    # twice, the third of six documents) agreed under the bridge's old meaning; as for the reasoning
    # family an unextracted answer now agrees with nothing: 1/6 -> 0/6
    ("lm_eval", "lm_eval_gsm8k", "baseline|teacher", "answer_agreement"): {"value": 0.0, "ci": [0.0, 0.0]},
}


@pytest.mark.parametrize("run", RUNS)
def test_rescoring_a_pinned_real_run_gives_the_same_record(run, data_dir):
    with gzip.open(PINNED / f"{run}.pkl.gz") as f:
        tasks = pickle.load(f)
    for (changed_run, name, pair, metric), value in CHANGED.items():
        if changed_run == run:
            tasks[name]["pairs"][pair][metric] = value
    for name, pinned in tasks.items():
        results, pairs = _rescored(pinned)
        _same(results, pinned["results"], f"{run}/{name}/results")
        _same(pairs, pinned["pairs"], f"{run}/{name}/pairs")
