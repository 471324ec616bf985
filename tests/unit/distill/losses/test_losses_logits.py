"""Logit-level losses against hand computations in plain Python (math), one classic mistake each."""
import math

import pytest
import torch

from kdbench.distill.losses import (
    LOSSES,
    TAIDSchedule,
    forward_kl,
    generalized_jsd,
    logit_mse,
    reverse_kl,
    skew_kl,
    skew_reverse_kl,
    taid,
    tvd,
)

# two examples, three classes; the teacher is peaked, the student not
T_LOGITS = [[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]]
S_LOGITS = [[1.0, 0.0, 0.0], [0.5, 0.5, 1.0]]
t_ = torch.tensor(T_LOGITS)
s_ = torch.tensor(S_LOGITS)


def softmax(z, T=1.0):
    e = [math.exp(x / T) for x in z]
    return [x / sum(e) for x in e]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def mean_over_examples(fn, T):
    return sum(fn(softmax(t, T), softmax(s, T)) for t, s in zip(T_LOGITS, S_LOGITS)) / len(T_LOGITS)


def close(a, b, rel=1e-5):
    return math.isclose(float(torch.as_tensor(a).detach()), float(torch.as_tensor(b).detach()), rel_tol=rel, abs_tol=1e-7)


# --- reverse KL ----------------------------------------------------------------------------------

def test_reverse_kl_matches_hand_and_is_not_forward():
    T = 2.0
    hand = mean_over_examples(lambda p, q: kl(q, p), T)
    assert close(reverse_kl(s_, t_, T, t2_scaling=False), hand)
    assert close(reverse_kl(s_, t_, T, t2_scaling=True), hand * T * T)  # T² present
    # classic mistake: the forward direction
    assert not close(reverse_kl(s_, t_, T, t2_scaling=False), mean_over_examples(kl, T), rel=1e-2)


def test_softmax_is_over_the_class_axis():
    # a (2, 3) batch where softmax over axis 0 would give a different number
    hand = mean_over_examples(kl, 1.0)
    assert close(forward_kl(s_, t_, 1.0, False), hand)
    assert close(reverse_kl(s_, t_, 1.0, False), mean_over_examples(lambda p, q: kl(q, p), 1.0))
    wrong = torch.nn.functional.kl_div(torch.log_softmax(s_, 0), torch.log_softmax(t_, 0), log_target=True,
                                       reduction="sum") / 2
    assert not close(forward_kl(s_, t_, 1.0, False), wrong, rel=1e-2)


# --- generalised JSD -----------------------------------------------------------------------------

def hand_jsd(beta, T):
    def one(p, q):
        m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q)]
        return beta * kl(p, m) + (1 - beta) * kl(q, m)
    return mean_over_examples(one, T)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_jsd_interior_matches_hand(beta):
    T = 2.0
    assert close(generalized_jsd(s_, t_, T, False, beta=beta), hand_jsd(beta, T))
    assert close(generalized_jsd(s_, t_, T, True, beta=beta), hand_jsd(beta, T) * T * T)


def test_jsd_endpoints_are_forward_and_reverse_kl_not_swapped():
    T = 1.5
    fwd, rev = mean_over_examples(kl, T), mean_over_examples(lambda p, q: kl(q, p), T)
    assert not close(fwd, rev, rel=1e-2)  # the example tells the two apart
    assert close(generalized_jsd(s_, t_, T, False, beta=0.0), fwd)
    assert close(generalized_jsd(s_, t_, T, False, beta=1.0), rev)
    # and they are the directional limits of the mixture form: JSD(β)/β → KL(p‖q), JSD(β)/(1-β) → KL(q‖p)
    eps = 1e-4
    assert close(generalized_jsd(s_, t_, T, False, beta=eps) / eps, fwd, rel=1e-2)
    assert close(generalized_jsd(s_, t_, T, False, beta=1 - eps) / eps, rev, rel=1e-2)


def test_jsd_half_is_symmetric_and_bounded_by_log2():
    a = generalized_jsd(s_, t_, 1.0, False, beta=0.5)
    b = generalized_jsd(t_, s_, 1.0, False, beta=0.5)
    assert close(a, b) and 0 < a.item() < math.log(2)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(s_, t_, beta=1.5)


# --- TVD -----------------------------------------------------------------------------------------

def test_tvd_matches_hand():
    T = 2.0
    hand = mean_over_examples(lambda p, q: 0.5 * sum(abs(a - b) for a, b in zip(p, q)), T)
    assert close(tvd(s_, t_, T, False), hand)
    assert close(tvd(s_, t_, T, True), hand * T * T)
    # classic mistake: Σ|p − q| without the ½ (TVD must stay ≤ 1)
    assert close(tvd(s_, t_, T, False) * 2, 2 * hand) and tvd(torch.tensor([[50.0, 0]]), torch.tensor([[0, 50.0]])) <= 1


# --- skew KL / skew reverse KL -------------------------------------------------------------------

def test_skew_kl_matches_hand_and_mixes_the_right_side():
    lam, T = 0.1, 2.0

    def skl(p, q):
        return kl(p, [lam * pi + (1 - lam) * qi for pi, qi in zip(p, q)])

    def srkl(p, q):
        return kl(q, [lam * qi + (1 - lam) * pi for pi, qi in zip(p, q)])

    assert close(skew_kl(s_, t_, T, False, lam=lam), mean_over_examples(skl, T))
    assert close(skew_reverse_kl(s_, t_, T, False, lam=lam), mean_over_examples(srkl, T))
    assert close(skew_kl(s_, t_, T, True, lam=lam), mean_over_examples(skl, T) * T * T)
    # classic mistake: λ on the wrong distribution, KL(p ‖ (1−λ)p + λq)
    wrong = mean_over_examples(lambda p, q: kl(p, [(1 - lam) * pi + lam * qi for pi, qi in zip(p, q)]), T)
    assert not close(skew_kl(s_, t_, T, False, lam=lam), wrong, rel=1e-2)


