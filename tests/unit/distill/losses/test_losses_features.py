"""Feature-level losses (hidden states, attention, MiniLM relation, embeddings, ranking) against
hand computations in numpy, one classic mistake each."""
import math

import numpy as np
import pytest
import torch

from kdbench.distill.losses import (
    HiddenStateMSE,
    attention_transfer,
    cosine_embedding,
    hidden_mse,
    margin_mse,
    minilm_relation,
)

rng = np.random.default_rng(0)


def close(a, b, rel=1e-5):
    return math.isclose(float(torch.as_tensor(a).detach()), float(b), rel_tol=rel, abs_tol=1e-7)


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_kl_rows(p, q):
    return (p * (np.log(p) - np.log(q))).sum(-1)


# --- hidden-state MSE ----------------------------------------------------------------------------

def test_hidden_mse_projection_layer_map_and_mask():
    s_hidden = [rng.normal(size=(2, 3, 4)) for _ in range(3)]  # student: embeddings + 2 layers, width 4
    t_hidden = [rng.normal(size=(2, 3, 6)) + 3 * j for j in range(5)]  # teacher: embeddings + 4 layers, width 6
    W = rng.normal(size=(6, 4))  # y = x Wᵀ, as nn.Linear stores it
    mask = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    layer_map = {1: 2, 2: 4}

    def hand(pairs):
        per = [((s_hidden[i] @ W.T - t_hidden[j]) ** 2).mean(-1)[mask].mean() for i, j in pairs]
        return sum(per) / len(per)

    proj = torch.nn.Linear(4, 6, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor(W))
    S = [torch.tensor(x, dtype=torch.float32) for x in s_hidden]
    Tt = [torch.tensor(x, dtype=torch.float32) for x in t_hidden]
    got = hidden_mse(S, Tt, layer_map, proj, mask=torch.tensor(mask))
    assert close(got, hand(layer_map.items()), rel=1e-4)
    # classic mistake: the map read teacher-first, {teacher: student}
    assert not close(got, hand([(j % 3, i) for i, j in layer_map.items()]), rel=1e-2)
    # same widths need no projection; different widths without one is a clear error
    assert close(hidden_mse(S, S, [(1, 1)]), 0.0)
    with pytest.raises(ValueError, match="pass a projection"):
        hidden_mse(S, Tt, [(1, 1)])
    with pytest.raises(ValueError, match="out of range"):
        hidden_mse(S, Tt, {5: 1}, proj)


def test_hidden_state_mse_module_learns_its_projection():
    S = [torch.randn(2, 3, 4, requires_grad=True) for _ in range(2)]
    Tt = [torch.randn(2, 3, 6) for _ in range(3)]
    loss_fn = HiddenStateMSE({0: 0, 1: 2}, student_dim=4, teacher_dim=6)
    assert len(loss_fn.projections) == 1 and len(HiddenStateMSE({0: 0, 1: 2}, 4, 6, shared=False).projections) == 2
    loss = loss_fn(S, Tt)
    loss.backward()
    assert loss_fn.projections[0].weight.grad is not None and S[1].grad is not None


# --- attention transfer --------------------------------------------------------------------------

def _attn(b=2, h=2, n=3, mask=None):
    scores = rng.normal(size=(b, h, n, n))
    if mask is not None:
        scores = np.where(mask[:, None, None, :], scores, -np.inf)
    return np_softmax(scores)


def test_attention_transfer_kl_teacher_first_rows_over_keys():
    a_s = [_attn() for _ in range(2)]
    a_t = [_attn() for _ in range(4)]
    S = [torch.tensor(a) for a in a_s]
    Tt = [torch.tensor(a) for a in a_t]
    got = attention_transfer(S, Tt, {0: 1, 1: 3}, kind="kl")
    hand = (np_kl_rows(a_t[1], a_s[0]).mean() + np_kl_rows(a_t[3], a_s[1]).mean()) / 2
    assert close(got, hand)
    # classic mistakes: KL(student ‖ teacher); kl_div's "batchmean" on 4-D maps (sum / batch, not per row)
    assert not close(got, (np_kl_rows(a_s[0], a_t[1]).mean() + np_kl_rows(a_s[1], a_t[3]).mean()) / 2, rel=1e-2)
    batchmean = lambda p, q: (p * (np.log(p) - np.log(q))).sum() / p.shape[0]  # noqa: E731
    assert not close(got, (batchmean(a_t[1], a_s[0]) + batchmean(a_t[3], a_s[1])) / 2, rel=1e-2)


def test_attention_transfer_mse_and_padding():
    mask = np.array([[1, 1, 0], [1, 1, 1]], dtype=bool)
    a_s, a_t = _attn(mask=mask), _attn(mask=mask)
    m = torch.tensor(mask)
    keep4 = np.broadcast_to(mask[:, None, :, None] & mask[:, None, None, :], a_s.shape)
    got = attention_transfer([torch.tensor(a_s)], [torch.tensor(a_t)], [(0, 0)], kind="mse", mask=m)
    assert close(got, ((a_s - a_t) ** 2)[keep4].mean())
    kl = attention_transfer([torch.tensor(a_s)], [torch.tensor(a_t)], [(0, 0)], kind="kl", mask=m)
    keep_q = np.broadcast_to(mask[:, None, :], a_s.shape[:3])
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(a_t > 0, a_t * (np.log(a_t) - np.log(a_s)), 0.0).sum(-1)
    assert close(kl, per[keep_q].mean()) and torch.isfinite(kl)
    with pytest.raises(ValueError, match="kind"):
        attention_transfer([torch.tensor(a_s)], [torch.tensor(a_t)], [(0, 0)], kind="l1")


