"""The teacher top-k cache for token-level KD: what is stored (checked against torch.topk of the
teacher run on each example alone), the k + 1 bucket loss (equal to the online full-vocabulary loss
when k is the vocabulary, a lower bound of forward KL below it), and the safetensors cache entry."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdbench.config import DistillConfig
from kdbench.data import DatasetSpec, load_split
from kdbench.distill.recipes.causal_lm import token_loss
from kdbench.distill.tokens import encode_pairs, right_pad
from kdbench.distill.topk import cached_topk, compute_topk
from kdbench.models.loading import load_tokenizer
from tests.helpers import SMOLLM
from tests.helpers import topk_cache as shared

# fixtures shared with tests/integration/recipes/test_topk_cache.py (pytest finds them as attributes of this module)
student = shared.student


PAD = 2


@pytest.fixture(scope="module")
def data(data_dir):
    tok = load_tokenizer(SMOLLM)
    loaded = load_split(DatasetSpec("openai/gsm8k", "main", "test"), rows=2)
    pairs = [(f"Question: {q}\nAnswer:", f" {a}{tok.eos_token}") for q, a in zip(loaded.rows["question"], loaded.rows["answer"])]
    return encode_pairs(tok, pairs, max_length=80)  # lm-eval gsm8k's prompt and target


def test_cached_rows_are_the_teachers_softened_top_k(lm, data):
    feats, masks = data
    topk = compute_topk(lm, feats, masks, right_pad(PAD), k=8, temperature=2.0, dtype="fp32", batch_size=2)
    assert topk.offsets.tolist() == [0, sum(masks[0][1:]), sum(masks[0][1:]) + sum(masks[1][1:])]
    for i, (feat, mask) in enumerate(zip(feats, masks)):
        with torch.no_grad():
            logits = lm(input_ids=torch.tensor([feat["input_ids"]])).logits[0, :-1]
        log_p = F.log_softmax(logits[torch.tensor(mask[1:], dtype=torch.bool)] / 2.0, -1)
        top = log_p.topk(8, -1)
        rows = slice(topk.offsets[i], topk.offsets[i + 1])
        assert np.array_equal(topk.ids[rows], top.indices.numpy())
        np.testing.assert_allclose(topk.logprobs[rows], top.values.numpy(), atol=2e-5)
        np.testing.assert_allclose(topk.rest[rows], 1 - top.values.exp().sum(-1).numpy(), atol=2e-5)
    total = np.exp(topk.logprobs).sum(-1) + topk.rest
    np.testing.assert_allclose(total, 1.0, atol=1e-5)  # leftover mass kept: the buckets sum to one


def _both_losses(lm, student, data, k, loss="forward_kl", temperature=2.0):
    feats, masks = data
    batch = right_pad(PAD)(feats)
    cfg = DistillConfig(loss=loss, temperature=temperature, alpha=1.0)  # KD term only
    topk = compute_topk(lm, feats, masks, right_pad(PAD), k=k, temperature=temperature, dtype="fp32")
    with torch.no_grad():
        out = student(**batch)
    online = token_loss(masks, lm, cfg, dtype="fp32")(out, np.arange(2), batch)
    cached = token_loss(masks, distill=cfg, topk=topk)(out, np.arange(2), batch)
    return online.item(), cached.item()


def test_full_vocabulary_cache_gives_the_online_loss(lm, student, data):
    online, cached = _both_losses(lm, student, data, k=lm.config.vocab_size)
    assert cached == pytest.approx(online, rel=1e-4)


@pytest.mark.parametrize("k", [1, 16, 256])
def test_top_k_forward_kl_is_a_lower_bound_that_tightens_with_k(lm, student, data, k):
    online, cached = _both_losses(lm, student, data, k=k)
    assert 0 < cached <= online * (1 + 1e-5)
    if k == 256:
        assert cached > 0.5 * online


def test_cache_entry_is_reused_keyed_and_rebuilt_when_corrupt(lm, data, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path))
    feats, masks = data
    args = dict(k=4, temperature=1.0, dtype="bf16")
    first, reused, key = cached_topk(lm, SMOLLM, "rev-a", feats, masks, right_pad(PAD), **args)
    assert not reused
    path = tmp_path / "teacher_topk" / f"{key}.safetensors"
    assert path.is_file() and path.read_bytes()[:8]  # safetensors: 8-byte header length first
    again, reused, key2 = cached_topk(lm, SMOLLM, "rev-a", feats, masks, right_pad(PAD), **args)
    assert reused and key2 == key
    for name in ("offsets", "ids", "logprobs", "rest"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    # a different teacher revision, temperature or data is a different entry
    assert cached_topk(lm, SMOLLM, "rev-b", feats, masks, right_pad(PAD), **args)[2] != key
    assert cached_topk(lm, SMOLLM, "rev-a", feats, masks, right_pad(PAD), **{**args, "temperature": 2.0})[2] != key
    assert cached_topk(lm, SMOLLM, "rev-a", feats[:1], masks[:1], right_pad(PAD), **args)[2] != key
    path.write_bytes(b"\x00" * 40)  # truncated / corrupt
    rebuilt, reused, _ = cached_topk(lm, SMOLLM, "rev-a", feats, masks, right_pad(PAD), **args)
    assert not reused and np.array_equal(rebuilt.ids, first.ids)


def test_teacher_topk_is_a_head_setting_the_other_heads_refuse(tmp_path):
    """``distill.teacher_topk`` on a classifier: one line naming the setting and the heads that take it,
    before any model is loaded."""
    from kdbench.config import load_suite
    from kdbench.distill.recipes import recipe
    from kdbench.errors import KdbenchError
    from kdbench.tasks import get_task

    suite = load_suite("quickstart", ["distill.teacher_topk=8"])
    task = get_task("sst2")
    with pytest.raises(KdbenchError, match=r"task sst2 \(classification head\): distill.teacher_topk is for "
                                           r"causal_lm tasks; this recipe cannot honour it"):
        recipe(task).check(task, suite)
