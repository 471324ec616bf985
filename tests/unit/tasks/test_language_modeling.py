"""Language modelling on GSM8K solutions with the real SmolLM2-135M-Instruct: perplexity and bits
per byte against plain transformers losses, document-bootstrap CIs against the generic bootstrap,
token metrics on identical predictions, and the error of the top-k approximation against exact
full-vocabulary values for real teacher–student pairs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdbench.errors import KdbenchError
from kdbench.metrics import lm as lm_metrics
from kdbench.metrics.loyalty import lm_token_metrics_per_token
from kdbench.metrics.stats import bootstrap_statistic_ci
from tests.helpers import language_modeling as shared
from tests.helpers.language_modeling import FP32

# fixtures shared with tests/integration/backends/test_language_modeling.py (pytest finds them as attributes of this module)
setup = shared.setup


def test_perplexity_matches_transformers_loss(setup):
    task, data, teacher, preds = setup
    total_nll, total_tokens = 0.0, 0
    for text in data.texts:
        ids = torch.tensor([[teacher.tokenizer.bos_token_id] + teacher.tokenizer(text, add_special_tokens=False)["input_ids"]])
        assert ids.shape[1] - 1 <= 256  # one window each: the loss below sees the same context
        with torch.no_grad():
            loss = teacher.model(ids, labels=ids).loss.item()  # mean NLL over the T predicted tokens
        total_nll += loss * (ids.shape[1] - 1)
        total_tokens += ids.shape[1] - 1
    scores = task.score(preds, FP32)
    assert preds.tokens.sum() == total_tokens
    assert scores["perplexity"]["value"] == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-4)
    n_bytes = sum(len(t.encode("utf-8")) for t in data.texts)
    assert scores["bits_per_byte"]["value"] == pytest.approx(total_nll / math.log(2) / n_bytes, rel=1e-4)
    for name in ("perplexity", "bits_per_byte"):
        lo, hi = scores[name]["ci"]
        assert lo < scores[name]["value"] < hi
    # the ratio bootstrap draws the same documents as the generic (loop) bootstrap of the statistic
    nll, tok = preds.nll, preds.tokens
    ref = bootstrap_statistic_ci(lambda a, b: math.exp(a.sum() / b.sum()), (nll, tok), 1000, 0.95, 0)
    assert scores["perplexity"]["ci"] == pytest.approx(list(ref))
    frame = preds.to_frame()
    np.testing.assert_allclose(frame["pred"], np.exp(nll / tok))
    assert frame["label"].isna().all() and frame["correct"].isna().all()


def test_identical_predictions_agree_perfectly(setup):
    task, data, teacher, preds = setup
    pairs = task.score_pair(preds, preds, FP32)
    assert pairs["top1_agreement"]["value"] == 1.0
    assert pairs["kl_teacher_student"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert pairs["reverse_kl"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert pairs["tvd"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert pairs["acceptance_rate"]["value"] == pytest.approx(1.0)
    for g in range(1, 9):
        assert pairs[f"expected_tokens_gamma_{g}"]["value"] == pytest.approx(g + 1)


def test_other_tokenizer_is_an_error(setup):
    task, data, teacher, preds = setup
    import dataclasses

    other = dataclasses.replace(preds, role="student", token_ids=[t + 1 for t in preds.token_ids])
    with pytest.raises(KdbenchError, match="tokenise the texts differently"):
        task.score_pair(other, preds, FP32)


def test_topk_metrics_exact_when_k_is_the_vocabulary():
    """With k = V nothing is imputed: the union metrics equal the full-vocabulary ones."""
    rng = np.random.default_rng(0)
    logits_t, logits_s = rng.normal(size=(2, 5, 40)) * 3
    lt = logits_t - np.log(np.exp(logits_t).sum(-1, keepdims=True))
    ls = logits_s - np.log(np.exp(logits_s).sum(-1, keepdims=True))
    order_t, order_s = np.argsort(-lt, axis=1), np.argsort(-ls, axis=1)
    got = lm_metrics.topk_token_metrics(order_t, np.take_along_axis(lt, order_t, 1), np.zeros(5),
                                        order_s, np.take_along_axis(ls, order_s, 1), np.zeros(5), vocab_size=40)
    exact = lm_token_metrics_per_token(lt, ls)
    for key in exact:
        np.testing.assert_allclose(got[key], exact[key], atol=1e-9)
