"""Feature-level KD terms (``distill.features``) for any head: hidden-state MSE through a learned
projection (TinyBERT), attention-map transfer (TinyBERT, MiniLM) and MiniLM's value–value
relation, each added with its weight to the head's own objective:

    L = [head objective: α · logit KD + (1 − α) · task loss, or the embedding / ranking loss]
        + Σ_f weight_f · L_f(student features, teacher features)

The teacher runs online on each training batch (no gradients, the suite's autocast), because
hidden states and attention maps of a whole training set are too large to cache; the logit term
keeps its cached teacher logits. Attention maps need the eager attention implementation on both
models (SDPA does not return them): it is switched on for training and restored afterwards.

The student and the learned projections are trained together as one module
(:class:`FeatureStudent`), so the projections are in the optimiser; the student saved afterwards
is the plain transformers model. Layer maps default to the student's layer selection (student
layer i ↔ teacher layer ``layers[i]``; hidden_states also pair the embeddings 0 ↔ 0), else to
TinyBERT's uniform rule.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from kdbench.backends.hf import autocast
from kdbench.config import FeatureLossConfig, SuiteConfig
from kdbench.distill.losses import HiddenStateMSE, attention_transfer, minilm_relation, record_values
from kdbench.distill.trainer import LossFn, model_inputs, report_terms
from kdbench.errors import KdbenchError
from kdbench.models.students import default_layer_map, layer_stack


def _heads(config) -> int:
    return int(config.num_attention_heads)


def _value_heads(config) -> int:
    """Heads of the value projection: key/value heads for grouped-query attention (Llama family)."""
    return int(getattr(config, "num_key_value_heads", None) or _heads(config))


def check_feature_term(spec: FeatureLossConfig, student_config, teacher_config, student_map: Callable[[], list[int]],
                       where: str) -> list[tuple[int, int]] | None:
    """What a feature term needs of the two models' configs (the pre-flight checks it before any
    work, the trainer again on the models): its (student, teacher) layer pairs in range, the same
    attention heads for attention maps, value widths that split into MiniLM's relation heads.
    ``student_map()``: the teacher layer matched to each student layer (the default pairs).
    Returns the layer pairs (None for minilm_relation, which uses the last layers)."""
    def error(message: str) -> KdbenchError:
        return KdbenchError(f"{where}: distill.features {spec.loss}: {message}")

    if spec.loss == "attention_transfer" and _heads(student_config) != _heads(teacher_config):
        raise error(f"the student has {_heads(student_config)} attention heads and the teacher "
                    f"{_heads(teacher_config)}; attention maps are compared head by head")
    if spec.loss == "minilm_relation":
        heads = _value_heads(teacher_config)
        for who, config in (("student", student_config), ("teacher", teacher_config)):
            width = _value_heads(config) * (config.hidden_size // _heads(config))
            if width % heads:
                raise error(f"the {who}'s value width {width} does not split into {heads} relation heads")
        return None
    hidden = spec.loss == "hidden_mse"  # hidden_states[0] is the embedding output
    if spec.layer_map is not None:
        pairs = [tuple(p) for p in spec.layer_map]
    else:
        pairs = ([(0, 0)] if hidden else []) + [(i + hidden, t + hidden) for i, t in enumerate(student_map())]
    top_s, top_t = student_config.num_hidden_layers + hidden, teacher_config.num_hidden_layers + hidden
    for s, t in pairs:
        if not (0 <= s < top_s and 0 <= t < top_t):
            raise error(f"layer pair ({s}, {t}) out of range (student 0..{top_s - 1}, teacher 0..{top_t - 1})")
    return pairs


class FeatureStudent(nn.Module):
    """The student and the projections of its feature losses, trained as one module. ``forward``
    returns the student's outputs with the hidden states / attention maps the losses need, and
    keeps the last layer's value vectors for MiniLM in ``values``."""

    def __init__(self, student: nn.Module, projections: nn.ModuleDict, hidden: bool, attentions: bool, values: bool):
        super().__init__()
        self.student, self.projections = student, projections
        self._kwargs = {k: True for k, on in (("output_hidden_states", hidden), ("output_attentions", attentions)) if on}
        self._values = values
        self.values: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.student.device

    def generate(self, **kwargs):
        """On-policy KD (``distill.on_policy``) samples from the student itself."""
        return self.student.generate(**kwargs)

    def forward(self, **batch):
        with record_values(self.student) if self._values else contextlib.nullcontext({}) as rec:
            out = self.student(**batch, **self._kwargs)
        self.values = rec.get("values")
        return out


