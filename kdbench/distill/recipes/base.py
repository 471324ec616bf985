"""The one recipe skeleton every head's recipe fills in (in the manner of torchtune's KD recipe):

    setup()               the teacher(s) and what the student learns from them (cached targets or
                          an online teacher), the training data
    for role in student, baseline:
        init_student()    the same initialisation for both (the student builder, ``distill.seed``)
        loss_step(role)   the student: α·KD + (1 − α)·label loss; the baseline: the label loss alone
        train(role)       the shared trainer, with the ``distill.features`` terms for the student
        save(role)        the model under the run folder and its run-record entry, written once

A head's recipe is a subclass registered for its head with ``@RECIPES.register(head, ...)``:
``loss_levels`` (which levels of ``distill.loss`` it takes; ``losses`` to narrow them),
``default_loss`` (what ``distill.loss: null`` means), ``features`` (it takes ``distill.features``),
``multi_teacher`` (it takes ``teachers``) and ``settings`` (the head-specific ``distill`` settings it
honours, e.g. ``sequence_level``). :meth:`Recipe.check` turns every setting a recipe cannot honour
into one line before any work: nothing is silently replaced.

The teacher is fixed by the suite's ``seed`` (its fine-tune, the training slice); ``distill.seed``
is the student's and baseline's own (initialisation, batch order), so a sweep over student seeds
reuses one teacher.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from accelerate import PartialState

from kdbench import devices
from kdbench.config import DistillConfig, SuiteConfig, TeacherConfig, TrainConfig
from kdbench.distill import curves
from kdbench.distill.recipes.features import FeatureKD, feature_kd, train_student
from kdbench.distill.trainer import TRAINER_REVISION, BatchFn, LossFn, TrainStats, effective_batch_size, train
from kdbench.errors import KdbenchError
from kdbench.fsio import within
from kdbench.models import cache
from kdbench.models.heads import head
from kdbench.models.loading import count_parameters, load_for_head, load_tokenizer, model_revision, save_model
from kdbench.models.students import build_student
from kdbench.registry import LOSSES, RECIPES
from kdbench.roles import BASELINE, STUDENT, TEACHER
from kdbench.tasks.base import LoadedModel, RunSettings, TrainableTask
from kdbench.timing import timed

if TYPE_CHECKING:
    from kdbench.tasks.base import Task


@dataclass
class Trained:
    """What a recipe hands back: models by role (teacher, student, baseline), each role's run-record
    ``models`` entry (id, revision, params, + how it was made), each role's folder or hub id (the
    efficiency figures load it in a fresh process), the training data's record, timings, for a
    multi-teacher run the teachers' ensemble weights (the pipeline scores the ensemble from them), and
    each trained role's training curve (``kdbench.distill.curves``) where the pipeline asked for one."""

    models: dict[str, LoadedModel]
    info: dict[str, dict]
    dirs: dict[str, str]
    train_dataset: dict | None = None
    durations: dict[str, float] = field(default_factory=dict)
    ensemble: dict[str, float] = field(default_factory=dict)  # multi-teacher: teacher role -> normalised weight
    curves: dict[str, list[dict]] = field(default_factory=dict)  # eval.during_training: role -> points


def where(suite: SuiteConfig, task: Task) -> str:
    return f"suite {suite.name}, task {task.name} ({task.head} head)"


def head_losses(head_name: str) -> list[str]:
    """The losses ``distill.loss`` may name for a head: those of the levels its recipe is registered
    with (``loss_levels``), or only its ``losses`` when the registration lists some."""
    meta = RECIPES.meta(head_name)
    return list(meta.get("losses") or [n for n, m in LOSSES.metas() if m["level"] in meta.get("loss_levels", ())])


def head_settings() -> dict[str, list[str]]:
    """Every head-specific ``distill`` setting some recipe honours, with the heads that do."""
    out: dict[str, list[str]] = {}
    for name, meta in RECIPES.metas():
        for key in meta.get("settings", ()):
            out.setdefault(key, []).append(name)
    return out


def resolved_loss(suite: SuiteConfig, task: Task) -> str:
    """``distill.loss``, or the head's default loss where it is null."""
    return suite.distill.loss or RECIPES.meta(task.head)["default_loss"]