def test_skew_endpoints():
    assert close(skew_kl(s_, t_, 2.0, True, lam=0.0), forward_kl(s_, t_, 2.0, True))
    assert close(skew_reverse_kl(s_, t_, 2.0, True, lam=0.0), reverse_kl(s_, t_, 2.0, True))
    assert skew_kl(s_, t_, lam=1.0).item() == 0.0 and skew_reverse_kl(s_, t_, lam=1.0).item() == 0.0


# --- TAID ----------------------------------------------------------------------------------------

def test_taid_matches_hand_and_target_is_interpolated_logits():
    t, T = 0.3, 2.0

    def one(zt, zs):
        p_t = softmax([(1 - t) * b / T + t * a / T for a, b in zip(zt, zs)])
        return kl(p_t, softmax(zs, T))

    hand = sum(one(a, b) for a, b in zip(T_LOGITS, S_LOGITS)) / 2
    assert close(taid(s_, t_, T, False, t=t), hand)
    assert close(taid(s_, t_, T, True, t=t), hand * T * T)
    # classic mistake: interpolating probabilities instead of logits
    wrong = sum(kl([(1 - t) * q + t * p for p, q in zip(softmax(a, T), softmax(b, T))], softmax(b, T))
                for a, b in zip(T_LOGITS, S_LOGITS)) / 2
    assert not close(taid(s_, t_, T, False, t=t), wrong, rel=1e-2)


def test_taid_endpoints_and_stop_gradient():
    assert close(taid(s_, t_, 2.0, True, t=1.0), forward_kl(s_, t_, 2.0, True))
    s = s_.clone().requires_grad_(True)
    loss0 = taid(s, t_, 1.0, False, t=0.0)
    loss0.backward()
    assert loss0.item() == pytest.approx(0.0, abs=1e-7) and s.grad.abs().max() < 1e-7
    # gradient is (q − p_t)/N per example: the target is a constant (classic mistake: no stopgrad)
    t = 0.5
    s = s_.clone().requires_grad_(True)
    taid(s, t_, 1.0, False, t=t).backward()
    for i in range(2):
        q = softmax(S_LOGITS[i])
        p_t = softmax([(1 - t) * b + t * a for a, b in zip(T_LOGITS[i], S_LOGITS[i])])
        for c in range(3):
            assert close(s.grad[i, c], (q[c] - p_t[c]) / 2, rel=1e-4)


def test_taid_schedule_linear_and_adaptive():
    lin = TAIDSchedule(total_steps=4, t_start=0.4, t_end=1.0, adaptive=False)
    assert [round(lin.update(1.0), 6) for _ in range(5)] == [0.55, 0.7, 0.85, 1.0, 1.0]
    ada = TAIDSchedule(total_steps=1000, alpha=0.1, beta=0.5)
    assert ada.t == 0.4
    ada.update(2.0)  # first step: no previous loss, the linear schedule
    assert close(ada.t, 0.4 + 0.6 / 1000)
    t1 = ada.t
    ada.update(1.0)  # loss halved: δ = 0.5, m = 0.25, Δt = 0.1·sigmoid(0.25)·(1 − t1)
    expected = t1 + 0.1 * (1 / (1 + math.exp(-0.25))) * (1 - t1)
    assert close(ada.t, expected) and ada.t > ada.linear(2)
    state = ada.state_dict()
    again = TAIDSchedule(total_steps=1)
    again.load_state_dict(state)
    assert again == ada


# --- logit MSE -----------------------------------------------------------------------------------

def test_logit_mse_matches_hand_on_logits_not_probabilities():
    T = 4.0
    hand = sum((a - b) ** 2 for rs, rt in zip(S_LOGITS, T_LOGITS) for a, b in zip(rs, rt)) / 6
    assert close(logit_mse(s_, t_, T, True), hand)  # T cancels with T² scaling
    assert close(logit_mse(s_, t_, T, False), hand / T**2)
    probs = sum((a - b) ** 2 for rs, rt in zip(S_LOGITS, T_LOGITS) for a, b in zip(softmax(rs), softmax(rt))) / 6
    assert not close(logit_mse(s_, t_, 1.0, True), probs, rel=1e-2)


# --- shared behaviour ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "generalized_jsd", "tvd", "skew_kl", "skew_reverse_kl",
                                  "taid", "logit_mse"])
def test_every_logit_loss_zero_at_teacher_masks_padding_and_has_gradients(name):
    fn = LOSSES[name]
    assert fn(t_, t_, 2.0, True).item() == pytest.approx(0.0, abs=1e-6)
    # (batch, length, vocab) token logits: a masked position changes nothing
    torch.manual_seed(0)
    s3, t3 = torch.randn(2, 3, 5, requires_grad=True), torch.randn(2, 3, 5)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    full = fn(s3, t3, 2.0, True, mask=mask)
    t_alt = t3.clone()
    t_alt[~mask] = 100.0
    assert close(full, fn(s3, t_alt, 2.0, True, mask=mask))
    kept = torch.stack([fn(s3[b, j][None], t3[b, j][None], 2.0, True) for b, j in mask.nonzero().tolist()]).mean()
    assert close(full, kept)
    full.backward()
    assert torch.isfinite(s3.grad).all() and s3.grad[~mask].abs().max() == 0
