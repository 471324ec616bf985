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
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kdbench import devices
from kdbench.backends.hf import autocast
from kdbench.config import DistillConfig, SuiteConfig
from kdbench.data import LoadedSplit
from kdbench.distill import curves
from kdbench.distill.losses._common import t2
from kdbench.distill.on_policy import OnPolicy, prompts_of
from kdbench.distill.recipes import BASELINE, STUDENT, TEACHER, Trained
from kdbench.distill.recipes.common import (
    check_batches,
    require,
    require_derived_student,
    require_logit_loss,
    require_teacher_layers,
    save_student,
    timed,
    where,
)
from kdbench.distill.recipes.features import feature_kd, train_student
from kdbench.distill.topk import TopK, bucket_log_probs, cached_topk, teacher_buckets
from kdbench.distill.trainer import LossFn, kd_term, model_inputs, report_terms, train
from kdbench.errors import KdbenchError
from kdbench.models.loading import count_parameters, load_for_head, load_tokenizer, model_revision
from kdbench.models.students import build_student
from kdbench.tasks.base import LoadedModel, RunSettings, Task

# (prompt, completion): the loss scores the completion's tokens given the prompt; a language-
# modelling text is ("", text).
Pair = tuple[str, str]


# --------------------------------------------------------------------------------------------------
# training data
# --------------------------------------------------------------------------------------------------
def train_split(task: Task, rows: int | None, seed: int) -> tuple[Any, LoadedSplit]:
    """The task's shuffled training data (its own ``train_data`` when it has one, e.g. the reasoning
    and language-modelling families) and the split it came from (for the run record)."""
    if hasattr(task, "train_data"):
        data = task.train_data(rows, seed)
    else:
        split = task.spec.dataset.train_split if task.spec.dataset is not None else None
        if split is None:
            raise KdbenchError(f"task {task.name}: no training split is defined (dataset.train_split)")
        data = task.load(split, rows, shuffle_seed=seed)
    return data, data if isinstance(data, LoadedSplit) else data.split


def training_pairs(task: Task, data: Any, tokenizer) -> list[Pair]:
    """(prompt, completion) pairs to train on, formatted as the task prompts its models.

    The task says it through ``training_texts(data, tokenizer)`` (a str item is a plain text, all
    of it scored). Without that method (e.g. lm-eval bridge tasks), on a ``LoadedSplit``: a
    ``question``/``answer`` dataset (GSM8K) is formatted as lm-eval's gsm8k prompts it, prompt
    "Question: {question}\nAnswer:" and completion " {answer}" closed by the end-of-sequence token
    (so the student learns to stop); a ``text`` dataset is used as plain text.
    """
    if hasattr(task, "training_texts"):
        items = task.training_texts(data, tokenizer)
        return [("", item) if isinstance(item, str) else (item[0], item[1]) for item in items]
    columns = data.rows.column_names
    if {"question", "answer"} <= set(columns):
        eos = tokenizer.eos_token or ""
        return [(f"Question: {q}\nAnswer:", f" {a}{eos}") for q, a in zip(data.rows["question"], data.rows["answer"])]
    if "text" in columns:
        return [("", t) for t in data.rows["text"] if t and t.strip()]
    raise KdbenchError(
        f"task {task.name}: cannot tell the training texts (no training_texts method, and the "
        f"columns {', '.join(columns)} have neither question/answer nor text)"
    )


def encode_pairs(tokenizer, pairs: Sequence[Pair], max_length: int) -> tuple[list[dict], list[list[int]]]:
    """Token features (input_ids, attention_mask) and, per example, a 0/1 mask marking the tokens
    the loss scores (the completion's). Prompt and completion are tokenised apart and joined, so
    the boundary is exact; texts longer than ``max_length`` tokens are cut at the end.

    A plain text (empty prompt) starts with the prefix token — BOS, else EOS — so that its first
    token is learnt as the language-modelling family scores it (lm-eval's rolling log-likelihood).
    """
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    # tokenizers that prepend BOS themselves (Llama 2) get it once, at the start of a prompt
    bos = tokenizer.bos_token_id if getattr(tokenizer, "add_bos_token", False) else None
    features, masks = [], []
    for prompt, completion in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else [prefix]
        if bos is not None and p[:1] != [bos]:
            p = [bos] + p
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        ids, mask = (p + c)[:max_length], ([0] * len(p) + [1] * len(c))[:max_length]
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
        masks.append(mask)
    return features, masks


