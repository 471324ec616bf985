import math

import torch

from kdbench.config import DistillConfig
from kdbench.distill.losses import forward_kl
from kdbench.distill.trainer import kd_objective


def _hand_kl(t_logits, s_logits, T):
    """KL(p‖q) for one example, written out with math."""
    p = [math.exp(z / T) for z in t_logits]
    q = [math.exp(z / T) for z in s_logits]
    p = [x / sum(p) for x in p]
    q = [x / sum(q) for x in q]
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_forward_kl_matches_hand_computation_with_t2_scaling():
    t = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    s = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 1.0]])
    T = 2.0
    hand = sum(_hand_kl(t[i].tolist(), s[i].tolist(), T) for i in range(2)) / 2
    assert math.isclose(forward_kl(s, t, T, t2_scaling=True).item(), hand * T * T, rel_tol=1e-6)
    assert math.isclose(forward_kl(s, t, T, t2_scaling=False).item(), hand, rel_tol=1e-6)


def test_forward_kl_direction_and_zero():
    t = torch.tensor([[3.0, 0.0]])
    s = torch.tensor([[0.0, 1.0]])
    assert forward_kl(t, t, 2.0).item() == 0.0
    # KL(p_teacher ‖ q_student), not the reverse
    assert math.isclose(forward_kl(s, t, 1.0).item(), _hand_kl([3.0, 0.0], [0.0, 1.0], 1.0), rel_tol=1e-6)
    assert not math.isclose(forward_kl(s, t, 1.0).item(), _hand_kl([0.0, 1.0], [3.0, 0.0], 1.0), rel_tol=1e-3)


def test_kd_objective_mixes_by_alpha():
    t = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    s = torch.tensor([[0.3, 0.1], [0.2, -0.4]], requires_grad=True)
    y = torch.tensor([0, 1])
    cfg = DistillConfig(loss="forward_kl", alpha=0.3, temperature=4.0, t2_scaling=True)
    expected = 0.3 * forward_kl(s, t, 4.0, True) + 0.7 * torch.nn.functional.cross_entropy(s, y)
    got = kd_objective(cfg)(s, y, t)
    assert torch.allclose(got, expected)
    got.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_forward_kl_is_bit_identical_to_the_quickstart_loss():
    """The quickstart's KD numbers must not move: same values and gradients as kl_div "batchmean"."""
    torch.manual_seed(0)
    for _ in range(20):
        s = (torch.randn(32, 2) * 3).requires_grad_(True)
        t = torch.randn(32, 2) * 5
        log_q = torch.log_softmax(s / 4.0, dim=-1)
        ref = torch.nn.functional.kl_div(log_q, torch.log_softmax(t / 4.0, -1), log_target=True,
                                         reduction="batchmean") * 16.0
        (g_ref,) = torch.autograd.grad(ref, s)
        got = forward_kl(s, t, 4.0, True)
        (g_got,) = torch.autograd.grad(got, s)
        assert got.item() == ref.item() and torch.equal(g_got, g_ref)
