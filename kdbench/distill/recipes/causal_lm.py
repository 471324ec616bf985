"""Causal LMs (GSM8K generation, language modelling): the teacher is used as it is, the student is
a pruned copy of it (layer selection), distilled token by token on the task's training texts, and
a baseline with the same initialisation, budget and seed is trained on next-token labels only.

Token-level KD (Hinton et al. 2015 applied per position, as in MiniLLM / GKD's supervised KD):

    L = α · mean_{t ∈ S} D(p_teacher(· | x_<t), q_student(· | x_<t); T) + (1 − α) · mean_{t ∈ S} −log q_student(x_t | x_<t)

where S is the set of scored positions — completion tokens (the answer, not the prompt) that are
not padding — and D is the registry loss ``distill.loss`` (forward KL, reverse KL, JSD(β)...) with
temperature T and the T² flag. Full-vocabulary teacher logits (49,152 per token for SmolLM2) are
too large to keep for a training set, so by default the teacher runs on the same batch inside the
loss, without gradients, under the suite's autocast. With ``distill.teacher_topk: k`` the teacher
runs once and its softened top-k (plus the leftover mass) is cached on disk instead
(:mod:`kdbench.distill.topk`): cheaper for several epochs or a sweep, exact on the top k only.

On-policy and mixed KD (GKD, Agarwal et al. 2024), ``distill.on_policy: {fraction: λ, ...}``: on a
share λ of the micro-batches the student samples continuations of the training prompts and the KD
term is taken on its own tokens, the teacher scoring them online (:mod:`kdbench.distill.on_policy`);
the other micro-batches are off-policy as above (online teacher or top-k cache).

Sequence-level KD (Kim & Rush 2016), ``distill.sequence_level: true``: the teacher answers each
training prompt greedily (at most ``distill.sequence_max_new_tokens`` tokens, the task's stop
strings) and the student is trained with the LM loss on those answers instead of the gold ones.
``distill.features`` terms (hidden states, attention maps) are added in either mode.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from kdbench.backends.hf import autocast
from kdbench.config import DistillConfig, SuiteConfig
from kdbench.distill.losses._common import t2
from kdbench.distill.on_policy import OnPolicy, prompts_of
from kdbench.distill.recipes.base import Recipe
from kdbench.distill.tokens import Pair, encode_pairs, right_pad, scored_positions
from kdbench.distill.topk import TopK, bucket_log_probs, cached_topk, teacher_buckets
from kdbench.distill.trainer import BatchFn, LossFn, kd_term, model_inputs, report_terms
from kdbench.errors import KdbenchError
from kdbench.models.loading import load_tokenizer
from kdbench.registry import RECIPES
from kdbench.roles import STUDENT, TEACHER
from kdbench.tasks.base import LoadedModel, Task, TrainableTask
from kdbench.timing import timed


def training_pairs(task: TrainableTask, data, tokenizer) -> list[Pair]:
    """(prompt, completion) pairs to train on, formatted as the task prompts its models (its
    ``training_texts``; a plain text is ("", text), all of it scored)."""
    return [("", item) if isinstance(item, str) else (item[0], item[1]) for item in task.training_texts(data, tokenizer)]


def token_loss(
    loss_masks: Sequence[Sequence[int]], teacher: torch.nn.Module | None = None,
    distill: DistillConfig | None = None, dtype: str = "bf16", topk: TopK | None = None,
) -> LossFn:
    """A trainer ``loss_fn``: next-token cross-entropy on the scored positions, and with a teacher
    (a model run on each batch, or a :class:`~kdbench.distill.topk.TopK` cache) and a ``distill``
    config α · KD + (1 − α) · CE, KD the registry loss on the same positions.

    An on-policy batch (it carries ``loss_mask``: the student sampled its completions) has no gold
    tokens: its loss is α · KD with the teacher run on it, which needs ``teacher`` also when a
    top-k cache serves the off-policy batches.

    Scored positions are gathered before any softmax, so padding and prompt positions cost nothing
    and cannot leak into either term."""
    if ((teacher is None) and (topk is None)) != (distill is None):
        raise ValueError("token_loss: KD needs a teacher (or its top-k cache) and a distill config")
    kd = None if distill is None else kd_term(distill)  # TAID's t is driven per step, as for classifiers

    def online(logits: torch.Tensor, keep: torch.Tensor, batch: dict) -> torch.Tensor:
        with torch.no_grad(), autocast(dtype, logits.device):
            teacher_logits = teacher(**model_inputs(batch)).logits[:, :-1][keep]
        return kd(logits, teacher_logits)

    def soft_loss(logits: torch.Tensor, keep: torch.Tensor, idx: np.ndarray, batch: dict) -> torch.Tensor:
        if topk is None:
            return online(logits, keep, batch)
        rows = topk.rows(idx)
        if len(rows) != logits.shape[0]:
            raise KdbenchError(f"teacher top-k cache: {len(rows)} cached positions for {logits.shape[0]} scored ones")
        ids, log_p = teacher_buckets(topk, rows, logits.device)  # already softened by T when cached
        log_q = bucket_log_probs(F.log_softmax(logits.float() / distill.temperature, dim=-1), ids)
        return kd(log_q, log_p, temperature=1.0, t2_scaling=False) * t2(distill.temperature, distill.t2_scaling)

    def loss_fn(outputs, idx: np.ndarray, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        sampled = "loss_mask" in batch
        if sampled and (distill is None or teacher is None):
            raise ValueError("token_loss: an on-policy batch needs KD with the teacher run online")
        keep = scored_positions(batch, None if sampled else [loss_masks[i] for i in idx]).to(outputs.logits.device)
        logits = outputs.logits[:, :-1][keep]  # (P, V): only the scored positions
        if logits.shape[0] == 0:  # a batch of prompts cut before their answers: nothing to learn
            return outputs.logits.sum() * 0.0
        if sampled:
            return distill.alpha * online(logits, keep, batch)
        ce = F.cross_entropy(logits.float(), batch["input_ids"][:, 1:][keep])
        if distill is None:
            return ce
        soft = soft_loss(logits, keep, idx, batch)
        report_terms(kd=soft, label=ce)
        return distill.alpha * soft + (1.0 - distill.alpha) * ce

    return loss_fn


def check_vocabularies(suite: SuiteConfig, teacher_vocab: int, student_vocab: int) -> None:
    """Token-level KD compares distributions over one vocabulary."""
    if student_vocab != teacher_vocab:
        raise KdbenchError(f"student.model {suite.student.model}: vocabulary of {student_vocab} tokens, the teacher's "
                           f"has {teacher_vocab} (token-level KD needs the same tokenizer)")


def teacher_answers(task: Task, suite: SuiteConfig, teacher: LoadedModel, pairs: list[Pair], max_length: int,
                    stop: Sequence[str]) -> list[Pair]:
    """Sequence-level KD data: each prompt with the teacher's greedy answer (closed by EOS, so the
    student learns to stop) in place of the gold completion, cut at the task's ``stop`` strings."""
    from kdbench.backends.causal_lm import HFCausalLM

    if any(not prompt for prompt, _ in pairs):
        raise KdbenchError(f"suite {suite.name}, task {task.name}: distill.sequence_level needs prompts to answer; "
                           "this task trains on plain texts")
    backend = HFCausalLM(teacher.model, teacher.tokenizer, suite.dtype, suite.eval.batch_size, max_length=max_length)
    answers = backend.generate([p for p, _ in pairs], suite.distill.sequence_max_new_tokens, list(stop))
    eos = teacher.tokenizer.eos_token or ""
    return [(prompt, f"{answer}{eos}") for (prompt, _), answer in zip(pairs, answers)]


