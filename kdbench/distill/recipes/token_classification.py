"""Token classification (NER): fine-tune (or reuse) the teacher with a fresh token-classification
head, build the student by layer selection, distil it word by word on the teacher's logits
(computed once over the training set and cached beside the teacher), and train a label-only
baseline with the same initialisation, budget and seed.

Training targets live on each word's first sub-token (the usual ``-100`` on the other
sub-tokens, special tokens and padding): the model's logits are gathered at those positions into
one (words in the batch, tags) matrix, and the objective is computed over words

    KD student:  α · KD(z_s, z_t; T) + (1 − α) · CE(z_s, y)      (KD = ``distill.loss``, T², per word)
    baseline and teacher fine-tuning:  CE(z_s, y)

Words cut by ``max_length`` (or tokenised to nothing) have no position and no target.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdbench.backends.token_classifier import HFTokenClassifier, WordEncoding, encode_words
from kdbench.config import SuiteConfig
from kdbench.distill.losses.catalog import check_logit_loss
from kdbench.distill.recipes import BASELINE, STUDENT, TEACHER, Trained
from kdbench.distill.recipes.common import (
    check_batches,
    finetuned_teacher,
    require,
    require_derived_student,
    require_teacher_layers,
    save_student,
    teacher_outputs_key,
    timed,
    where,
)
from kdbench.distill.recipes.features import feature_kd, train_student
from kdbench.distill.teacher_cache import cached_array
from kdbench.distill.trainer import LossFn, Objective, kd_objective, label_objective, train
from kdbench.errors import KdbenchError
from kdbench.models.loading import count_parameters
from kdbench.models.students import build_student
from kdbench.tasks.base import RunSettings
from kdbench.tasks.ner import NerTask, word_tokenizer


def word_loss(objective: Objective, encoding: WordEncoding, word_labels: list[np.ndarray], padding_side: str,
              teacher_logits: list[np.ndarray] | None = None) -> LossFn:
    """A ``LossFn`` over the words of a batch: gathers the model's logits at each seen word's first
    sub-token and calls ``objective(logits (P, C), gold ids (P,), teacher logits (P, C) | None)``."""
    gold = [torch.as_tensor(np.asarray(y)[w]) for y, w in zip(word_labels, encoding.words)]
    teacher = None if teacher_logits is None else [
        torch.as_tensor(np.asarray(z, dtype=np.float32)[w]) for z, w in zip(teacher_logits, encoding.words)]

    def loss_fn(outputs, idx: np.ndarray, batch) -> torch.Tensor:
        logits = outputs.logits
        rows, cols = encoding.gather_index(idx, logits.shape[1], padding_side)
        if rows.size == 0:  # no word survived truncation in this batch: nothing to learn from
            return logits.sum() * 0.0
        picked = logits[torch.as_tensor(rows, device=logits.device), torch.as_tensor(cols, device=logits.device)]
        y = torch.cat([gold[i] for i in idx]).to(logits.device)
        t = None if teacher is None else torch.cat([teacher[i] for i in idx]).to(logits.device)
        return objective(picked, y, t)

    return loss_fn


def _flatten(per_sentence: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(per_sentence, axis=0).astype(np.float32)


def _unflatten(flat: np.ndarray, n_words: list[int]) -> list[np.ndarray]:
    if flat.shape[0] != sum(n_words):
        raise ValueError(f"cached teacher logits cover {flat.shape[0]} words, the training set has {sum(n_words)}")
    return np.split(flat, np.cumsum(n_words)[:-1])


def check(task: NerTask, suite: SuiteConfig) -> None:
    """What the suite alone must say for this recipe (run first, and by the pre-flight for every task)."""
    require(suite, "teacher", "student")
    try:
        check_logit_loss(suite.distill.loss)
    except ValueError as e:
        raise KdbenchError(f"suite {suite.name}: task {task.name}: {e}") from None
    require_teacher_layers(suite, task, finetunes=True)
    require_derived_student(suite, task, pretrained=False)


def check_data(task: NerTask, suite: SuiteConfig) -> None:
    """The batches of every training (teacher fine-tune, student, baseline) fit in the training sentences."""
    rows = len(task.train_data(suite.data.train_rows, seed=suite.seed).tokens)
    check_batches(suite, task, rows, {"teacher.finetune": suite.teacher.finetune, "distill": suite.distill})


def run(task: NerTask, suite: SuiteConfig, run_dir: Path) -> Trained:
    check(task, suite)
    durations: dict[str, float] = {}
    data = task.train_data(suite.data.train_rows, seed=suite.seed)
    train_sha = data.split.sha256()
    settings = RunSettings.of(suite)
    max_length = task.max_length(settings)

    tokenizer = word_tokenizer(suite.teacher.model, suite.teacher.revision)
    encoding = encode_words(tokenizer, data.tokens, max_length)
    side = tokenizer.padding_side
    # the fresh tag head is drawn from torch's global generator: seed it, so the fine-tuned teacher
    # is a function of the cache key and not of whatever ran earlier in this process
    torch.manual_seed(suite.seed)
    teacher, teacher_info, teacher_dir = finetuned_teacher(
        task, suite, tokenizer, encoding.features, word_loss(label_objective(), encoding, data.labels, side),
        train_sha, durations, head_config=task.head_config(), key_fields={"labels": task.label_names})
    task.class_order(teacher.model.config)  # a teacher used as is must already carry this tag set

    with timed(durations, "teacher_logits_s"):
        backend = HFTokenClassifier(teacher.model, tokenizer, suite.dtype, max_length, suite.eval.batch_size)
        compute = lambda: _flatten(backend.word_logits(encoding, desc=f"teacher logits {task.name}"))  # noqa: E731
        flat, teacher_info["train_logits_reused"] = cached_array(
            "teacher_logits", teacher_outputs_key(teacher_info, teacher.model.device, data_sha256=train_sha,
                                                  max_length=max_length, dtype=suite.dtype, level="word"), compute)
        teacher_logits = _unflatten(flat, encoding.n_words)

    roles = [(STUDENT, word_loss(kd_objective(suite.distill), encoding, data.labels, side, teacher_logits))]
    if suite.baseline:
        roles.append((BASELINE, word_loss(label_objective(), encoding, data.labels, side)))
    models, info, dirs = {TEACHER: teacher}, {TEACHER: teacher_info}, {TEACHER: teacher_dir}
    fkd = feature_kd(suite, teacher.model, where(suite, task))
    for role, loss_fn in roles:
        student, made = build_student(teacher.model, suite.student, suite.seed)  # the same init for both roles
        with timed(durations, f"{role}_train_s"):
            run = lambda model, fn: train(model, tokenizer, encoding.features, suite.distill, fn, seed=suite.seed,  # noqa: E731
                                          dtype=suite.dtype, desc=f"train {role} on {task.name}")
            stats, extra = train_student(fkd if role == STUDENT else None, student, loss_fn, run)
        models[role], record_id = save_student(student, tokenizer, run_dir, task, role)
        dirs[role] = models[role].source
        method = ({"method": "kd", "loss": suite.distill.loss, "loss_args": suite.distill.loss_args,
                   "temperature": suite.distill.temperature, "alpha": suite.distill.alpha, **extra}
                  if role == STUDENT else {"method": "labels_only"})
        info[role] = {"id": record_id, "revision": None, "params": count_parameters(student), **made, **method,
                      "train_steps": stats.steps, "train_final_loss": stats.final_loss}
    train_record = {"split": data.split.spec.split, "rows": len(data.tokens), "sha256": train_sha,
                    "words": int(sum(encoding.n_words)),
                    "unseen_words": int(sum(n - len(w) for n, w in zip(encoding.n_words, encoding.words)))}
    return Trained(models, info, dirs, train_record, durations)
