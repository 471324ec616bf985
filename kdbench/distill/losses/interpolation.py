"""TAID: temporally adaptive interpolated distillation (Shing et al. 2025, "TAID: Temporally
Adaptive Interpolated Distillation for Efficient Knowledge Transfer in Language Models", ICLR)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from kdbench.distill.losses._common import check_unit, kl_rows, mean_positions, soft_log_probs, t2
from kdbench.registry import LOSSES


@LOSSES.register("taid", level="logits",
                 description="KL(p_t ‖ q) to p_t = softmax((1−t)·sg(z_s) + t·z_t) (TAID, Shing et al. 2025)",
                 args={"t": {"default": 0.4, "low": 0.0, "high": 1.0,
                             "help": "interpolation: 0 the student itself, 1 the teacher (forward KL)"}})
def taid(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True,
    *, t: float = 0.4, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forward KL to an intermediate distribution between student and teacher:

        p_t = softmax((1 − t)·sg(z_s / T) + t·z_t / T)      (sg = stop-gradient: a fixed target)
        L   = s · mean_i KL(p_t ‖ q),  q = softmax(z_s / T)

    t = 1 is forward KL; t = 0 is KL(q ‖ q) = 0 with zero gradient. The gradient with respect to
    z_s is s/T · (q − p_t) per position: the student moves toward p_t, never chasing itself.
    TAID raises t over training, from t_start to 1, faster while the loss is falling:
    :class:`TAIDSchedule`.
    """
    check_unit("t", t)
    z_s = student_logits.float() / temperature
    z_t = teacher_logits.float() / temperature
    log_p_t = F.log_softmax((1 - t) * z_s.detach() + t * z_t, dim=-1)
    return t2(temperature, t2_scaling) * mean_positions(kl_rows(log_p_t, soft_log_probs(student_logits, temperature)), mask)


@dataclass
class TAIDSchedule:
    """The t of :func:`taid` over training (Shing et al. 2025, Algorithm 1). Call :meth:`update`
    once per optimiser step with that step's TAID loss; read :attr:`t` for the next step:

        δ_n = (J_{n−1} − J_n) / (J_{n−1} + ε)            relative loss decrease
        m_n = β·m_{n−1} + (1 − β)·δ_n                    its momentum
        t_{n+1} = min(t_end, max(t_lin(n), t_n + α·sigmoid(m_n)·(1 − t_n)))
        t_lin(n) = t_start + (t_end − t_start)·n / total_steps

    so t never lags the linear schedule and runs ahead of it while the student is learning fast.
    ``adaptive=False`` gives the linear schedule alone. Defaults are the paper's.
    ``state_dict``/``load_state_dict`` carry it through a checkpoint.
    """

    total_steps: int
    t_start: float = 0.4
    t_end: float = 1.0
    alpha: float = 5e-4
    beta: float = 0.99
    adaptive: bool = True
    eps: float = 1e-8
    t: float = field(init=False)
    step: int = field(init=False, default=0)
    momentum: float = field(init=False, default=0.0)
    prev_loss: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if not 0.0 <= self.t_start <= self.t_end <= 1.0:
            raise ValueError(f"need 0 <= t_start <= t_end <= 1, got t_start={self.t_start}, t_end={self.t_end}")
        self.t = self.t_start

    def linear(self, step: int) -> float:
        return self.t_start + (self.t_end - self.t_start) * min(1.0, step / self.total_steps)

    def update(self, loss: float) -> float:
        """Record step n's loss J_n; returns (and stores) t_{n+1}."""
        loss = float(loss)
        self.step += 1
        grow = 0.0
        if self.adaptive and self.prev_loss is not None:
            delta = (self.prev_loss - loss) / (self.prev_loss + self.eps)
            self.momentum = self.beta * self.momentum + (1 - self.beta) * delta
            grow = self.alpha * (1 / (1 + math.exp(-self.momentum))) * (1 - self.t)
        self.prev_loss = loss
        self.t = min(self.t_end, max(self.linear(self.step), self.t + grow))
        return self.t

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