def check_batches(suite: SuiteConfig, task: Task, rows: int, trainings: dict[str, TrainConfig | None]) -> None:
    """Each training's examples per optimiser step (``{config key: its TrainConfig}``) fit in its
    ``rows`` training examples: a larger batch trains on fewer examples than the record says."""
    if rows == 0:
        raise KdbenchError(f"{where(suite, task)}: no training examples (data.train_rows, the training split)")
    for key, cfg in trainings.items():
        if cfg is None:
            continue
        total = effective_batch_size(cfg)
        if total <= rows:
            continue
        if total == cfg.batch_size:
            raise KdbenchError(f"{where(suite, task)}: {key}.batch_size {total} is more than the {rows} training "
                               "examples (data.train_rows)")
        raise KdbenchError(f"{where(suite, task)}: {key}: {total} examples per optimiser step (batch_size "
                           f"{cfg.batch_size} × grad_accum_steps {cfg.grad_accum_steps} × "
                           f"{total // (cfg.batch_size * cfg.grad_accum_steps)} processes), more than the {rows} "
                           "training examples (data.train_rows)")


def teacher_outputs_key(teacher_info: dict, device, **settings) -> dict:
    """The teacher-cache key of a teacher's outputs: the model, its revision and, when it was
    fine-tuned here, the fine-tune's cache key (which fixes its weights), plus the data, settings
    and, for outputs computed on a GPU, the device kind."""
    return {"teacher": teacher_info["id"], "revision": teacher_info["revision"],
            "finetuned": teacher_info.get("cache_key"), **settings, **devices.cache_fields(device)}


def save_student(model, tokenizer, run_dir: Path, task: Task, role: str) -> tuple[LoadedModel, str]:
    """``save_pretrained`` under ``run_dir/models/TASK/ROLE``; returns the model and the record id."""
    rel = f"models/{task.name}/{role}"
    folder = within(run_dir, "models", task.name, role)
    save_model(model, tokenizer, folder)
    return LoadedModel(model.eval(), tokenizer, str(folder)), rel


