"""The teacher top-k cache for token-level KD: what is stored (checked against torch.topk of the
teacher run on each example alone), the k + 1 bucket loss (equal to the online full-vocabulary loss
when k is the vocabulary, a lower bound of forward KL below it), and the safetensors cache entry."""
import math

import pytest

from tests.helpers import topk_cache as shared

# fixtures shared with tests/unit/distill/test_topk_cache.py (pytest finds them as attributes of this module)
student = shared.student


TOPK_SUITE = """
name: topk
tasks: [gsm8k_text]
seed: 0
dtype: bf16
max_length: 64
data: {train_rows: 8, eval_rows: 2}
teacher: {model: HuggingFaceTB/SmolLM2-135M-Instruct, finetune: null}
student: {builder: layer_selection, layers: [0, 29]}
distill: {loss: forward_kl, temperature: 2.0, teacher_topk: 8, epochs: 1, batch_size: 4, lr: 1.0e-3}
baseline: false
eval: {batch_size: 8, bootstrap_samples: 200, efficiency: false}
"""


@pytest.mark.slow
def test_teacher_topk_from_a_suite_and_reused_by_a_second_run(tmp_path, monkeypatch, data_dir):
    """``distill.teacher_topk: 8`` in a suite file: train-and-eval distils from the cached top-8 (the
    record says so), and a second run with another student seed (a sweep) reads the same entry
    instead of running the teacher over the training set again."""
    from kdbench.config import load_suite
    from kdbench.distill.run import train_and_eval
    from kdbench.report.record import read_record

    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "topk.yaml"
    path.write_text(TOPK_SUITE)
    runs = [train_and_eval(load_suite(str(path), overrides), reports_dir=tmp_path / "reports", leaderboard_dir=None)
            for overrides in ([], ["distill.seed=1"])]
    first, second = (read_record(r.run_dir) for r in runs)
    for record in (first, second):
        teacher, student = record["models"]["teacher"], record["models"]["student"]
        assert teacher["topk"] == 8 and student["teacher"] == "top-8 cache" and student["kd_level"] == "token"
        assert student["train_steps"] == 2 and math.isfinite(student["train_final_loss"])
        assert record["config"]["distill"]["teacher_topk"] == 8
        assert "perplexity" in record["results"]["gsm8k_text"]["student"]
    assert first["models"]["teacher"]["topk_reused"] is False
    assert second["models"]["teacher"]["topk_reused"] is True
    assert second["models"]["teacher"]["topk_cache_key"] == first["models"]["teacher"]["topk_cache_key"]
    assert len(list((tmp_path / "cache" / "teacher_topk").glob("*.safetensors"))) == 1
    # the student seed changed the student, not the teacher's targets
    assert second["models"]["student"]["train_final_loss"] != first["models"]["student"]["train_final_loss"]
