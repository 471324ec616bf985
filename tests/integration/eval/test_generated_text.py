"""Teacher–student metrics on generated text (eval.generated_text, DistillSpec's definitions): the
backend's greedy token ids and its scoring of continuations (checked against a plain forward pass),
the own-text and teacher-text metrics (equal to the full-vocabulary formulas of
kdbench.metrics.loyalty applied by hand to each text alone), one-line errors, and `kdbench eval` on the lm suite.
Real SmolLM2-135M-Instruct teacher and an 8-of-30-layer student, fp32."""

import pytest

from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.models.students import layer_selection
from kdbench.report.record import read_record
from kdbench.tasks import generated_text
from tests.helpers import SMOLLM
from tests.helpers.cli import run_kdbench


@pytest.mark.slow
def test_eval_lm_suite_records_the_metrics_on_generated_text(tmp_path, data_dir):
    """`kdbench eval --suite lm` with eval.generated_text: 4 continuations of 12 tokens per model."""
    from kdbench.models.loading import save_model

    folder = tmp_path / "student"
    save_model(layer_selection(load_for_head(SMOLLM, "causal_lm"), [0, 29]), load_tokenizer(SMOLLM), folder)
    reports = tmp_path / "reports"
    proc = run_kdbench("eval", "--suite", "lm", "--teacher", SMOLLM, "--student", folder, "--eval-rows", "5",
                       "--set", "eval.generated_text.rows=4", "--set", "eval.generated_text.max_new_tokens=12",
                       "--set", "eval.generated_text.prompt_tokens=16", "--set", "eval.bootstrap_samples=200",
                       "--set", "eval.efficiency=false", "--reports-dir", reports, "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list(reports.iterdir())
    record = read_record(run)
    pair = record["pairs"]["gsm8k_text"]["student|teacher"]
    assert set(generated_text.metric_names()) <= set(pair)
    assert 0 < pair["acceptance_rate_on_own_text"]["value"] < 1
    assert 0 < pair["acceptance_rate_on_teacher_text"]["value"] < 1
    assert pair["acceptance_rate"]["value"] != pair["acceptance_rate_on_own_text"]["value"]  # gold text vs its own
    assert "acceptance_rate_on_own_text" in (run / "report.html").read_text()
    # no room in the scoring window for prompt + continuation: one line, exit 2
    proc = run_kdbench("eval", "--suite", "lm", "--teacher", SMOLLM, "--eval-rows", "2", "--set",
                       "eval.generated_text.max_new_tokens=250", "--reports-dir", reports, "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 2 and "exceed max_length 256" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
