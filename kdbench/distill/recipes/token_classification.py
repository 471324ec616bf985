"""Token classification (NER): fine-tune (or reuse) the teacher with a fresh token-classification
head, build the student (layer selection, a smaller config, or a pretrained model of its own),
distil it word by word on the teacher's logits (computed once over the training set and cached
beside the teacher), and train a label-only baseline with the same initialisation, budget and seed.

Training targets live on each word's first sub-token (the usual ``-100`` on the other
sub-tokens, special tokens and padding): the model's logits are gathered at those positions into
one (words in the batch, tags) matrix, and the objective is computed over words

    KD student:  α · KD(z_s, z_t; T) + (1 − α) · CE(z_s, y)      (KD = ``distill.loss``, T², per word)
    baseline and teacher fine-tuning:  CE(z_s, y)

Words cut by ``max_length`` (or tokenised to nothing) have no position and no target. KD is per
word, so a student with its own tokenizer (``student.model``) learns from the same teacher logits:
it trains on the words both tokenizers see.
"""
from __future__ import annotations

import numpy as np
import torch

from kdbench.backends.token_classifier import HFTokenClassifier, WordEncoding, encode_words
from kdbench.config import SuiteConfig
from kdbench.distill.recipes.base import Recipe, teacher_outputs_key
from kdbench.distill.teacher_cache import cached_array
from kdbench.distill.trainer import LossFn, Objective, kd_objective, label_objective
from kdbench.registry import RECIPES
from kdbench.roles import STUDENT, TEACHER
from kdbench.tasks.base import LoadedModel, Task
from kdbench.tasks.ner import word_tokenizer
from kdbench.timing import timed


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


@RECIPES.register("token_classification", loss_levels=["logits"], default_loss="forward_kl", features=True)
class TokenClassificationRecipe(Recipe):
    finetunes_teacher = True

    @classmethod
    def training_rows(cls, task: Task, suite: SuiteConfig) -> int:
        return len(task.inputs(task.train_data(suite.data.train_rows, seed=suite.seed)))

    def student_tokenizer(self, model_id: str, revision: str | None):
        return word_tokenizer(model_id, revision)

    def setup(self) -> None:
        task, suite = self.task, self.suite
        data = task.train_data(suite.data.train_rows, seed=suite.seed)
        self.words, self.labels = task.inputs(data), task.labels(data)
        sha = task.train_record(data)["sha256"]
        tokenizer = word_tokenizer(suite.teacher.model, suite.teacher.revision)
        self.encoding = encode_words(tokenizer, self.words, self.max_length)
        teacher, info, folder = self.finetuned_teacher(
            tokenizer, self.encoding.features,
            word_loss(label_objective(), self.encoding, self.labels, tokenizer.padding_side), sha, self.durations)
        task.class_order(teacher.model.config)  # a teacher used as is must already carry this tag set
        self.add_teacher(TEACHER, teacher, info, folder)
        self.teacher = teacher
        with timed(self.durations, "teacher_logits_s"):
            backend = HFTokenClassifier(teacher.model, tokenizer, suite.dtype, self.max_length, suite.eval.batch_size)
            flat, info["train_logits_reused"] = cached_array(
                "teacher_logits", teacher_outputs_key(info, teacher.model.device, data_sha256=sha,
                                                      max_length=self.max_length, dtype=suite.dtype, level="word"),
                lambda: _flatten(backend.word_logits(self.encoding, desc=f"teacher logits {task.name}")))
            self.teacher_logits = _unflatten(flat, self.encoding.n_words)
        self.train_dataset = {**task.train_record(data), "words": int(sum(self.encoding.n_words)),
                              "unseen_words": int(sum(n - len(w) for n, w in zip(self.encoding.n_words,
                                                                                 self.encoding.words)))}

    def _encoding(self, student: LoadedModel) -> WordEncoding:
        """The student's words: the teacher's encoding, or its own tokenizer's restricted to the
        words the teacher saw (the only ones with teacher logits)."""
        if student.tokenizer is self.teacher.tokenizer:
            return self.encoding
        own = encode_words(student.tokenizer, self.words, self.max_length)
        return own.only([self.encoding.seen(i) for i in range(len(self.encoding))])

    def loss_step(self, role: str, student: LoadedModel) -> LossFn:
        encoding, side = self._encoding(student), student.tokenizer.padding_side
        if role == STUDENT:
            return word_loss(kd_objective(self.distill), encoding, self.labels, side, self.teacher_logits)
        return word_loss(label_objective(), encoding, self.labels, side)

    def features(self, role: str, student: LoadedModel) -> list[dict]:
        return self._encoding(student).features
