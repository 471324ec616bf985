"""Pieces every recipe shares: timing, the cached fine-tuned teacher, saving a trained student."""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import PartialState

from kdbench import devices
from kdbench.config import SuiteConfig, TeacherConfig, TrainConfig
from kdbench.distill.trainer import TRAINER_REVISION, LossFn, effective_batch_size, train
from kdbench.errors import KdbenchError
from kdbench.fsio import within
from kdbench.models import cache
from kdbench.models.loading import count_parameters, load_for_head, model_revision, save_model
from kdbench.tasks.base import LoadedModel, RunSettings, Task


@contextmanager
def timed(durations: dict, name: str):
    start = time.perf_counter()
    yield
    durations[name] = round(time.perf_counter() - start, 2)


def require(suite: SuiteConfig, *sections: str) -> None:
    """train-and-eval needs the suite's teacher and student sections; `kdbench eval` does not.
    Only the classification recipe distils from several teachers (it checks ``teachers`` itself)."""
    if "teacher" in sections and suite.teachers is not None:
        raise KdbenchError(f"suite {suite.name}: several teachers (teachers) are distilled on classification and "
                           "regression tasks only; give this task one 'teacher' (per_task)")
    for section in sections:
        if getattr(suite, section) is None:
            raise KdbenchError(f"suite {suite.name}: train-and-eval needs a '{section}' section")


def require_logit_loss(suite: SuiteConfig, task: Task) -> None:
    """Heads distilled on logits (classifiers, NER, causal LMs) take a logit-level loss."""
    from kdbench.distill.losses.catalog import check_logit_loss

    try:
        check_logit_loss(suite.distill.loss)
    except ValueError as e:
        raise KdbenchError(f"suite {suite.name}, task {task.name} ({task.head} head): distill.loss: {e}") from None


def where(suite: SuiteConfig, task: Task) -> str:
    return f"suite {suite.name}, task {task.name} ({task.head} head)"


def require_teacher_layers(suite: SuiteConfig, task: Task, *, finetunes: bool) -> None:
    """``teacher.layers`` truncates a teacher before its fine-tune: only a recipe that fine-tunes the
    teacher (``finetunes``) honours it, and only when the suite fine-tunes it."""
    for spec in suite.teachers or [suite.teacher]:
        if not spec.layers:
            continue
        if not finetunes:
            raise KdbenchError(f"{where(suite, task)}: teacher.layers truncates a teacher before fine-tuning; this "
                               "recipe uses its teacher as published (classification, regression and NER fine-tune)")
        if spec.finetune is None:
            raise KdbenchError(f"suite {suite.name}: teacher.layers truncates a teacher before fine-tuning; "
                               "it needs teacher.finetune")


def require_derived_student(suite: SuiteConfig, task: Task, *, pretrained: bool) -> None:
    """Recipes other than classification's derive the student from the teacher (layer_selection,
    config) or, when they can (``pretrained``), load ``student.model`` as it is."""
    spec = suite.student
    if spec.builder == "pretrained" and not pretrained:
        raise KdbenchError(f"{where(suite, task)}: student.builder pretrained is not supported here; the student is "
                           "derived from the teacher (layer_selection or config)")
    if spec.model and spec.builder != "pretrained":
        raise KdbenchError(f"{where(suite, task)}: student.model with builder {spec.builder}: only classification and "
                           "regression tasks derive the student from a model other than the teacher")


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


def finetuned_teacher(
    task: Task, suite: SuiteConfig, tokenizer, features: list[dict], loss_fn: LossFn, data_sha: str,
    durations: dict, *, head_config: dict, key_fields: dict, collate_fn: Callable | None = None,
    spec: TeacherConfig | None = None, role: str = "teacher",
) -> tuple[LoadedModel, dict, str]:
    """The teacher fine-tuned on the task: from the on-disk cache when an entry with the same key
    exists (model revision, task, data hash, train config, trainer revision, max length, dtype,
    seed and ``key_fields`` such as label names), else fine-tuned now and cached. With
    ``teacher.finetune: null`` the model is used as it is. Returns (model, run-record info, folder
    or id the efficiency figures load). ``spec``: one teacher of a multi-teacher suite (default the
    suite's ``teacher``), ``role`` its name (it names the training's checkpoint folder)."""
    spec = spec or suite.teacher
    device = devices.resolve(suite.device)
    revision = model_revision(spec.model, spec.revision)
    info = {"id": spec.model, "revision": revision}
    if spec.finetune is None:
        model = load_for_head(spec.model, task.head, spec.revision, device)
        info.update(params=count_parameters(model), finetuned=False)
        return LoadedModel(model.eval(), tokenizer, spec.model), info, spec.model
    key = cache.cache_key(
        model=spec.model, revision=revision, task=task.name, data_sha256=data_sha,
        train=spec.finetune.model_dump(exclude={"checkpoint_every"}),  # when to checkpoint does not change weights
        trainer=TRAINER_REVISION, max_length=task.max_length(RunSettings.of(suite)), dtype=suite.dtype,
        seed=suite.seed, **({"layers": spec.layers} if spec.layers else {}), **key_fields,  # old keys unchanged
        **devices.cache_fields(device),
    )
    folder = cache.finetuned_dir(key)
    with cache.entry_lock(key):  # a concurrent run fine-tuning the same teacher: wait for it, then reuse
        reused = cache.is_cached(key)
        if reused:
            model = load_for_head(str(folder), task.head, device=device)
            durations["teacher_finetune_s"] = 0.0
        else:
            torch.manual_seed(suite.seed)  # the fresh head's initialisation must not depend on what ran before
            # teacher.layers: from_pretrained with a smaller num_hidden_layers keeps the first k layers' weights
            depth = {"num_hidden_layers": spec.layers} if spec.layers else {}
            model = load_for_head(spec.model, task.head, spec.revision, device, fresh_head=True, **head_config, **depth)
            with timed(durations, "teacher_finetune_s"):
                stats = train(model, tokenizer, features, spec.finetune, loss_fn, seed=suite.seed, dtype=suite.dtype,
                              desc=f"fine-tune {role} on {task.name}", collate_fn=collate_fn)
            if PartialState().is_main_process:  # the processes of a launch trained one model: one writes it
                cache.save_finetuned(key, model, tokenizer, {"model": spec.model, "revision": revision,
                                                             "task": task.name, "data_sha256": data_sha,
                                                             "steps": stats.steps})
    info.update(params=count_parameters(model), finetuned=True, cache_key=key, reused_from_cache=reused)
    return LoadedModel(model.eval(), tokenizer, str(folder)), info, str(folder)


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
