"""Language modelling on GSM8K solutions with the real SmolLM2-135M-Instruct: perplexity and bits
per byte against plain transformers losses, document-bootstrap CIs against the generic bootstrap,
token metrics on identical predictions, and the error of the top-k approximation against exact
full-vocabulary values for real teacher–student pairs."""
from __future__ import annotations

import pytest
import torch

from kdbench.metrics.loyalty import expected_tokens_per_call, lm_token_metrics_per_token
from kdbench.models.students import layer_selection
from kdbench.tasks.base import LoadedModel
from tests.helpers import language_modeling as shared
from tests.helpers.language_modeling import FP32

# fixtures shared with tests/unit/tasks/test_language_modeling.py (pytest finds them as attributes of this module)
setup = shared.setup


def _full_logprobs(model, tokenizer, texts: list[str]) -> list[torch.Tensor]:
    """(T, V) next-token log-probs of each text after BOS, one unpadded fp32 forward pass each."""
    out = []
    with torch.no_grad():
        for text in texts:
            ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1))
    return out


@pytest.mark.parametrize("kept, bounds", [
    # student layers kept;  max |relative error| of forward KL, reverse KL; max |abs error| of TVD
    ([i for i in range(30) if i not in (3, 8, 13, 18, 23, 27)], (0.05, 0.15, 0.02)),
    ([0, 4, 8, 12, 16, 20, 24, 29], (0.05, 0.30, 0.03)),
])
def test_topk_approximation_error_against_full_vocabulary(setup, kept, bounds):
    task, data, teacher, preds = setup
    student = LoadedModel(layer_selection(teacher.model, kept).eval(), teacher.tokenizer, "layer-selected")
    spreds = task.predict(student, data, "student", FP32)
    approx = task.score_pair(spreds, preds, FP32)

    t_full = torch.cat(_full_logprobs(teacher.model, teacher.tokenizer, data.texts)).numpy()
    s_full = torch.cat(_full_logprobs(student.model, teacher.tokenizer, data.texts)).numpy()
    exact = {k: v.mean() for k, v in lm_token_metrics_per_token(t_full, s_full).items()}
    fwd, rev, tvd = bounds
    assert approx["top1_agreement"]["value"] == pytest.approx(exact["top1_agreement"])
    assert abs(approx["kl_teacher_student"]["value"] / exact["forward_kl"] - 1) < fwd
    assert abs(approx["reverse_kl"]["value"] / exact["reverse_kl"] - 1) < rev
    assert abs(approx["tvd"]["value"] - exact["tvd"]) < tvd
    assert abs(approx["acceptance_rate"]["value"] - exact["acceptance_rate"]) < tvd
    assert approx["expected_tokens_gamma_4"]["value"] == pytest.approx(
        expected_tokens_per_call(approx["acceptance_rate"]["value"], 4))
    for name, value in approx.items():
        lo, hi = value["ci"]
        assert lo <= value["value"] <= hi, name
