"""Training curves (eval.during_training, kdbench.distill.curves): points before the first step,
every N steps and after the last, the trained weights unchanged by them, their state checkpointed,
and `kdbench train-and-eval` writing them to the record and drawing them in the run report (with an
on-policy student and the metrics on generated text on the way)."""
import numpy as np
import pytest

from kdbench.report.record import read_record
from tests.helpers.cli import run_kdbench


@pytest.mark.slow
def test_train_and_eval_writes_curves_and_draws_them(tmp_path, data_dir):
    """lm suite, a 2-of-30-layer student on 16 GSM8K solutions (4 steps of 4, λ = 0.5 on-policy),
    points every 2 steps on 8 test solutions; the metrics on 4 generated continuations too."""
    reports = tmp_path / "reports"
    proc = run_kdbench("train-and-eval", "--suite", "lm", "--train-rows", "16", "--eval-rows", "8",
                       "--set", "max_length=128", "--set", "distill.batch_size=4", "--set", "student.layers=[0,29]",
                       "--set", "eval.during_training.every=2", "--set", "eval.during_training.rows=8",
                       "--set", "distill.on_policy.fraction=0.5", "--set", "distill.on_policy.max_new_tokens=16",
                       "--set", "eval.generated_text.rows=4", "--set", "eval.generated_text.max_new_tokens=16",
                       "--set", "eval.bootstrap_samples=200", "--reports-dir", reports, "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [p for p in reports.iterdir() if not p.name.startswith(".")]
    record = read_record(run)
    curve = record["curves"]["gsm8k_text"]
    assert curve["every"] == 2 and curve["rows"] == 8 and curve["split"] == "test" and set(curve["roles"]) == {"student", "baseline"}
    for points in curve["roles"].values():
        assert [p["step"] for p in points] == [0, 2, 4]
        assert {"perplexity", "bits_per_byte"} <= set(points[0]["metrics"])
        assert {"kl_teacher_student", "acceptance_rate"} <= set(points[0]["pairs"])
        assert points[-1]["pairs"]["kl_teacher_student"] < points[0]["pairs"]["kl_teacher_student"]  # it learnt
    # both roles start from the same pruned initialisation
    assert curve["roles"]["student"][0] == curve["roles"]["baseline"][0]
    on_policy = record["models"]["student"]["on_policy"]
    assert on_policy["fraction"] == 0.5 and on_policy["on_policy_batches"] == 2 and on_policy["sampled_tokens"] > 0
    assert "acceptance_rate_on_own_text" in record["pairs"]["gsm8k_text"]["student|teacher"]
    page = (run / "report.html").read_text()
    assert "Training curves" in page and page.count("<svg") >= 1
    assert np.isfinite(record["results"]["gsm8k_text"]["student"]["perplexity"]["value"])