class Recipe:
    """The skeleton (module docstring). A subclass implements :meth:`setup`, :meth:`loss_step` and
    :meth:`features`, and where its head needs them the hooks below; ``run`` is the same for all."""

    finetunes_teacher: ClassVar[bool] = False  # teacher.finetune honoured (else it must be null)
    trains_baseline: ClassVar[bool] = True  # the baseline trains on labels; else it is the untrained student

    def __init__(self, task: TrainableTask, suite: SuiteConfig, run_dir: Path):
        self.task, self.suite, self.run_dir = task, suite, run_dir
        self.where = where(suite, task)
        self.distill: DistillConfig = suite.distill.model_copy(update={"loss": resolved_loss(suite, task)})
        # distill.seed: the student's and baseline's own seed; the suite's fixes the slice and the teacher
        self.seed = suite.seed if suite.distill.seed is None else suite.distill.seed
        self.device = devices.resolve(suite.device)
        self.max_length = task.max_length(RunSettings.of(suite))
        self.durations: dict[str, float] = {}
        self.models: dict[str, LoadedModel] = {}
        self.info: dict[str, dict] = {}
        self.dirs: dict[str, str] = {}
        self.ensemble: dict[str, float] = {}
        self.curves: dict[str, list[dict]] = {}
        self.train_dataset: dict | None = None
        self.teacher: LoadedModel | None = None  # what a student derived from "the teacher" is made from
        self.feature_kd: FeatureKD | None = None

    # checks: what the suite alone must say (run first, and by the pre-flight for every task) --------
    @classmethod
    def check(cls, task: Task, suite: SuiteConfig) -> None:
        meta, at = RECIPES.meta(task.head), where(suite, task)
        if suite.student is None:
            raise KdbenchError(f"suite {suite.name}: train-and-eval needs a 'student' section")
        if suite.teachers is not None and not meta.get("multi_teacher"):
            heads = ", ".join(RECIPES.names(multi_teacher=True))
            raise KdbenchError(f"suite {suite.name}: several teachers (teachers) are distilled on {heads} tasks only; "
                               f"give task {task.name} one 'teacher' (per_task)")
        if suite.teacher is None and suite.teachers is None:
            raise KdbenchError(f"suite {suite.name}: train-and-eval needs a 'teacher' section"
                               + (" (or 'teachers')" if meta.get("multi_teacher") else ""))
        if suite.distill.loss is not None and suite.distill.loss not in head_losses(task.head):
            raise KdbenchError(f"{at}: distill.loss: loss '{suite.distill.loss}' works on "
                               f"{LOSSES.meta(suite.distill.loss)['level']}; this head is distilled with: "
                               f"{', '.join(head_losses(task.head))}")
        for spec in suite.teachers or [suite.teacher]:
            if not cls.finetunes_teacher and spec.finetune is not None:
                raise KdbenchError(f"suite {suite.name}: teacher.finetune must be null for the {task.head} task "
                                   f"{task.name} (kdbench uses a {task.head.replace('_', ' ')} teacher as it is and "
                                   "does not fine-tune it)")
            if spec.layers and spec.finetune is None and cls.finetunes_teacher:
                raise KdbenchError(f"suite {suite.name}: teacher.layers truncates a teacher before fine-tuning; "
                                   "it needs teacher.finetune")
        if suite.distill.features and (suite.student.model or suite.teachers):
            raise KdbenchError(f"{at}: distill.features match hidden states token by token with one teacher, so "
                               "they need a single teacher and a student derived from it (student.model unset)")
        defaults = DistillConfig()
        for key, heads in head_settings().items():
            if task.head not in heads and getattr(suite.distill, key) != getattr(defaults, key):
                raise KdbenchError(f"{at}: distill.{key} is for {', '.join(heads)} tasks; this recipe cannot honour "
                                   "it (set it under per_task)")
        cls.check_settings(task, suite)

    @classmethod
    def check_settings(cls, task: Task, suite: SuiteConfig) -> None:
        """What else the head's recipe needs of the suite."""

    @classmethod
    def check_models(cls, task: Task, suite: SuiteConfig, teacher_config, student_config) -> None:
        """What the head needs of the teacher's and student's configs (the pre-flight, before any
        weights are loaded; the recipe checks the models again with :meth:`check_student`)."""

    @classmethod
    def training_rows(cls, task: Task, suite: SuiteConfig) -> int:
        """How many examples the student's training iterates over."""
        raise NotImplementedError

    @classmethod
    def trainings(cls, suite: SuiteConfig) -> dict[str, TrainConfig | None]:
        """Each training of the recipe by its config key (teacher fine-tune, student and baseline)."""
        return {**({"teacher.finetune": suite.teacher.finetune} if cls.finetunes_teacher else {}),
                "distill": suite.distill}

    @classmethod
    def check_data(cls, task: Task, suite: SuiteConfig) -> None:
        """The batches of every training fit in its training examples."""
        check_batches(suite, task, cls.training_rows(task, suite), cls.trainings(suite))

    # the skeleton ------------------------------------------------------------------------------------
    def run(self) -> Trained:
        self.check(self.task, self.suite)
        self.setup()
        self.feature_kd = feature_kd(self.suite, self.teacher.model, self.where)
        for role in [STUDENT, BASELINE] if self.suite.baseline else [STUDENT]:
            student, made = self.init_student()  # the same initialisation for both roles
            self.check_student(student)
            if role == BASELINE and not self.trains_baseline:
                self.keep_untrained(student, made)
                continue
            stats, extra = self.train(role, student)
            self.save(role, student, made, stats, extra)
        return Trained(self.models, self.info, self.dirs, self.train_dataset, self.durations, self.ensemble,
                       self.curves)

    def setup(self) -> None:
        """The teacher(s) under their roles in ``models`` / ``info`` / ``dirs``, ``self.teacher``, the
        training data and ``train_dataset`` (its record), and what the losses read."""
        raise NotImplementedError

    def loss_step(self, role: str, student: LoadedModel) -> LossFn:
        """The trainer's loss for ``role``: the student's KD objective, or the baseline's label loss."""
        raise NotImplementedError

    def features(self, role: str, student: LoadedModel) -> list[dict]:
        """The training examples of ``role``, tokenised by the student's tokenizer."""
        raise NotImplementedError

    def collate(self, student: LoadedModel) -> Callable | None:
        """How a batch of features is padded (None: the tokenizer's ``pad``)."""
        return None

    def batch_fn(self, role: str) -> BatchFn | None:
        """What rewrites each micro-batch of ``role`` before its forward pass (on-policy KD: the
        student's own samples); None: the batches as they are."""
        return None

    def method(self, role: str) -> dict:
        """How ``role`` was trained, for its run-record entry."""
        if role != STUDENT:
            return {"method": "labels_only"}
        d = self.distill
        return {"method": "kd", "loss": d.loss, "loss_args": d.loss_args, "temperature": d.temperature,
                "t2_scaling": d.t2_scaling, "alpha": d.alpha}

    def student_tokenizer(self, model_id: str, revision: str | None):
        """The tokenizer of a student with its own model (``student.model``)."""
        return load_tokenizer(model_id, revision)

    def init_student(self) -> tuple[LoadedModel, dict]:
        """The untrained student and how it was made: its builder applied to the teacher, or to the
        model ``student.model`` names (loaded with the task's head, a fresh one where the head is
        fine-tuned per task) with its own tokenizer. Random initialisation (a fresh head, a config
        student) is drawn from the student's seed, so student and baseline start from the same weights."""
        spec = self.suite.student
        if not spec.model:
            model, made = build_student(self.teacher.model, spec, self.seed)
            return LoadedModel(model, self.teacher.tokenizer, self.teacher.source), made
        torch.manual_seed(self.seed)
        fresh = head(self.task.head).fine_tuned
        base = load_for_head(spec.model, self.task.head, spec.revision, self.device, fresh_head=fresh,
                             **(self.task.head_config() if fresh else {}))
        model, made = build_student(base, spec, self.seed, own_model=True)
        return LoadedModel(model, self.student_tokenizer(spec.model, spec.revision), spec.model), made

    def check_student(self, student: LoadedModel) -> None:
        """What the head needs of the built student (vocabulary, width...)."""

    def train(self, role: str, student: LoadedModel) -> tuple[TrainStats, dict]:
        loss_fn, features = self.loss_step(role, student), self.features(role, student)
        curve = curves.for_role(role, student.model, student.tokenizer, self.teacher)  # against the (first) teacher

        def run(model, fn):
            return train(model, student.tokenizer, features, self.distill, fn, seed=self.seed, dtype=self.suite.dtype,
                         desc=f"train {role} on {self.task.name}", collate_fn=self.collate(student),
                         batch_fn=self.batch_fn(role), step_hooks=[curve])

        with timed(self.durations, f"{role}_train_s"):
            out = train_student(self.feature_kd if role == STUDENT else None, student.model, loss_fn, run)
        if curve is not None:
            self.curves[role] = curve.points
        return out

    def save(self, role: str, student: LoadedModel, made: dict, stats: TrainStats, extra: dict) -> None:
        self.models[role], record_id = save_student(student.model, student.tokenizer, self.run_dir, self.task, role)
        self.dirs[role] = self.models[role].source
        self.info[role] = {"id": record_id, "revision": None, "params": count_parameters(student.model), **made,
                           **self.method(role), **extra, "train_steps": stats.steps,
                           "train_final_loss": stats.final_loss}

    def keep_untrained(self, student: LoadedModel, made: dict) -> None:
        """The baseline of a recipe without label training: the student as it was before KD (a
        ``student.model`` used as it is stays its published id; a derived one is saved)."""
        if made.get("builder") == "pretrained":
            self.models[BASELINE], record_id = LoadedModel(student.model.eval(), student.tokenizer,
                                                           student.source), student.source
        else:
            self.models[BASELINE], record_id = save_student(student.model, student.tokenizer, self.run_dir,
                                                            self.task, BASELINE)
        self.dirs[BASELINE] = self.models[BASELINE].source
        self.info[BASELINE] = {"id": record_id, "revision": made.get("init_revision"),
                               "params": count_parameters(student.model), **made, "method": "pretrained_no_kd"}

    # teachers ------------------------------------------------------------------------------------------
    def teacher_as_is(self, spec: TeacherConfig | None = None) -> tuple[LoadedModel, dict]:
        """A teacher used as published: loaded with the task's head on the run's device. With
        ``teacher.layers``, its first K layers (everything outside the layer stack kept: embeddings,
        final norm, head), written once into the model cache, so the efficiency figures, a
        re-evaluation and the other points of a sweep load the same truncated model; the returned
        model's ``source`` is that folder."""
        spec = spec or self.suite.teacher
        head, revision = self.task.head, model_revision(spec.model, spec.revision)
        tokenizer = load_tokenizer(spec.model, spec.revision)
        info: dict[str, Any] = {"id": spec.model, "revision": revision, "finetuned": False}
        if not spec.layers:
            model = load_for_head(spec.model, head, spec.revision, self.device).eval()
            return LoadedModel(model, tokenizer, spec.model), {**info, "params": count_parameters(model)}
        key = cache.cache_key(model=spec.model, revision=revision, head=head, layers=spec.layers)
        with cache.entry_lock(key):
            reused = cache.is_cached(key)
            if not reused and PartialState().is_main_process:
                # from_pretrained with a smaller num_hidden_layers keeps the first k layers' weights
                truncated = load_for_head(spec.model, head, spec.revision, num_hidden_layers=spec.layers)
                cache.save_finetuned(key, truncated, tokenizer, {"model": spec.model, "revision": revision,
                                                                 "head": head, "layers": spec.layers})
        folder = str(cache.finetuned_dir(key))
        model = load_for_head(folder, head, device=self.device).eval()
        info.update(params=count_parameters(model), layers=spec.layers, cache_key=key, reused_from_cache=reused)
        return LoadedModel(model, tokenizer, folder), info

    def finetuned_teacher(self, tokenizer, features: list[dict], loss_fn: LossFn, data_sha: str, durations: dict, *,
                          spec: TeacherConfig | None = None, role: str = TEACHER,
                          collate_fn: Callable | None = None) -> tuple[LoadedModel, dict, str]:
        """The teacher fine-tuned on the task: from the on-disk cache when an entry with the same key
        exists (model revision, task, data hash, train config, trainer revision, max length, dtype,
        seed and the task's output names), else fine-tuned now and cached. With ``teacher.finetune:
        null`` the model is used as it is. Returns (model, run-record info, folder or id the
        efficiency figures load). ``spec``: one teacher of a multi-teacher suite (default the suite's
        ``teacher``), ``role`` its name (it names the training's checkpoint folder)."""
        suite, task = self.suite, self.task
        spec = spec or suite.teacher
        revision = model_revision(spec.model, spec.revision)
        info: dict[str, Any] = {"id": spec.model, "revision": revision}
        if spec.finetune is None:
            model = load_for_head(spec.model, task.head, spec.revision, self.device)
            info.update(params=count_parameters(model), finetuned=False)
            return LoadedModel(model.eval(), tokenizer, spec.model), info, spec.model
        head_config = task.head_config()
        key = cache.cache_key(
            model=spec.model, revision=revision, task=task.name, data_sha256=data_sha,
            train=spec.finetune.model_dump(exclude={"checkpoint_every"}),  # when to checkpoint does not change weights
            trainer=TRAINER_REVISION, max_length=self.max_length, dtype=suite.dtype, seed=suite.seed,
            **({"layers": spec.layers} if spec.layers else {}),  # old keys unchanged
            labels=list(head_config["id2label"].values()), **devices.cache_fields(self.device),
        )
        folder = cache.finetuned_dir(key)
        with cache.entry_lock(key):  # a concurrent run fine-tuning the same teacher: wait for it, then reuse
            reused = cache.is_cached(key)
            if reused:
                model = load_for_head(str(folder), task.head, device=self.device)
                durations["teacher_finetune_s"] = 0.0
            else:
                torch.manual_seed(suite.seed)  # the fresh head's initialisation must not depend on what ran before
                # teacher.layers: from_pretrained with a smaller num_hidden_layers keeps the first k layers' weights
                depth = {"num_hidden_layers": spec.layers} if spec.layers else {}
                model = load_for_head(spec.model, task.head, spec.revision, self.device, fresh_head=True,
                                      **head_config, **depth)
                with timed(durations, "teacher_finetune_s"):
                    stats = train(model, tokenizer, features, spec.finetune, loss_fn, seed=suite.seed,
                                  dtype=suite.dtype, desc=f"fine-tune {role} on {task.name}", collate_fn=collate_fn)
                if PartialState().is_main_process:  # the processes of a launch trained one model: one writes it
                    cache.save_finetuned(key, model, tokenizer, {"model": spec.model, "revision": revision,
                                                                 "task": task.name, "data_sha256": data_sha,
                                                                 "steps": stats.steps})
        info.update(params=count_parameters(model), finetuned=True, cache_key=key, reused_from_cache=reused)
        return LoadedModel(model.eval(), tokenizer, str(folder)), info, str(folder)

    def add_teacher(self, role: str, teacher: LoadedModel, info: dict, folder: str) -> None:
        self.models[role], self.info[role], self.dirs[role] = teacher, info, folder


def recipe(task: Task) -> type[Recipe]:
    """The recipe of the task's head."""
    return RECIPES.get(task.head, f"task {task.name}")


def run_recipe(task: Task, suite: SuiteConfig, run_dir: Path) -> Trained:
    return recipe(task)(task, suite, run_dir).run()
