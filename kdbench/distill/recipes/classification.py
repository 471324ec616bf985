"""Sequence classification and regression (GLUE): fine-tune (or reuse) the teacher, build the
student (layer selection, a smaller config, or a pretrained model of its own), distil it on the
teacher's logits (computed once over the training set and cached) plus any ``distill.features``
terms (teacher online), and train a label-only baseline with the same initialisation, budget and seed.

    classification:  α · KD(z_s, z_t; T) + (1 − α) · CE(z_s, y)          (KD = ``distill.loss``)
    regression:      α · logit_mse(ŝ, s_t; T) + (1 − α) · (ŝ − y)²        (a one-output head has no
                     distribution to soften: logit matching, Ba & Caruana 2014; T and T² as set)

The student may have its own tokenizer (``student.builder: pretrained``, or ``student.model``
naming the model a layer selection is taken from): logit-level KD needs the teacher's logits per
example only, so the teacher reads the texts through its tokenizer and the student and baseline
through theirs (and are saved with it, so evaluation tokenizes each role with its own).

Several teachers (``teachers``): each is fine-tuned with its own tokenizer, and the student learns
their weighted mixture (:mod:`kdbench.distill.ensemble`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdbench.backends.batching import encode
from kdbench.backends.hf import HFClassifier
from kdbench.config import SuiteConfig, TeacherConfig, TrainConfig
from kdbench.distill.ensemble import mean_scores, mixture_logits
from kdbench.distill.recipes.base import Recipe, teacher_outputs_key
from kdbench.distill.teacher_cache import cached_array
from kdbench.distill.trainer import LossFn, cross_entropy, kd_objective, label_objective, score_mse, sequence_loss
from kdbench.models.loading import load_tokenizer
from kdbench.predictions.ensemble import normalised
from kdbench.registry import RECIPES
from kdbench.roles import ENSEMBLE, STUDENT, TEACHER, teacher_roles
from kdbench.tasks.base import LoadedModel, Task
from kdbench.timing import timed


def teacher_specs(suite: SuiteConfig) -> list[tuple[TeacherConfig, str]]:
    """The suite's teacher, or its ``teachers``, each with its run-record role."""
    if suite.teachers is None:
        return [(suite.teacher, TEACHER)]
    return list(zip(suite.teachers, teacher_roles(len(suite.teachers))))


@dataclass
class _Teacher:
    model: LoadedModel
    info: dict  # its run-record models entry
    folder: str  # what the efficiency figures load
    features: list[dict]  # the training texts through its tokenizer
    logits: np.ndarray  # its outputs on them (from the teacher cache when computed before)


@RECIPES.register("classification", loss_levels=["logits"], default_loss="forward_kl", features=True,
                  multi_teacher=True)
class SequenceRecipe(Recipe):
    """Classification: cross-entropy labels, any logit-level ``distill.loss``."""

    finetunes_teacher = True
    label_loss = staticmethod(cross_entropy)

    @classmethod
    def training_rows(cls, task: Task, suite: SuiteConfig) -> int:
        return len(task.train_data(suite.data.train_rows, seed=suite.seed).rows)

    @classmethod
    def trainings(cls, suite: SuiteConfig) -> dict[str, TrainConfig | None]:
        teachers = {f"{role}.finetune" if suite.teachers is None else f"teachers[{i}].finetune": spec.finetune
                    for i, (spec, role) in enumerate(teacher_specs(suite))}
        return {**teachers, "distill": suite.distill}

    def setup(self) -> None:
        task, suite = self.task, self.suite
        self.split = task.train_data(suite.data.train_rows, seed=suite.seed)
        self.train_dataset = task.train_record(self.split)
        self.texts, self.pairs = task.inputs(self.split)
        self.labels = task.labels(self.split)
        supervised = sequence_loss(label_objective(self.label_loss), self.labels)
        teachers = [self._teacher(spec, role, supervised) for spec, role in teacher_specs(suite)]
        for (_, role), t in zip(teacher_specs(suite), teachers):
            self.add_teacher(role, t.model, t.info, t.folder)
        self.teacher, self.teacher_features = teachers[0].model, teachers[0].features  # students derive from the first
        self.teacher_logits = teachers[0].logits
        if len(teachers) > 1:
            weights = [spec.weight for spec in suite.teachers]
            logits = [t.logits for t in teachers]
            self.teacher_logits = (mean_scores(logits, weights) if self.label_loss is score_mse
                                   else mixture_logits(logits, weights, self.distill.temperature))
            roles = [role for _, role in teacher_specs(suite)]
            self.ensemble = dict(zip(roles, normalised(weights).tolist()))
            self.info[ENSEMBLE] = {"id": ENSEMBLE, "revision": None, "params": sum(t.info["params"] for t in teachers),
                                   "method": "ensemble", "members": self.ensemble}

    def _teacher(self, spec: TeacherConfig, role: str, supervised: LossFn) -> _Teacher:
        """One teacher fine-tuned (or reused from the cache) with its own tokenizer, and its logits on
        the training texts (from the teacher cache when computed before)."""
        task, suite, sha = self.task, self.suite, self.train_dataset["sha256"]
        tokenizer = load_tokenizer(spec.model, spec.revision)
        features = encode(tokenizer, self.texts, self.pairs, self.max_length)
        own: dict[str, float] = {}
        teacher, info, folder = self.finetuned_teacher(tokenizer, features, supervised, sha, own, spec=spec, role=role)
        with timed(own, "teacher_logits_s"):
            backend = HFClassifier(teacher.model, tokenizer, suite.dtype, self.max_length, suite.eval.batch_size)
            logits, info["train_logits_reused"] = cached_array(
                "teacher_logits", teacher_outputs_key(info, teacher.model.device, data_sha256=sha,
                                                      max_length=self.max_length, dtype=suite.dtype),
                lambda: backend.logits_of_features(features, desc=f"{role} logits {task.name}"), rows=len(features))
        suffix = role.removeprefix(TEACHER)
        self.durations.update({f"{k[:-2]}{suffix}_s": v for k, v in own.items()})  # teacher_finetune_1_s...
        return _Teacher(teacher, info, folder, features, logits)

    def loss_step(self, role: str, student: LoadedModel) -> LossFn:
        if role == STUDENT:
            return sequence_loss(kd_objective(self.distill, self.label_loss), self.labels, self.teacher_logits)
        return sequence_loss(label_objective(self.label_loss), self.labels)

    def features(self, role: str, student: LoadedModel) -> list[dict]:
        if student.tokenizer is self.teacher.tokenizer:
            return self.teacher_features
        return encode(student.tokenizer, self.texts, self.pairs, self.max_length)


@RECIPES.register("regression", loss_levels=["logits"], losses=["logit_mse"], default_loss="logit_mse",
                  features=True, multi_teacher=True)
class RegressionRecipe(SequenceRecipe):
    """Regression: squared error to the gold scores, logit MSE to the teacher's."""

    label_loss = staticmethod(score_mse)
