"""Sequence classification and regression (GLUE): fine-tune (or reuse) the teacher, build the
student (layer selection or a smaller config), distil it on the teacher's logits (computed once
over the training set and cached) plus any ``distill.features`` terms (teacher online), and train
a label-only baseline with the same initialisation, budget and seed.

The student may have its own tokenizer (``student.builder: pretrained``, or ``student.model``
naming the model a layer selection is taken from): logit-level KD needs the teacher's logits per
example only, so the teacher reads the texts through its tokenizer and the student and baseline
through theirs (and are saved with it, so evaluation tokenizes each role with its own)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import torch
import torch.nn.functional as F

from kdbench import devices
from kdbench.backends.batching import encode
from kdbench.backends.hf import HFClassifier
from kdbench.config import SuiteConfig, TeacherConfig
from kdbench.distill import curves
from kdbench.distill.ensemble import ENSEMBLE, mean_scores, mixture_logits, normalised, teacher_roles
from kdbench.distill.recipes import BASELINE, STUDENT, TEACHER, Trained
from kdbench.distill.recipes.common import (
    check_batches,
    finetuned_teacher,
    require,
    require_logit_loss,
    require_teacher_layers,
    save_student,
    teacher_outputs_key,
    timed,
    where,
)
from kdbench.distill.recipes.features import feature_kd, train_student
from kdbench.distill.teacher_cache import cached_array
from kdbench.distill.trainer import kd_objective, label_objective, report_terms, sequence_loss, train
from kdbench.errors import KdbenchError
from kdbench.models.loading import count_parameters, load_for_head, load_tokenizer, model_revision
from kdbench.models.students import build_student
from kdbench.tasks.base import LoadedModel, RunSettings
from kdbench.tasks.classification import ClassificationTask, RegressionTask


def _regression_objective(alpha: float):
    """MSE to gold scores, and for KD α·MSE to the teacher's scores + (1 − α)·MSE to gold (logit
    matching is the natural KD for a one-output head: Ba & Caruana 2014)."""
    def objective(out, labels, teacher):
        pred = out.float().squeeze(-1)
        gold = F.mse_loss(pred, labels.float())
        if teacher is None:
            return gold
        soft = F.mse_loss(pred, teacher.squeeze(-1))
        report_terms(kd=soft, label=gold)
        return alpha * soft + (1 - alpha) * gold
    return objective


def _student(task, suite: SuiteConfig, teacher):
    """The untrained student, how it was made, and its tokenizer: the teacher's for a student
    derived from the teacher, else that of ``student.model``. The fresh head (and a config
    student) is drawn from the suite's seed, so student and baseline start from the same weights."""
    spec = suite.student
    if not spec.model:
        return (*build_student(teacher.model, spec, suite.seed), teacher.tokenizer)
    torch.manual_seed(suite.seed)
    model = load_for_head(spec.model, task.head, spec.revision, devices.resolve(suite.device), fresh_head=True,
                          num_labels=task.num_labels)
    tokenizer = load_tokenizer(spec.model, spec.revision)
    if spec.builder == "pretrained":
        return model, {"builder": "pretrained", "init_from": spec.model,
                       "init_revision": model_revision(spec.model, spec.revision)}, tokenizer
    return (*build_student(model, spec, suite.seed, own_model=True), tokenizer)


@dataclass
class _Teacher:
    model: LoadedModel
    info: dict  # its run-record models entry
    folder: str  # what the efficiency figures load
    features: list[dict]  # the training texts through its tokenizer
    logits: np.ndarray  # its outputs on them (from the teacher cache when computed before)


def _teacher_specs(suite: SuiteConfig) -> list[tuple[TeacherConfig, str]]:
    """The suite's teacher, or its ``teachers``, each with its run-record role."""
    if suite.teachers is None:
        return [(suite.teacher, TEACHER)]
    return list(zip(suite.teachers, teacher_roles(len(suite.teachers))))


def _teacher(task, suite: SuiteConfig, spec: TeacherConfig, texts, pairs, loss_fn, train_sha: str, durations: dict,
             *, role: str):
    """One teacher fine-tuned (or reused from the cache) with its own tokenizer, and its logits on
    the training texts. Returns the fields of :class:`_Teacher`."""
    regression = isinstance(task, RegressionTask)
    max_length = task.max_length(RunSettings.of(suite))
    tokenizer = load_tokenizer(spec.model, spec.revision)
    features = encode(tokenizer, texts, pairs, max_length)
    key_fields = {"labels": ["score"]} if regression else {"labels": task.spec.label_names}
    own = {}
    teacher, info, folder = finetuned_teacher(task, suite, tokenizer, features, loss_fn, train_sha, own,
                                              head_config={"num_labels": task.num_labels}, key_fields=key_fields,
                                              spec=spec, role=role)
    with timed(own, "teacher_logits_s"):
        backend = HFClassifier(teacher.model, tokenizer, suite.dtype, max_length, suite.eval.batch_size)
        compute = lambda: backend.logits_of_features(features, desc=f"{role} logits {task.name}")  # noqa: E731
        logits, info["train_logits_reused"] = cached_array(
            "teacher_logits", teacher_outputs_key(info, teacher.model.device, data_sha256=train_sha,
                                                  max_length=max_length, dtype=suite.dtype), compute, rows=len(features))
    suffix = role.removeprefix(TEACHER)
    durations.update({f"{k[:-2]}{suffix}_s": v for k, v in own.items()})  # teacher_finetune_1_s...
    return teacher, info, folder, features, logits


