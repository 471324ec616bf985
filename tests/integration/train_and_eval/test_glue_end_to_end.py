"""GLUE through the CLI on real data: train-and-eval on three configs (classification with MCC,
sentence pairs with F1, regression), metric values checked against scikit-learn and scipy on the
run's own predictions, then `kdbench eval` of the saved students reproduces them."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from kdbench.report.record import validate_record
from tests.helpers.cli import TINY, run_kdbench


@pytest.fixture(scope="module")
def glue_run(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("glue")
    proc = run_kdbench("train-and-eval", "--suite", "glue", "--set", "tasks=[cola, mrpc, stsb]", *TINY,
                       "--reports-dir", root / "reports", "--leaderboard-dir", root / "lb",
                       env={"KDBENCH_CACHE_DIR": str(root / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = next((root / "reports").iterdir())
    return root, run_dir, json.loads((run_dir / "report.json").read_text())


@pytest.mark.slow
def test_glue_metrics_match_independent_implementations(glue_run):
    _, run_dir, record = glue_run
    validate_record(record)
    samples = pd.read_parquet(run_dir / "samples.parquet")
    for role in ("teacher", "student", "baseline"):
        cola = samples[(samples.task == "cola") & (samples.role == role)]
        mrpc = samples[(samples.task == "mrpc") & (samples.role == role)]
        stsb = samples[(samples.task == "stsb") & (samples.role == role)]
        res = record["results"]
        as_int = lambda s: s.astype(float).astype(int).to_numpy()  # noqa: E731
        assert res["cola"][role]["mcc"]["value"] == pytest.approx(matthews_corrcoef(as_int(cola.label), as_int(cola.pred)), abs=1e-12)
        assert res["mrpc"][role]["f1"]["value"] == pytest.approx(f1_score(as_int(mrpc.label), as_int(mrpc.pred)), abs=1e-12)
        assert res["mrpc"][role]["accuracy"]["value"] == pytest.approx(accuracy_score(as_int(mrpc.label), as_int(mrpc.pred)))
        gold, pred = stsb.label.astype(float).to_numpy(), stsb.pred.astype(float).to_numpy()
        assert res["stsb"][role]["pearson"]["value"] == pytest.approx(stats.pearsonr(pred, gold)[0], abs=1e-9)
        assert res["stsb"][role]["spearman"]["value"] == pytest.approx(stats.spearmanr(pred, gold)[0], abs=1e-9)
    assert set(record["pairs"]["stsb"]) == {"student|teacher", "baseline|teacher", "student|baseline"}
    assert "pearson_difference" in record["pairs"]["stsb"]["student|baseline"]
    assert "mcnemar_p_value" in record["pairs"]["mrpc"]["student|baseline"]
    glue = record["summary"]["glue_average"]
    expected = np.mean([res["cola"]["teacher"]["mcc"]["value"],
                        (res["mrpc"]["teacher"]["accuracy"]["value"] + res["mrpc"]["teacher"]["f1"]["value"]) / 2,
                        (res["stsb"]["teacher"]["pearson"]["value"] + res["stsb"]["teacher"]["spearman"]["value"]) / 2])
    assert glue["teacher"]["value"] == pytest.approx(expected)
    assert record["models"]["student"]["layer_map"] == [0, 5]
    assert record["datasets"]["stsb"]["train"]["rows"] == 160


@pytest.mark.slow
def test_eval_of_saved_students_reproduces_their_scores(glue_run):
    root, run_dir, record = glue_run
    proc = run_kdbench("eval", "--suite", "glue", "--set", "tasks=[cola, mrpc, stsb]",
                       "--teacher", run_dir / "models" / "{task}" / "student",
                       "--student", run_dir / "models" / "{task}" / "baseline",
                       "--eval-rows", "96", "--set", "eval.efficiency=false", "--set", "eval.bootstrap_samples=200",
                       "--reports-dir", root / "eval-reports", "--leaderboard-dir", root / "eval-lb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLUE average" in proc.stdout
    evaluated = json.loads(next((root / "eval-reports").iterdir()).joinpath("report.json").read_text())
    for task in ("cola", "mrpc", "stsb"):
        assert evaluated["results"][task]["teacher"] == record["results"][task]["student"]
        assert evaluated["results"][task]["student"] == record["results"][task]["baseline"]
        assert evaluated["datasets"][task]["sha256"] == record["datasets"][task]["sha256"]
    assert evaluated["models"]["teacher"]["id"].endswith("models/{task}/student")