def right_pad(pad_id: int):
    """A collate function padding token features on the right (causal LMs: positions stay 0..n−1
    and a sequence's logits do not depend on the padding after it)."""
    def collate(features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            ids[row, : len(f["input_ids"])] = torch.as_tensor(f["input_ids"])
            attention[row, : len(f["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": attention}

    return collate


# --------------------------------------------------------------------------------------------------
# the loss
# --------------------------------------------------------------------------------------------------
def scored_positions(batch: dict[str, torch.Tensor], loss_masks: Sequence[Sequence[int]] | None) -> torch.Tensor:
    """(B, L−1) bool: position t predicts token t+1, scored when token t+1 is a completion token
    and not padding. ``loss_masks`` are the batch's per-example masks, in batch order; None: the
    batch's own ``loss_mask`` (an on-policy batch, whose completions the student sampled)."""
    ids = batch["input_ids"]
    if loss_masks is None:
        target = batch["loss_mask"].bool()
    else:
        target = torch.zeros_like(ids, dtype=torch.bool)
        for row, mask in enumerate(loss_masks):
            target[row, : len(mask)] = torch.as_tensor(mask, dtype=torch.bool)
    return target[:, 1:] & batch["attention_mask"][:, 1:].bool()


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

    loss_fn.taid = None if kd is None else kd.taid
    return loss_fn


# --------------------------------------------------------------------------------------------------
# the recipe
# --------------------------------------------------------------------------------------------------
def _check_teacher(task: Task, suite: SuiteConfig) -> None:
    if suite.teacher.finetune is not None:
        raise KdbenchError(
            f"suite {suite.name}: teacher.finetune must be null for the causal-LM task {task.name} "
            f"(kdbench uses a causal teacher as it is and does not fine-tune it)"
        )


def _teacher(suite: SuiteConfig, tokenizer) -> tuple[LoadedModel, dict]:
    spec = suite.teacher
    model = load_for_head(spec.model, "causal_lm", spec.revision, devices.resolve(suite.device)).eval()
    info = {"id": spec.model, "revision": model_revision(spec.model, spec.revision),
            "params": count_parameters(model), "finetuned": False}
    return LoadedModel(model, tokenizer, spec.model), info


def check_vocabularies(suite: SuiteConfig, teacher_vocab: int, student_vocab: int) -> None:
    """Token-level KD compares distributions over one vocabulary."""
    if student_vocab != teacher_vocab:
        raise KdbenchError(f"student.model {suite.student.model}: vocabulary of {student_vocab} tokens, the teacher's "
                           f"has {teacher_vocab} (token-level KD needs the same tokenizer)")


def _student_init(teacher: torch.nn.Module, suite: SuiteConfig) -> tuple[torch.nn.Module, dict]:
    """The student before training and how it was made (builder, layer map)."""
    cfg = suite.student
    if cfg.builder == "pretrained":
        student = load_for_head(cfg.model, "causal_lm", cfg.revision, teacher.device)
        check_vocabularies(suite, teacher.config.vocab_size, student.config.vocab_size)
        return student, {"builder": "pretrained", "init_from": cfg.model}
    return build_student(teacher, cfg, suite.seed)


def teacher_answers(task: Task, suite: SuiteConfig, teacher: LoadedModel, pairs: list[Pair]) -> list[Pair]:
    """Sequence-level KD data: each prompt with the teacher's greedy answer (closed by EOS, so the
    student learns to stop) in place of the gold completion."""
    from kdbench.backends.causal_lm import HFCausalLM

    if any(not prompt for prompt, _ in pairs):
        raise KdbenchError(f"suite {suite.name}, task {task.name}: distill.sequence_level needs prompts to answer; "
                           "this task trains on plain texts")
    generation = getattr(getattr(task, "spec", None), "generation", None)
    stop = list(generation.stop) if generation is not None else []
    backend = HFCausalLM(teacher.model, teacher.tokenizer, suite.dtype, suite.eval.batch_size,
                         max_length=task.max_length(RunSettings.of(suite)))
    answers = backend.generate([p for p, _ in pairs], suite.distill.sequence_max_new_tokens, stop)
    eos = teacher.tokenizer.eos_token or ""
    return [(prompt, f"{answer}{eos}") for (prompt, _), answer in zip(pairs, answers)]


def _on_policy(suite: SuiteConfig, teacher: torch.nn.Module, features: list[dict], loss_masks: list[list[int]],
               pad_id: int, max_length: int) -> OnPolicy | None:
    """The student's sampler for on-policy KD, or None (no ``distill.on_policy``, or λ = 0: off-policy)."""
    cfg = suite.distill.on_policy
    if cfg is None or cfg.fraction == 0:
        return None
    from accelerate import PartialState

    eos = teacher.generation_config.eos_token_id
    return OnPolicy(cfg, prompts_of(features, loss_masks, cfg.prompt_tokens), pad_id=pad_id,
                    eos_ids=eos if isinstance(eos, list) else [eos], max_length=max_length,
                    seed=suite.seed, dtype=suite.dtype, rank=PartialState().process_index)


def check(task: Task, suite: SuiteConfig) -> None:
    """What the suite alone must say for this recipe (run first, and by the pre-flight for every task)."""
    require(suite, "teacher", "student")
    _check_teacher(task, suite)
    if not suite.distill.sequence_level:
        require_logit_loss(suite, task)
    require_teacher_layers(suite, task, finetunes=False)
    require_derived_student(suite, task, pretrained=True)


def check_data(task: Task, suite: SuiteConfig) -> None:
    """The training batches fit in the training texts."""
    data, _ = train_split(task, suite.data.train_rows, suite.seed)
    pairs = training_pairs(task, data, load_tokenizer(suite.teacher.model, suite.teacher.revision))
    check_batches(suite, task, len(pairs), {"distill": suite.distill})


def run(task: Task, suite: SuiteConfig, run_dir: Path) -> Trained:
    check(task, suite)
    durations: dict[str, float] = {}
    tokenizer = load_tokenizer(suite.teacher.model, suite.teacher.revision)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    teacher, teacher_info = _teacher(suite, tokenizer)

    data, split = train_split(task, suite.data.train_rows, suite.seed)
    max_length = task.max_length(RunSettings.of(suite))
    pairs = training_pairs(task, data, tokenizer)
    features, loss_masks = encode_pairs(tokenizer, pairs, max_length)
    if not any(any(m) for m in loss_masks):
        raise KdbenchError(f"task {task.name}: no training tokens left within max_length {max_length}")
    sequence_level = suite.distill.sequence_level
    if sequence_level:
        with timed(durations, "teacher_generation_s"):
            seq_features, seq_masks = encode_pairs(tokenizer, teacher_answers(task, suite, teacher, pairs), max_length)

    k = suite.distill.teacher_topk
    on_policy = _on_policy(suite, teacher.model, features, loss_masks, pad_id, max_length)
    if sequence_level:
        kd_loss = token_loss(seq_masks)
    elif k:
        with timed(durations, "teacher_topk_s"):
            topk, reused, key = cached_topk(teacher.model, suite.teacher.model, teacher_info["revision"], features,
                                            loss_masks, right_pad(pad_id), k=k, temperature=suite.distill.temperature,
                                            dtype=suite.dtype, batch_size=suite.eval.batch_size)
        teacher_info.update(topk_cache_key=key, topk_reused=reused, topk=k)
        # on-policy batches are scored by the teacher online: their tokens are not in the cache
        kd_loss = token_loss(loss_masks, teacher.model if on_policy else None, suite.distill, suite.dtype, topk=topk)
    else:
        kd_loss = token_loss(loss_masks, teacher.model, suite.distill, suite.dtype)
    roles = [(STUDENT, kd_loss)]
    if suite.baseline:
        roles.append((BASELINE, token_loss(loss_masks)))
    models, info, dirs = {TEACHER: teacher}, {TEACHER: teacher_info}, {TEACHER: suite.teacher.model}
    scored = sum(sum(m) for m in loss_masks)
    fkd = feature_kd(suite, teacher.model, where(suite, task))
    trained_curves = {}
    for role, loss_fn in roles:
        student, made = _student_init(teacher.model, suite)
        role_features = seq_features if sequence_level and role == STUDENT else features
        curve = curves.for_role(role, student, tokenizer, teacher)
        with timed(durations, f"{role}_train_s"):
            run = lambda model, fn: train(model, tokenizer, role_features, suite.distill, fn, seed=suite.seed,  # noqa: E731
                                          dtype=suite.dtype, desc=f"train {role} on {task.name}",
                                          collate_fn=right_pad(pad_id), batch_fn=on_policy if role == STUDENT else None,
                                          step_hooks=[curve])
            stats, extra = train_student(fkd if role == STUDENT else None, student, loss_fn, run)
        if curve is not None:
            trained_curves[role] = curve.points
        models[role], record_id = save_student(student, tokenizer, run_dir, task, role)
        dirs[role] = models[role].source
        d = suite.distill
        if role != STUDENT:
            method = {"method": "labels_only"}
        elif sequence_level:
            method = {"method": "kd", "kd_level": "sequence", "loss": "lm_on_teacher_generations",
                      "generation": {"decoding": "greedy", "max_new_tokens": d.sequence_max_new_tokens},
                      "scored_tokens": sum(sum(m) for m in seq_masks), **extra}
        else:
            method = {"method": "kd", "kd_level": "token", "loss": d.loss, "loss_args": d.loss_args,
                      "temperature": d.temperature, "t2_scaling": d.t2_scaling, "alpha": d.alpha,
                      "teacher": f"top-{k} cache" if k else "online", **extra}
            if on_policy is not None:
                method["on_policy"] = on_policy.record()
        info[role] = {"id": record_id, "revision": None, "params": count_parameters(student), **made, **method,
                      "train_steps": stats.steps, "train_final_loss": stats.final_loss}
    record = {"split": split.spec.split, "rows": len(split.rows), "sha256": split.sha256(),
              "tokens": sum(len(f["input_ids"]) for f in features), "scored_tokens": scored}
    return Trained(models, info, dirs, record, durations, curves=trained_curves)