def check(task: ClassificationTask | RegressionTask, suite: SuiteConfig) -> None:
    """What the suite alone must say for this recipe (run first, and by the pre-flight for every task)."""
    require(suite, "student")
    if suite.teacher is None and suite.teachers is None:
        raise KdbenchError(f"suite {suite.name}: train-and-eval needs a 'teacher' section (or 'teachers')")
    if not isinstance(task, RegressionTask):
        require_logit_loss(suite, task)
    require_teacher_layers(suite, task, finetunes=True)
    if suite.distill.features and (suite.student.model or suite.teachers):
        raise KdbenchError(f"{where(suite, task)}: distill.features match hidden states token by token with one "
                           "teacher, so they need a single teacher and a student derived from it (student.model unset)")


def check_data(task: ClassificationTask | RegressionTask, suite: SuiteConfig) -> None:
    """The batches of every training (teacher fine-tunes, student, baseline) fit in the training rows."""
    rows = len(task.train_data(suite.data.train_rows, seed=suite.seed).rows)
    trainings = {f"{role}.finetune" if suite.teachers is None else f"teachers[{i}].finetune": spec.finetune
                 for i, (spec, role) in enumerate(_teacher_specs(suite))}
    check_batches(suite, task, rows, {**trainings, "distill": suite.distill})


def run(task: ClassificationTask | RegressionTask, suite: SuiteConfig, run_dir: Path) -> Trained:
    check(task, suite)
    regression = isinstance(task, RegressionTask)
    durations: dict[str, float] = {}
    train_split = task.train_data(suite.data.train_rows, seed=suite.seed)
    train_sha = train_split.sha256()
    texts, pairs = task.inputs(train_split)
    labels = task.labels(train_split)
    max_length = task.max_length(RunSettings.of(suite))

    supervised = _regression_objective(0.0) if regression else label_objective()
    teachers = [_Teacher(*_teacher(task, suite, spec, texts, pairs, sequence_loss(supervised, labels),
                                   train_sha, durations, role=role))
                for spec, role in _teacher_specs(suite)]
    teacher_logits = teachers[0].logits
    if len(teachers) > 1:
        weights = [spec.weight for spec in suite.teachers]
        logits = [t.logits for t in teachers]
        teacher_logits = (mean_scores(logits, weights) if regression
                          else mixture_logits(logits, weights, suite.distill.temperature))

    # distill.seed: the student's own seed from here on (a capacity-gap sweep varies it; slice and teacher stay)
    if suite.distill.seed is not None:
        suite = suite.model_copy(update={"seed": suite.distill.seed})
    kd = _regression_objective(suite.distill.alpha) if regression else kd_objective(suite.distill)
    roles = [(STUDENT, sequence_loss(kd, labels, teacher_logits))]
    if suite.baseline:
        roles.append((BASELINE, sequence_loss(supervised, labels)))
    roles_of = [role for _, role in _teacher_specs(suite)]
    models = {role: t.model for role, t in zip(roles_of, teachers)}
    info = {role: t.info for role, t in zip(roles_of, teachers)}
    dirs = {role: t.folder for role, t in zip(roles_of, teachers)}
    ensemble = {}
    if len(teachers) > 1:
        ensemble = dict(zip(roles_of, normalised([spec.weight for spec in suite.teachers]).tolist()))
        info[ENSEMBLE] = {"id": ENSEMBLE, "revision": None, "params": sum(t.info["params"] for t in teachers),
                          "method": "ensemble", "members": ensemble}
    teacher = teachers[0].model  # a student derived from "the teacher" is derived from the first
    fkd = feature_kd(suite, teacher.model, where(suite, task))
    student_features, trained_curves = None, {}
    for role, loss_fn in roles:
        student, made, student_tokenizer = _student(task, suite, teacher)  # the same init for both roles
        if student_features is None:
            student_features = (teachers[0].features if student_tokenizer is teacher.tokenizer
                                else encode(student_tokenizer, texts, pairs, max_length))
        curve = curves.for_role(role, student, student_tokenizer, teacher)  # against the (first) teacher
        with timed(durations, f"{role}_train_s"):
            run = lambda model, fn, tok=student_tokenizer, feats=student_features, desc=f"train {role} on {task.name}": \
                train(model, tok, feats, suite.distill, fn, seed=suite.seed, dtype=suite.dtype, desc=desc,  # noqa: E731
                      step_hooks=[curve])
            stats, extra = train_student(fkd if role == STUDENT else None, student, loss_fn, run)
        if curve is not None:
            trained_curves[role] = curve.points
        models[role], record_id = save_student(student, student_tokenizer, run_dir, task, role)
        dirs[role] = models[role].source
        method = ({"method": "kd", "loss": "logit_mse" if regression else suite.distill.loss,
                   "loss_args": suite.distill.loss_args, **extra} if role == STUDENT else {"method": "labels_only"})
        info[role] = {"id": record_id, "revision": None, "params": count_parameters(student), **made, **method,
                      "train_steps": stats.steps, "train_final_loss": stats.final_loss}
    train_record = {"split": train_split.spec.split, "rows": len(train_split.rows), "sha256": train_sha}
    return Trained(models, info, dirs, train_record, durations, ensemble, trained_curves)

