"""The NER family through the real CLI: train-and-eval on a tiny WNUT-17 slice, then `kdbench eval`
of the saved teacher and student folders."""
from __future__ import annotations

import pandas as pd
import pytest
from seqeval.metrics import f1_score

from kdbench.report.record import read_record
from tests.helpers.cli import run_kdbench

TINY = ["--train-rows", "160", "--eval-rows", "60", "--epochs", "1", "--set", "teacher.finetune.epochs=1",
        "--set", "eval.bootstrap_samples=200"]


@pytest.mark.slow
def test_ner_suite_train_and_eval_then_eval(tmp_path, data_dir):
    env = {"KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    reports = tmp_path / "reports"
    proc = run_kdbench("train-and-eval", "--suite", "ner", *TINY, "--reports-dir", reports,
                       "--leaderboard-dir", tmp_path / "lb", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list(reports.iterdir())
    record = read_record(run)  # validates against the JSON Schema
    results = record["results"]["wnut_17"]
    assert set(results) == {"teacher", "student", "baseline"}
    for metrics in results.values():
        assert {"f1", "precision", "recall", "token_accuracy", "f1_person", "f1_creative_work"} <= set(metrics)
        assert metrics["f1"]["ci"][0] <= metrics["f1"]["value"] <= metrics["f1"]["ci"][1]
    pairs = record["pairs"]["wnut_17"]
    assert {"label_loyalty", "probability_loyalty", "entity_f1_vs_teacher"} <= set(pairs["student|teacher"])
    assert "f1_difference" in pairs["student|baseline"]
    assert record["datasets"]["wnut_17"]["rows"] == 60 and record["datasets"]["wnut_17"]["train"]["rows"] == 160
    assert record["models"]["student"]["layer_map"] == [0, 5]
    assert record["efficiency"]["student"]["head"] == "token_classification"

    samples = pd.read_parquet(run / "samples.parquet")
    assert list(samples.columns)[:7] == ["task", "example_id", "role", "label", "pred", "probs", "correct"]
    teacher = samples[samples.role == "teacher"]
    assert len(teacher) == 60
    gold, pred = [s.split() for s in teacher.label], [s.split() for s in teacher.pred]
    assert results["teacher"]["f1"]["value"] == f1_score(gold, pred)
    assert (run / "report.html").is_file()

    # the saved models scored again with `kdbench eval`: the same predictions, the same F1
    teacher_dir = record["models"]["teacher"]["cache_key"]
    student_dir = run / "models" / "wnut_17" / "student"
    proc = run_kdbench("eval", "--suite", "ner", "--teacher", tmp_path / "cache" / "finetuned" / teacher_dir,
                       "--student", student_dir, "--eval-rows", "60", "--set", "eval.bootstrap_samples=200",
                       "--reports-dir", tmp_path / "eval-reports", "--leaderboard-dir", tmp_path / "lb2", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (again,) = list((tmp_path / "eval-reports").iterdir())
    rescored = read_record(again)["results"]["wnut_17"]
    for role in ("teacher", "student"):
        assert rescored[role]["f1"]["value"] == results[role]["f1"]["value"], role
        assert rescored[role]["token_accuracy"]["value"] == results[role]["token_accuracy"]["value"], role
