"""The causal-LM families through the real CLI: `kdbench eval` of SmolLM2-135M-Instruct against an
8-of-30-layer student (built by layer selection and saved with save_model) on the `lm` and
`reasoning` suites, tiny slices."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from kdbench.report.record import read_record
from tests.helpers.cli import run_kdbench

TEACHER = "HuggingFaceTB/SmolLM2-135M-Instruct"
LAYERS = [0, 4, 8, 12, 16, 20, 24, 29]
QUICK = ["--set", "eval.bootstrap_samples=200", "--set", "eval.efficiency=false"]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    from kdbench.models.loading import load_for_head, load_tokenizer, save_model
    from kdbench.models.students import layer_selection

    folder = tmp_path_factory.mktemp("smollm2-8-layers")
    teacher = load_for_head(TEACHER, "causal_lm")
    save_model(layer_selection(teacher, LAYERS), load_tokenizer(TEACHER), folder)
    return folder


def _only_run(reports) -> dict:
    (run,) = list(reports.iterdir())
    return run, read_record(run)  # validated against the JSON Schema


def test_eval_lm_suite(tmp_path, data_dir, student_dir):
    reports = tmp_path / "reports"
    proc = run_kdbench("eval", "--suite", "lm", "--teacher", TEACHER, "--student", student_dir, "--eval-rows", "8",
                       *QUICK, "--reports-dir", reports, "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, record = _only_run(reports)
    results = record["results"]["gsm8k_text"]
    assert set(results) == {"teacher", "student"}
    # a layer-pruned, untrained student is a much worse language model than its teacher
    assert results["teacher"]["perplexity"]["value"] < 20 < results["student"]["perplexity"]["value"]
    pairs = record["pairs"]["gsm8k_text"]["student|teacher"]
    assert {"top1_agreement", "kl_teacher_student", "reverse_kl", "tvd", "acceptance_rate",
            "expected_tokens_gamma_1", "expected_tokens_gamma_8"} <= set(pairs)
    assert 0 <= pairs["acceptance_rate"]["value"] <= 1 and pairs["kl_teacher_student"]["value"] > 0
    assert record["datasets"]["gsm8k_text"]["rows"] == 8
    samples = pd.read_parquet(run / "samples.parquet")
    for role in ("teacher", "student"):
        rows = samples[samples.role == role]
        assert len(rows) == 8
        # corpus perplexity from the per-document rows of samples.parquet
        assert math.exp(rows.nll.sum() / rows.tokens.sum()) == pytest.approx(results[role]["perplexity"]["value"])
        np.testing.assert_allclose(rows.pred, np.exp(rows.nll / rows.tokens))


def test_eval_reasoning_suite(tmp_path, data_dir, student_dir):
    # the built-in gsm8k task with 24 new tokens instead of 256 (an --include-path task overrides it)
    from kdbench.tasks import get_task

    spec = get_task("gsm8k").spec.model_dump(mode="json", exclude_none=True)
    spec["generation"]["max_new_tokens"] = 24
    include = tmp_path / "tasks"
    include.mkdir()
    (include / "gsm8k.yaml").write_text(yaml.safe_dump(spec))
    reports = tmp_path / "reports"
    proc = run_kdbench("eval", "--suite", "reasoning", "--teacher", TEACHER, "--student", student_dir,
                       "--eval-rows", "4", "--include-path", include, *QUICK, "--reports-dir", reports,
                       "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, record = _only_run(reports)
    results = record["results"]["gsm8k"]
    for role in ("teacher", "student"):
        assert {"exact_match", "extraction_rate"} <= set(results[role])
    assert "answer_agreement" in record["pairs"]["gsm8k"]["student|teacher"]
    samples = pd.read_parquet(run / "samples.parquet")
    assert {"generation"} <= set(samples.columns) and len(samples) == 8
    for role in ("teacher", "student"):
        rows = samples[samples.role == role]
        assert rows.generation.str.len().gt(0).all()
        assert results[role]["exact_match"]["value"] == pytest.approx(rows.correct.astype(float).mean())
    assert samples[samples.role == "teacher"].label.tolist() == ["18", "3", "70000", "540"]