class FeatureKD:
    """The ``distill.features`` terms of one task, bound to its teacher."""

    def __init__(self, specs: list[FeatureLossConfig], teacher: nn.Module, dtype: str, where: str):
        self.specs, self.teacher, self.dtype, self.where = specs, teacher, dtype, where
        self.levels = {s.loss for s in specs}
        self.n_teacher = len(layer_stack(teacher)[1])

    @property
    def attentions(self) -> bool:
        return "attention_transfer" in self.levels

    def _check(self, spec: FeatureLossConfig, student: nn.Module) -> list[tuple[int, int]] | None:
        """:func:`check_feature_term` on the models, and that MiniLM can read their value vectors."""
        pairs = check_feature_term(spec, student.config, self.teacher.config,
                                   lambda: default_layer_map(student, self.n_teacher), self.where)
        if spec.loss == "minilm_relation":
            for model in (student, self.teacher):
                try:
                    with record_values(model):
                        pass
                except ValueError as e:
                    raise KdbenchError(f"{self.where}: distill.features {spec.loss}: {e}") from None
        return pairs

    def wrap(self, student: nn.Module, head_loss: LossFn) -> tuple[FeatureStudent, LossFn, list[dict]]:
        """The module to train, its loss (head objective + weighted feature terms) and the record
        of the terms (loss, weight, resolved layer map, args)."""
        terms, projections, record = [], nn.ModuleDict(), []
        for n, spec in enumerate(self.specs):
            pairs = self._check(spec, student)
            if spec.loss == "hidden_mse":
                projections[str(n)] = HiddenStateMSE(pairs, student.config.hidden_size, self.teacher.config.hidden_size,
                                                     shared=spec.args.get("projection", "shared") == "shared")
            terms.append((n, spec, pairs))
            record.append({"loss": spec.loss, "weight": spec.weight, "layer_map": pairs, "args": dict(spec.args)})
        model = FeatureStudent(student.to(self.teacher.device), projections.to(self.teacher.device),
                               hidden="hidden_mse" in self.levels, attentions=self.attentions,
                               values="minilm_relation" in self.levels)
        teacher_kwargs = dict(model._kwargs)
        value_heads = _value_heads(self.teacher.config)

        def loss_fn(outputs, idx: np.ndarray, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            total = head_loss(outputs, idx, batch)
            with torch.no_grad(), autocast(self.dtype, self.teacher.device), \
                    (record_values(self.teacher) if model._values else contextlib.nullcontext({})) as rec:
                t_out = self.teacher(**model_inputs(batch), **teacher_kwargs)
            mask = batch["attention_mask"]
            for n, spec, pairs in terms:
                if spec.loss == "hidden_mse":
                    term = projections[str(n)](outputs.hidden_states, t_out.hidden_states, mask)
                elif spec.loss == "attention_transfer":
                    term = attention_transfer(outputs.attentions, t_out.attentions, pairs,
                                              spec.args.get("kind", "kl"), mask=mask)
                else:
                    term = minilm_relation(model.values, rec["values"], value_heads, mask=mask)
                report_terms(**{spec.loss: term})
                total = total + spec.weight * term
            return total

        return model, loss_fn, record

    @contextlib.contextmanager
    def attention_maps(self, student: nn.Module):
        """Eager attention on teacher and student while training, when attention maps are needed."""
        if not self.attentions:
            yield
            return
        before = [(m, m.config._attn_implementation) for m in (self.teacher, student)]
        for m, _ in before:
            m.set_attn_implementation("eager")
        try:
            yield
        finally:
            for m, impl in before:
                m.set_attn_implementation(impl)

    def train(self, student: nn.Module, head_loss: LossFn, run: Callable[[nn.Module, LossFn], object]):
        """``run(module, loss_fn)`` (the recipe's call of the trainer) with the feature terms added;
        returns what ``run`` returns and the terms' record."""
        model, loss_fn, record = self.wrap(student, head_loss)
        with self.attention_maps(student):
            result = run(model, loss_fn)
        return result, record


def feature_kd(suite: SuiteConfig, teacher: nn.Module, where: str) -> FeatureKD | None:
    """The suite's feature terms bound to ``teacher``, or None when only the head's loss is set."""
    if not suite.distill.features:
        return None
    return FeatureKD(list(suite.distill.features), teacher, suite.dtype, where)


def train_student(fkd: FeatureKD | None, student: nn.Module, head_loss: LossFn,
                  run: Callable[[nn.Module, LossFn], object]) -> tuple[object, dict]:
    """Train with or without feature terms; returns ``run``'s result and the record fields to add."""
    if fkd is None:
        return run(student, head_loss), {}
    result, record = fkd.train(student, head_loss, run)
    return result, {"features": record, "teacher_features": "online"}
