"""The retrieval family through the real CLI: train-and-eval of the `retrieval` suite (3-of-6-layer
student) on a 200-document slice of DBpedia-Entity 5k, then `kdbench eval` of the teacher and the
saved student folder, and of the published pretrained student."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdbench.report.record import read_record
from tests.helpers.cli import run_kdbench

TASK = "dbpedia_entity_5k"
TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"
STUDENT_ID = "sentence-transformers/paraphrase-MiniLM-L3-v2"
METRICS = {"ndcg_at_10", "mrr_at_10", "recall_at_10", "recall_at_100", "map_at_100", "ndcg_at_100"}
QUICK = ["--set", "eval.bootstrap_samples=200", "--set", "eval.efficiency=false"]


def _tiny_task(folder):
    """The built-in task on its first 200 documents (21 queries keep a relevant one), 128 tokens."""
    from kdbench.tasks.registry import BUILTIN_DIR

    text = (BUILTIN_DIR / f"{TASK}.yaml").read_text()
    text = text.replace("top_k: 100", "top_k: 100\ncorpus_rows: 200").replace("max_length: 256", "max_length: 128")
    folder.mkdir()
    (folder / f"{TASK}.yaml").write_text(text)
    return folder


@pytest.mark.slow
def test_retrieval_suite_train_and_eval_then_eval(tmp_path, data_dir):
    tasks = _tiny_task(tmp_path / "tasks")
    env = {"KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    reports = tmp_path / "reports"
    proc = run_kdbench("train-and-eval", "--suite", "retrieval", "--epochs", "1", "--set", "distill.batch_size=16",
                       "--set", "distill.lr=2e-4", *QUICK, "--include-path", tasks, "--reports-dir", reports,
                       "--leaderboard-dir", tmp_path / "lb", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list(reports.iterdir())
    record = read_record(run)  # validates against the JSON Schema
    results = record["results"][TASK]
    assert set(results) == {"teacher", "student", "baseline"}
    for role, metrics in results.items():
        assert set(metrics) == METRICS, role
        for name, m in metrics.items():
            assert m["ci"][0] <= m["value"] <= m["ci"][1], (role, name)
    pairs = record["pairs"][TASK]
    for key in ("student|teacher", "baseline|teacher"):
        assert set(pairs[key]) == {"overlap_at_10", "teacher_ndcg_at_10"}
    assert {"ndcg_at_10_difference", "ndcg_at_10_p_value"} <= set(pairs["student|baseline"])
    # KD pulls the layer-selected student's rankings towards the teacher's, and its nDCG@10 up
    assert pairs["student|teacher"]["overlap_at_10"]["value"] > pairs["baseline|teacher"]["overlap_at_10"]["value"]
    assert pairs["student|baseline"]["ndcg_at_10_difference"]["value"] > 0

    models = record["models"]
    assert models["teacher"]["finetuned"] is False and models["teacher"]["id"] == TEACHER_ID
    assert models["student"]["method"] == "kd" and models["student"]["loss"] == "cosine_embedding"
    assert models["student"]["layer_map"] == [1, 3, 5] and models["student"]["init_from"] == "teacher"
    assert models["baseline"]["method"] == "pretrained_no_kd" and models["baseline"]["id"] == f"models/{TASK}/baseline"
    dataset = record["datasets"][TASK]
    assert dataset["rows"] == 21 and dataset["corpus_docs"] == 200
    assert dataset["train"]["rows"] == 210 and dataset["train"]["labels"] is False

    # samples.parquet: top-10 ids and the relevant ids per query; MRR@10 recomputed from them
    samples = pd.read_parquet(run / "samples.parquet")
    assert list(samples.columns)[:7] == ["task", "example_id", "role", "label", "pred", "probs", "correct"]
    for role in ("teacher", "student", "baseline"):
        rows = samples[samples.role == role]
        assert len(rows) == 21
        rr = [next((1 / (i + 1) for i, d in enumerate(p.split()) if d in set(g.split())), 0.0)
              for p, g in zip(rows.pred, rows.label)]
        assert np.mean(rr) == pytest.approx(results[role]["mrr_at_10"]["value"], abs=1e-12), role
    assert (run / "report.html").is_file()

    # the saved student folder and the teacher scored again with `kdbench eval`: the same rankings
    student_dir = run / "models" / TASK / "student"
    proc = run_kdbench("eval", "--suite", "retrieval", "--teacher", TEACHER_ID, "--student", student_dir,
                       "--model", f"pretrained={STUDENT_ID}", *QUICK,
                       "--include-path", tasks, "--reports-dir", tmp_path / "eval-reports",
                       "--leaderboard-dir", tmp_path / "lb2", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (again,) = list((tmp_path / "eval-reports").iterdir())
    rescored = read_record(again)
    for role in ("teacher", "student"):
        for name in METRICS:
            assert rescored["results"][TASK][role][name]["value"] == results[role][name]["value"], (role, name)
    assert rescored["pairs"][TASK]["student|teacher"]["overlap_at_10"] == pairs["student|teacher"]["overlap_at_10"]
    assert set(rescored["results"][TASK]["pretrained"]) == METRICS
    assert set(rescored["pairs"][TASK]["pretrained|teacher"]) == {"overlap_at_10", "teacher_ndcg_at_10"}
