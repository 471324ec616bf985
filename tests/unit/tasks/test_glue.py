"""GLUE: every config in the local mirror loads and predicts; GLUE's metrics (MCC, F1,
Pearson/Spearman) match scikit-learn and scipy; the GLUE average follows Wang et al. 2019."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from kdbench.config import EvalConfig
from kdbench.metrics.classification import ClassifierTable
from kdbench.metrics.glue import glue_average
from kdbench.metrics.regression import RegressionTable
from kdbench.metrics.spec import Resampling, compare, score
from kdbench.models.loading import load_for_head, load_tokenizer, save_model
from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings

LOCAL = ["sst2", "cola", "mrpc", "rte", "stsb", "wnli", "qnli"]
SETTINGS = RunSettings(dtype="bf16", max_length=128, seed=0, eval=EvalConfig(bootstrap_samples=200))


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """MiniLM-L6 with fresh (seeded) heads, saved as a user's fine-tuned model folder would be."""
    import torch

    root = tmp_path_factory.mktemp("heads")
    tokenizer = load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    out = {}
    for n in (1, 2):
        torch.manual_seed(n)
        model = load_for_head("sentence-transformers/all-MiniLM-L6-v2", "classification", fresh_head=True, num_labels=n)
        save_model(model, tokenizer, root / str(n))
        out[n] = str(root / str(n))
    return out


@pytest.mark.parametrize("name", LOCAL)
def test_local_config_loads_and_predicts(name, heads, data_dir):
    task = get_task(name)
    data = task.eval_data(rows=24)
    texts, pairs = task.inputs(data)
    assert len(texts) == 24 and (pairs is None) == (task.spec.columns.text_pair is None)
    model = task.load_model(heads[task.num_labels])
    preds = task.predict(model, data, "teacher", SETTINGS)
    assert preds.example_ids == [str(i) for i in data.rows["idx"]]
    scores = task.score(preds, SETTINGS)
    assert list(scores) == task.spec.metrics
    for metric in scores.values():  # (a percentile CI of a biased statistic such as ECE may miss its point)
        assert np.isfinite(metric["value"]) and (metric["ci"] is None or metric["ci"][0] <= metric["ci"][1])
    main = scores[task.spec.metrics[0]]
    assert main["ci"][0] - 1e-9 <= main["value"] <= main["ci"][1] + 1e-9
    pair = task.score_pair(preds, preds, SETTINGS)
    loyal = pair.get("label_loyalty", pair.get("regression_loyalty"))
    assert loyal["value"] == pytest.approx(1.0)


def test_model_with_the_wrong_head_is_refused(heads, data_dir):
    from kdbench.errors import KdbenchError

    with pytest.raises(KdbenchError, match=r"has 1 outputs; task mrpc needs 2 \(is it fine-tuned for mrpc\?\)"):
        get_task("mrpc").load_model(heads[1])


def test_f1_and_mcc_match_scikit_learn_with_cis():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    logits = rng.normal(size=(400, 2)) + 1.2 * np.eye(2)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    out = score(ClassifierTable(probs, labels), ["f1", "mcc"], Resampling(500, 0.95, 1))
    pred = probs.argmax(axis=1)
    assert out["f1"]["value"] == pytest.approx(f1_score(labels, pred), abs=1e-12)
    assert out["mcc"]["value"] == pytest.approx(matthews_corrcoef(labels, pred), abs=1e-12)
    for m in out.values():
        assert m["ci"][0] <= m["value"] <= m["ci"][1]
    # multiclass MCC (Gorodkin's form) too
    y3 = rng.integers(0, 3, 300)
    p3 = rng.dirichlet(np.ones(3), 300)
    got = score(ClassifierTable(p3, y3), ["mcc"], Resampling(100))["mcc"]["value"]
    assert got == pytest.approx(matthews_corrcoef(y3, p3.argmax(axis=1)), abs=1e-12)


def test_mcc_classic_mistake_constant_predictions_are_zero_not_nan():
    labels = np.array([0, 1, 0, 1])
    probs = np.tile([0.9, 0.1], (4, 1))
    assert score(ClassifierTable(probs, labels), ["mcc"], Resampling(100))["mcc"]["value"] == 0.0


def test_regression_metrics_match_scipy():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 300)
    pred = gold + rng.normal(0, 1.0, 300)
    pred[:20] = np.round(pred[:20])  # ties
    out = score(RegressionTable(pred, gold), ["pearson", "spearman", "mse"], Resampling(300))
    assert out["pearson"]["value"] == pytest.approx(stats.pearsonr(pred, gold)[0], abs=1e-12)
    assert out["spearman"]["value"] == pytest.approx(stats.spearmanr(pred, gold)[0], abs=1e-12)
    assert out["mse"]["value"] == pytest.approx(np.mean((pred - gold) ** 2))
    for m in out.values():
        assert m["ci"][0] <= m["value"] <= m["ci"][1]
    diff = compare(RegressionTable(pred, gold), RegressionTable(gold + rng.normal(0, 2.0, 300), gold), Resampling(300))
    assert diff["pearson_difference"]["value"] > 0 and diff["pearson_difference"]["ci"][0] > 0


def test_glue_average_groups_mnli_and_averages_multi_metric_tasks():
    def m(v):
        return {"value": v, "ci": None}

    record = {
        "config": {"task_specs": {
            "mrpc": {"glue_score": {"metrics": ["accuracy", "f1"]}},
            "stsb": {"glue_score": {"metrics": ["pearson", "spearman"]}},
            "mnli": {"glue_score": {"metrics": ["accuracy"], "group": "mnli"}},
            "mnli_mismatched": {"glue_score": {"metrics": ["accuracy"], "group": "mnli"}},
            "gsm8k": {},
        }},
        "results": {
            "mrpc": {"teacher": {"accuracy": m(0.8), "f1": m(0.9)}, "student": {"accuracy": m(0.7)}},
            "stsb": {"teacher": {"pearson": m(0.6), "spearman": m(0.5)}, "student": {"pearson": m(0.1), "spearman": m(0.2)}},
            "mnli": {"teacher": {"accuracy": m(0.7)}, "student": {"accuracy": m(0.5)}},
            "mnli_mismatched": {"teacher": {"accuracy": m(0.8)}, "student": {"accuracy": m(0.6)}},
            "gsm8k": {"teacher": {"exact_match": m(0.1)}},
        },
    }
    out = glue_average(record)["glue_average"]
    assert out["teacher"]["value"] == pytest.approx((0.85 + 0.55 + 0.75) / 3)
    assert "student" not in out  # no F1 on MRPC: a partial average is not GLUE's