@RECIPES.register("causal_lm", loss_levels=["logits"], default_loss="forward_kl", features=True,
                  settings=["sequence_level", "sequence_max_new_tokens", "teacher_topk", "on_policy"])
class CausalLMRecipe(Recipe):
    """The teacher as it is; the student distilled token by token online (or from the teacher's
    cached top-k), on its own samples for a share of the batches (on-policy), or on the teacher's
    answers (sequence-level)."""

    @classmethod
    def check_settings(cls, task: Task, suite: SuiteConfig) -> None:
        if suite.distill.sequence_level and suite.distill.loss is not None:
            raise KdbenchError(f"suite {suite.name}, task {task.name}: distill.loss {suite.distill.loss}: "
                               "sequence-level KD trains on the teacher's answers with the LM loss (no KD loss)")
        if suite.distill.sequence_level and suite.distill.teacher_topk:
            raise KdbenchError(f"suite {suite.name}, task {task.name}: distill.teacher_topk caches the teacher's "
                               "token distributions, which sequence-level KD does not use (it trains on the teacher's "
                               "answers); set one of distill.teacher_topk and distill.sequence_level")

    @classmethod
    def check_models(cls, task: Task, suite: SuiteConfig, teacher_config, student_config) -> None:
        if suite.student.model:
            check_vocabularies(suite, teacher_config.vocab_size, student_config.vocab_size)

    @classmethod
    def training_rows(cls, task: Task, suite: SuiteConfig) -> int:
        data = task.train_data(suite.data.train_rows, suite.seed)
        return len(training_pairs(task, data, load_tokenizer(suite.teacher.model, suite.teacher.revision)))

    def setup(self) -> None:
        task, suite = self.task, self.suite
        self.teacher, info = self.teacher_as_is()
        self.add_teacher(TEACHER, self.teacher, info, self.teacher.source)
        tokenizer = self.teacher.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        data = task.train_data(suite.data.train_rows, suite.seed)
        pairs = training_pairs(task, data, tokenizer)
        self.gold, self.masks = encode_pairs(tokenizer, pairs, self.max_length)
        if not any(any(m) for m in self.masks):
            raise KdbenchError(f"task {task.name}: no training tokens left within max_length {self.max_length}")
        self.train_dataset = {**task.train_record(data), "tokens": sum(len(f["input_ids"]) for f in self.gold),
                              "scored_tokens": sum(sum(m) for m in self.masks)}
        self.topk = None
        if suite.distill.sequence_level:
            with timed(self.durations, "teacher_generation_s"):
                answers = teacher_answers(task, suite, self.teacher, pairs, self.max_length, task.stop_strings())
                self.answers, self.answer_masks = encode_pairs(tokenizer, answers, self.max_length)
        elif self.k:
            with timed(self.durations, "teacher_topk_s"):
                self.topk, reused, key = cached_topk(
                    self.teacher.model, suite.teacher.model, info["revision"], self.gold, self.masks,
                    right_pad(self.pad_id), k=self.k, temperature=self.distill.temperature, dtype=suite.dtype,
                    batch_size=suite.eval.batch_size, layers=suite.teacher.layers)
            info.update(topk_cache_key=key, topk_reused=reused, topk=self.k)
        self.on_policy = self._on_policy()

    def _on_policy(self) -> OnPolicy | None:
        """The student's sampler for on-policy KD, or None (no ``distill.on_policy``, or λ = 0: off-policy)."""
        cfg = self.suite.distill.on_policy
        if cfg is None or cfg.fraction == 0:
            return None
        from accelerate import PartialState

        eos = self.teacher.model.generation_config.eos_token_id
        return OnPolicy(cfg, prompts_of(self.gold, self.masks, cfg.prompt_tokens), pad_id=self.pad_id,
                        eos_ids=eos if isinstance(eos, list) else [eos], max_length=self.max_length,
                        seed=self.seed, dtype=self.suite.dtype, rank=PartialState().process_index)

    @property
    def k(self) -> int | None:
        return self.suite.distill.teacher_topk

    def check_student(self, student: LoadedModel) -> None:
        check_vocabularies(self.suite, self.teacher.model.config.vocab_size, student.model.config.vocab_size)

    def loss_step(self, role: str, student: LoadedModel) -> LossFn:
        if role != STUDENT:
            return token_loss(self.masks)
        if self.suite.distill.sequence_level:
            return token_loss(self.answer_masks)
        if self.topk is not None:
            # on-policy batches are scored by the teacher online: their tokens are not in the cache
            return token_loss(self.masks, self.teacher.model if self.on_policy else None, self.distill,
                              self.suite.dtype, topk=self.topk)
        return token_loss(self.masks, self.teacher.model, self.distill, self.suite.dtype)

    def features(self, role: str, student: LoadedModel) -> list[dict]:
        return self.answers if role == STUDENT and self.suite.distill.sequence_level else self.gold

    def collate(self, student: LoadedModel):
        return right_pad(self.pad_id)

    def batch_fn(self, role: str) -> BatchFn | None:
        return self.on_policy if role == STUDENT else None

    def method(self, role: str) -> dict:
        d = self.distill
        if role != STUDENT:
            return {"method": "labels_only"}
        if d.sequence_level:
            return {"method": "kd", "kd_level": "sequence", "loss": "lm_on_teacher_generations",
                    "generation": {"decoding": "greedy", "max_new_tokens": d.sequence_max_new_tokens},
                    "scored_tokens": sum(sum(m) for m in self.answer_masks)}
        method = {**super().method(role), "kd_level": "token", "teacher": f"top-{self.k} cache" if self.k else "online"}
        if self.on_policy is not None:
            method["on_policy"] = self.on_policy.record()
        return method
