"""Multi-teacher distillation end to end on real models and an SST-2 slice: two teachers with
different tokenizers (MiniLM-L3: BERT vocabulary, MPNet), a 2-layer MiniLM student distilled on
their weighted ensemble; the record has loyalty to each teacher and to the ensemble, and the
ensemble's probabilities in samples.parquet are the weighted mean of the teachers'."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdbench.config import load_suite
from kdbench.distill.run import train_and_eval
from kdbench.report.record import validate_record
from tests.helpers.multi_teacher import L3, MPNET

TINY = ["data.train_rows=64", "data.eval_rows=64", "max_length=32", "distill.epochs=1", "eval.efficiency=false",
        "eval.bootstrap_samples=100",
        f"teachers=[{{model: {L3}, weight: 1, finetune: {{epochs: 1, lr: 1.0e-4}}}}, "
        f"{{model: {MPNET}, weight: 3, finetune: {{epochs: 1, lr: 3.0e-5}}}}]"]


@pytest.mark.slow
def test_two_teacher_run_scores_each_teacher_and_the_ensemble(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("multi_teacher", TINY)
    result = train_and_eval(suite, reports_dir=tmp_path / "reports", leaderboard_dir=tmp_path / "lb")
    record = validate_record(result.record)
    models = record["models"]
    assert models["teacher_1"]["id"] == L3 and models["teacher_2"]["id"] == MPNET
    assert models["ensemble"]["members"] == {"teacher_1": 0.25, "teacher_2": 0.75}
    assert models["student"]["init_from"] == "sentence-transformers/all-MiniLM-L6-v2"
    pairs = record["pairs"]["sst2"]
    for role in ("student", "baseline"):
        for ref in ("teacher_1", "teacher_2", "ensemble"):
            assert 0 <= pairs[f"{role}|{ref}"]["probability_loyalty"]["value"] <= 1
    assert "mcnemar_p_value" in pairs["student|baseline"]
    assert set(record["results"]["sst2"]) == {"teacher_1", "teacher_2", "ensemble", "student", "baseline"}
    assert {"teacher_finetune_1_s", "teacher_finetune_2_s"} <= set(record["durations"]["sst2"])
    assert models["teacher_2"]["training"]["batch_size"] == 32 and models["teacher_2"]["finetuned"]

    samples = pd.read_parquet(result.run_dir / "samples.parquet")
    probs = {role: np.array(part.sort_values("example_id").probs.tolist())
             for role, part in samples[samples.task == "sst2"].groupby("role")}
    np.testing.assert_allclose(probs["ensemble"], 0.25 * probs["teacher_1"] + 0.75 * probs["teacher_2"], rtol=1e-9)
    assert not np.allclose(probs["teacher_1"], probs["teacher_2"], atol=1e-3)  # two different teachers
    html = (result.run_dir / "report.html").read_text()
    assert "vs teacher_2" in html and "vs ensemble" in html
    assert result.leaderboard is not None