# --- MiniLM value relation -----------------------------------------------------------------------

def _np_relation(v, heads):
    b, n, d = v.shape
    vh = v.reshape(b, n, heads, d // heads).transpose(0, 2, 1, 3)
    return np_softmax(vh @ vh.transpose(0, 1, 3, 2) / math.sqrt(d // heads))


def test_minilm_relation_matches_hand_with_different_widths():
    v_s, v_t = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 6))
    got = minilm_relation(torch.tensor(v_s), torch.tensor(v_t), num_heads=2)
    hand = np_kl_rows(_np_relation(v_t, 2), _np_relation(v_s, 2)).mean()
    assert close(got, hand)
    # classic mistakes: the wrong direction; √(full width) instead of √(head width)
    assert not close(got, np_kl_rows(_np_relation(v_s, 2), _np_relation(v_t, 2)).mean(), rel=1e-2)

    def rel_full_scale(v, heads):
        b, n, d = v.shape
        vh = v.reshape(b, n, heads, d // heads).transpose(0, 2, 1, 3)
        return np_softmax(vh @ vh.transpose(0, 1, 3, 2) / math.sqrt(d))

    assert not close(got, np_kl_rows(rel_full_scale(v_t, 2), rel_full_scale(v_s, 2)).mean(), rel=1e-2)


def test_minilm_relation_softmax_over_keys_and_padding():
    v_s, v_t = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    mask = np.array([[1, 1, 0], [1, 1, 1]], dtype=bool)
    got = minilm_relation(torch.tensor(v_s), torch.tensor(v_t), num_heads=2, mask=torch.tensor(mask))

    def rel(v):
        b, n, d = v.shape
        vh = v.reshape(b, n, 2, d // 2).transpose(0, 2, 1, 3)
        scores = vh @ vh.transpose(0, 1, 3, 2) / math.sqrt(d // 2)
        return np_softmax(np.where(mask[:, None, None, :], scores, -np.inf))

    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(rel(v_t) > 0, rel(v_t) * (np.log(rel(v_t)) - np.log(rel(v_s))), 0.0).sum(-1)
    assert close(got, per[np.broadcast_to(mask[:, None, :], per.shape)].mean())
    # padding values change nothing. (VVᵀ is symmetric, so without padding a softmax over the query
    # axis gives the same loss; with padded keys masked it does not, and the padding would leak here.)
    v_s2 = v_s.copy()
    v_s2[0, 2] = 50.0
    assert close(got, minilm_relation(torch.tensor(v_s2), torch.tensor(v_t), num_heads=2, mask=torch.tensor(mask)))
    with pytest.raises(ValueError, match="divisible"):
        minilm_relation(torch.tensor(v_s), torch.tensor(v_t), num_heads=3)


# --- cosine embedding ----------------------------------------------------------------------------

def test_cosine_embedding_matches_hand_over_features():
    e_s, e_t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    cos = (e_s * e_t).sum(-1) / (np.linalg.norm(e_s, axis=-1) * np.linalg.norm(e_t, axis=-1))
    got = cosine_embedding(torch.tensor(e_s), torch.tensor(e_t))
    assert close(got, (1 - cos).mean())
    # classic mistake: cosine over the batch axis
    cos0 = (e_s * e_t).sum(0) / (np.linalg.norm(e_s, axis=0) * np.linalg.norm(e_t, axis=0))
    assert not close(got, (1 - cos0).mean(), rel=1e-2)
    # directions only: rescaling a row changes nothing; a projection bridges widths
    assert close(cosine_embedding(torch.tensor(e_s * [[2.0], [0.5], [3.0]]), torch.tensor(e_t)), (1 - cos).mean())
    proj = torch.nn.Linear(4, 6)
    assert cosine_embedding(torch.tensor(e_s, dtype=torch.float32), torch.randn(3, 6), proj).requires_grad


# --- Margin-MSE ----------------------------------------------------------------------------------

def test_margin_mse_matches_hand_and_ignores_offsets():
    sp, sn = np.array([2.0, 0.5]), np.array([1.0, 1.5])
    tp, tn = np.array([9.0, 4.0]), np.array([7.0, 6.0])
    hand = (((sp - sn) - (tp - tn)) ** 2).mean()  # ((1 − 2)² + (−1 + 2)²) / 2 = 1
    got = margin_mse(*(torch.tensor(x) for x in (sp, sn, tp, tn)))
    assert close(got, hand) and close(got, 1.0)
    # classic mistake: MSE of raw scores (teacher scores sit on another scale)
    assert not close(got, (((sp - tp) ** 2).mean() + ((sn - tn) ** 2).mean()) / 2, rel=1e-2)
    assert close(margin_mse(*(torch.tensor(x) for x in (sp + 10, sn + 10, tp, tn))), hand)
    # k hard negatives per query
    sn2, tn2 = np.array([[1.0, 0.0], [1.5, 2.5]]), np.array([[7.0, 8.0], [6.0, 1.0]])
    hand2 = (((sp[:, None] - sn2) - (tp[:, None] - tn2)) ** 2).mean()
    assert close(margin_mse(*(torch.tensor(x) for x in (sp, sn2, tp, tn2))), hand2)
