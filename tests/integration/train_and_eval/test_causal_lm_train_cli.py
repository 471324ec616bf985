"""`kdbench train-and-eval` for a causal LM through the real CLI: the `lm` suite (GSM8K solutions)
with SmolLM2-135M-Instruct as the teacher, a 2-of-30-layer student distilled token by token and a
label-only baseline, tiny slices."""
from __future__ import annotations

import pytest

from kdbench.report.record import read_record
from tests.helpers.cli import run_kdbench

TEACHER = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.slow
def test_train_and_eval_lm_suite(tmp_path, data_dir):
    reports = tmp_path / "reports"
    proc = run_kdbench(
        "train-and-eval", "--suite", "lm", "--layers", "0,29", "--train-rows", "16", "--eval-rows", "4", "--epochs", "1",
        "--set", "distill.batch_size=8", "--set", "distill.lr=1e-3", "--set", "max_length=64",
        "--set", "eval.bootstrap_samples=200", "--set", "eval.efficiency=false",
        "--reports-dir", reports, "--leaderboard-dir", tmp_path / "lb", env={"KDBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list(reports.iterdir())
    record = read_record(run)  # validated against the JSON Schema

    models = record["models"]
    assert models["teacher"]["id"] == TEACHER and models["teacher"]["finetuned"] is False
    assert models["student"]["method"] == "kd" and models["student"]["loss"] == "forward_kl"
    assert models["student"]["layer_map"] == [0, 29] and models["student"]["train_steps"] == 2
    assert models["baseline"]["method"] == "labels_only" and models["baseline"]["layer_map"] == [0, 29]
    assert models["student"]["params"] == models["baseline"]["params"] == 49152 * 576 + 576 + 2 * 3_540_096

    results = record["results"]["gsm8k_text"]
    assert set(results) == {"teacher", "student", "baseline"}
    assert record["datasets"]["gsm8k_text"]["rows"] == 4
    for role in ("student", "baseline"):
        assert "acceptance_rate" in record["pairs"]["gsm8k_text"][f"{role}|teacher"]
        assert (run / "models" / "gsm8k_text" / role / "model.safetensors").is_file()

    # two steps already pull the pruned student far below its starting perplexity (same scorer)
    from kdbench.models.loading import load_for_head, load_tokenizer
    from kdbench.models.students import layer_selection
    from kdbench.tasks import get_task
    from kdbench.tasks.base import LoadedModel, RunSettings

    task = get_task("gsm8k_text")
    settings = RunSettings(dtype="bf16", max_length=64)
    settings.eval.bootstrap_samples = 200
    init = layer_selection(load_for_head(TEACHER, "causal_lm"), [0, 29]).eval()
    preds = task.predict(LoadedModel(init, load_tokenizer(TEACHER), "init"), task.eval_data(4), "init", settings)
    before = task.score(preds, settings)["perplexity"]["value"]
    assert results["student"]["perplexity"]["value"] < 0.1 * before
    assert results["baseline"]["perplexity"]["value"] < 0.1 * before
