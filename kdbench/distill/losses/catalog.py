"""What losses exist: name, level, one-line description and config arguments. No torch here.

The catalog is what configs are validated against and what ``kdbench losses`` prints, so both stay
fast (importing torch costs seconds). ``kdbench.distill.losses.LOSSES`` maps the same names to the
functions; a test keeps the two in step (names, and each function's keyword arguments).

Levels say what a loss compares:

- ``logits``: student vs teacher logits. All share one signature,
  ``fn(student_logits, teacher_logits, temperature=1.0, t2_scaling=True, *, mask=None, **args)``,
  and any of them can be ``distill.loss`` in a suite, with ``distill.loss_args`` for ``args``.
- ``hidden``, ``attention``, ``embedding``, ``ranking``: feature-level losses taking the tensors
  they need (hidden states, attention maps or value vectors, embeddings, relevance scores).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

LEVELS = ("logits", "hidden", "attention", "embedding", "ranking")


@dataclass(frozen=True)
class Arg:
    """A numeric loss argument settable from ``distill.loss_args``, with its closed range."""

    name: str
    default: float
    low: float
    high: float
    help: str

    def check(self, loss: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"loss '{loss}': argument '{self.name}' must be a number, got {value!r}")
        if not self.low <= value <= self.high:
            raise ValueError(f"loss '{loss}': argument '{self.name}' must be in [{self.low:g}, {self.high:g}], got {value!r}")
        return float(value)


@dataclass(frozen=True)
class LossInfo:
    name: str
    level: str
    description: str
    args: tuple[Arg, ...] = field(default=())


_unit = dict(low=0.0, high=1.0)

CATALOG: dict[str, LossInfo] = {
    info.name: info
    for info in (
        LossInfo("forward_kl", "logits", "KL(teacher ‖ student) of temperature-softened distributions (Hinton et al. 2015)"),
        LossInfo("reverse_kl", "logits", "KL(student ‖ teacher): mode-seeking (MiniLLM, Gu et al. 2024)"),
        LossInfo("generalized_jsd", "logits", "generalised JSD(β): β=0 forward KL, β=1 reverse KL (GKD, Agarwal et al. 2024)",
                 (Arg("beta", 0.5, help="mixture weight of the teacher; 0 forward KL, 1 reverse KL", **_unit),)),
        LossInfo("tvd", "logits", "total variation distance ½·Σ|p − q| (Wen et al. 2023, f-divergence KD)"),
        LossInfo("skew_kl", "logits", "skew KL(p ‖ λp + (1−λ)q) (DistiLLM, Ko et al. 2024)",
                 (Arg("lam", 0.1, help="skew λ: weight of the teacher in the mixture; 0 is forward KL", **_unit),)),
        LossInfo("skew_reverse_kl", "logits", "skew reverse KL(q ‖ λq + (1−λ)p) (DistiLLM, Ko et al. 2024)",
                 (Arg("lam", 0.1, help="skew λ: weight of the student in the mixture; 0 is reverse KL", **_unit),)),
        LossInfo("taid", "logits", "KL(p_t ‖ q) to p_t = softmax((1−t)·sg(z_s) + t·z_t) (TAID, Shing et al. 2025)",
                 (Arg("t", 0.4, help="interpolation: 0 the student itself, 1 the teacher (forward KL)", **_unit),)),
        LossInfo("logit_mse", "logits", "mean squared error between logits (Ba & Caruana 2014; Kim et al. 2021)"),
        LossInfo("hidden_mse", "hidden", "MSE between projected student and teacher hidden states of mapped layers (TinyBERT)"),
        LossInfo("attention_transfer", "attention", "KL or MSE between attention distributions of mapped layers (TinyBERT, MiniLM)"),
        LossInfo("minilm_relation", "attention", "KL between value–value self-attention relations, last layer (MiniLM, Wang et al. 2020)"),
        LossInfo("cosine_embedding", "embedding", "1 − cosine similarity of student and teacher embeddings (DistilBERT)"),
        LossInfo("margin_mse", "ranking", "MSE between student and teacher score margins s(q,d+) − s(q,d−) (Hofstätter et al. 2020)",
                 (Arg("negatives", 4, low=1, high=100, help="hard negatives per query, mined from the teacher's ranking"),)),
    )
}


# Where each level applies: the heads, and the suite key that selects a loss of that level.
# Feature levels run on the models' hidden states and attention maps, so every transformer head
# takes them (as ``distill.features`` terms, added to the head's own objective).
APPLIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "logits": ("distill.loss", ("classification", "token_classification", "causal_lm")),
    "hidden": ("distill.features", ("classification", "regression", "token_classification", "embedding", "causal_lm")),
    "attention": ("distill.features", ("classification", "regression", "token_classification", "embedding", "causal_lm")),
    "embedding": ("distill.loss", ("embedding",)),
    "ranking": ("distill.loss", ("embedding",)),
}

# Options of the feature-level losses in ``distill.features[].args``: name -> allowed values.
FEATURE_OPTIONS: dict[str, dict[str, tuple]] = {
    "hidden_mse": {"projection": ("shared", "per_layer")},
    "attention_transfer": {"kind": ("kl", "mse")},
    "minilm_relation": {},
}


def check_feature_loss(name: str, args: dict[str, Any], has_layer_map: bool) -> str:
    """``name`` if it can be a ``distill.features`` term with these ``args``, else a ValueError."""
    if name not in FEATURE_OPTIONS:
        known = ", ".join(FEATURE_OPTIONS)
        level = f" ({CATALOG[name].level}-level, set it as distill.loss)" if name in CATALOG else ""
        raise ValueError(f"loss '{name}' is not a feature-level loss{level}; distill.features takes: {known}")
    options = FEATURE_OPTIONS[name]
    for key, value in args.items():
        if key not in options:
            raise ValueError(f"unknown argument '{key}' for feature loss '{name}' (its arguments: {', '.join(options) or 'none'})")
        if value not in options[key]:
            raise ValueError(f"feature loss '{name}': '{key}' must be one of {', '.join(options[key])}, got {value!r}")
    if name == "minilm_relation" and has_layer_map:
        raise ValueError("minilm_relation works on the last layer only: drop its layer_map")
    return name


def logit_losses() -> list[str]:
    return [name for name, info in CATALOG.items() if info.level == "logits"]


def check_logit_loss(name: str) -> str:
    """``name`` if it is a registered logit-level loss, else a ValueError naming the known ones."""
    known = ", ".join(logit_losses())
    info = CATALOG.get(name)
    if info is None:
        raise ValueError(f"unknown loss '{name}' (logit-level losses: {known})")
    if info.level != "logits":
        raise ValueError(f"loss '{name}' works on {info.level}, not logits; distill.loss takes one of: {known}")
    return name


def check_loss(name: str) -> str:
    """``name`` if it is a registered loss of any level, else a ValueError naming the known ones."""
    if name not in CATALOG:
        raise ValueError(f"unknown loss '{name}' (known: {', '.join(CATALOG)})")
    return name


def check_loss_args(name: str, args: dict[str, Any]) -> dict[str, float]:
    """Validated ``loss_args`` for loss ``name``: known argument names, numbers in range."""
    spec = {a.name: a for a in CATALOG[name].args}
    for key in args:
        if key not in spec:
            takes = ", ".join(spec) if spec else "none"
            raise ValueError(f"unknown argument '{key}' for loss '{name}' (its arguments: {takes})")
    return {key: spec[key].check(name, value) for key, value in args.items()}
