"""``train_and_eval``: fine-tune (or reuse) a teacher, build a student by layer selection, distil it,
train a label-only baseline with the same budget, score all three, write the run record, the HTML
report and the leaderboard. Data flows one way: config → data + models → predictions → metrics →
run record → report/leaderboard."""
from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

import kdbench
from kdbench import environment
from kdbench.backends import efficiency
from kdbench.backends.batching import encode
from kdbench.backends.hf import HFClassifier
from kdbench.config import SuiteConfig
from kdbench.distill.trainer import TRAINER_REVISION, kd_objective, label_objective, train
from kdbench.models import cache
from kdbench.models.loading import count_parameters, load_classifier, load_tokenizer, model_revision, save_model
from kdbench.models.students import BUILDERS
from kdbench.predictions import ClassifierPredictions
from kdbench.report import html, leaderboard
from kdbench.report.record import RECORD_FILE, SAMPLES_FILE, SCHEMA_VERSION, dumps
from kdbench.report.rundir import staged_run_dir
from kdbench.tasks import get_task
from kdbench.tasks.classification import ClassificationTask

TEACHER, STUDENT, BASELINE = "teacher", "student", "baseline"


@dataclass
class RunResult:
    run_dir: Path
    record: dict
    leaderboard: Path | None = None


@dataclass
class _TaskOutcome:
    models: dict
    dataset: dict
    predictions: dict[str, ClassifierPredictions]
    model_dirs: dict[str, str]
    durations: dict[str, float] = field(default_factory=dict)


def new_run_id(suite: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{suite}-{secrets.token_hex(3)}"


@contextmanager
def _timed(durations: dict, name: str):
    start = time.perf_counter()
    yield
    durations[name] = round(time.perf_counter() - start, 2)


def _teacher(task: ClassificationTask, suite: SuiteConfig, tokenizer, features, labels, data_sha: str,
             durations: dict):
    """The fine-tuned teacher from the cache, or fine-tuned now and cached."""
    spec = suite.teacher
    revision = model_revision(spec.model, spec.revision)
    if spec.finetune is None:
        model = load_classifier(spec.model, task.num_labels, spec.revision)
        return model.eval(), revision, {"finetuned": False}, spec.model
    key = cache.cache_key(
        model=spec.model, revision=revision, task=task.name, labels=task.spec.label_names, data_sha256=data_sha,
        train=spec.finetune.model_dump(), trainer=TRAINER_REVISION, max_length=suite.max_length, dtype=suite.dtype, seed=suite.seed,
    )
    folder = cache.finetuned_dir(key)
    reused = cache.is_cached(key)
    if reused:
        model = load_classifier(str(folder), None)
        durations["teacher_finetune_s"] = 0.0
    else:
        model = load_classifier(spec.model, task.num_labels, spec.revision)
        with _timed(durations, "teacher_finetune_s"):
            stats = train(model, tokenizer, features, labels, spec.finetune, label_objective(),
                          seed=suite.seed, dtype=suite.dtype, desc=f"fine-tune teacher on {task.name}")
        cache.save_finetuned(key, model, tokenizer, {"model": spec.model, "revision": revision, "task": task.name,
                                                     "data_sha256": data_sha, "steps": stats.steps})
    info = {"finetuned": True, "cache_key": key, "reused_from_cache": reused}
    return model.eval(), revision, info, str(folder)


def _run_task(task: ClassificationTask, suite: SuiteConfig, run_dir: Path) -> _TaskOutcome:
    durations: dict[str, float] = {}
    train_split = task.train_data(suite.data.train_rows, seed=suite.seed)
    eval_split = task.eval_data(suite.data.eval_rows)
    train_sha = train_split.sha256()
    texts, pairs = task.inputs(train_split)
    labels = task.labels(train_split)

    tokenizer = load_tokenizer(suite.teacher.model, suite.teacher.revision)
    features = encode(tokenizer, texts, pairs, suite.max_length)
    teacher, revision, teacher_info, teacher_dir = _teacher(task, suite, tokenizer, features, labels, train_sha,
                                                            durations)
    backend = lambda m: HFClassifier(m, tokenizer, suite.dtype, suite.max_length, suite.eval.batch_size)  # noqa: E731
    with _timed(durations, "teacher_logits_s"):
        compute = lambda: backend(teacher).logits_of_features(features, desc=f"teacher logits {task.name}")  # noqa: E731
        if teacher_info["finetuned"]:
            teacher_logits, teacher_info["train_logits_reused"] = cache.teacher_logits(
                Path(teacher_dir), compute, data_sha256=train_sha, max_length=suite.max_length, dtype=suite.dtype)
        else:
            teacher_logits = compute()

    builder = BUILDERS[suite.student.builder]
    trained = {}
    for role, objective, logits in [(STUDENT, kd_objective(suite.distill), teacher_logits),
                                    (BASELINE, label_objective(), None)]:
        if role == BASELINE and not suite.baseline:
            continue
        model = builder(teacher, suite.student.layers)
        with _timed(durations, f"{role}_train_s"):
            train(model, tokenizer, features, labels, suite.distill, objective, teacher_logits=logits,
                  seed=suite.seed, dtype=suite.dtype, desc=f"train {role} on {task.name}")
        folder = run_dir / "models" / task.name / role
        save_model(model, tokenizer, folder)
        trained[role] = model

    with _timed(durations, "eval_s"):
        predictions = {role: task.predict(backend(m), eval_split, role)
                       for role, m in [(TEACHER, teacher), *trained.items()]}

    student_info = {"builder": suite.student.builder, "layer_map": list(suite.student.layers), "init_from": TEACHER}
    models = {TEACHER: {"id": suite.teacher.model, "revision": revision, "params": count_parameters(teacher), **teacher_info}}
    model_dirs = {TEACHER: teacher_dir}
    for role, model in trained.items():
        method = ({"method": "kd", "loss": suite.distill.loss, "loss_args": suite.distill.loss_args}
                  if role == STUDENT else {"method": "labels_only"})
        models[role] = {"id": f"models/{task.name}/{role}", "revision": None, "params": count_parameters(model),
                        **student_info, **method}
        model_dirs[role] = str(run_dir / "models" / task.name / role)
    d = task.spec.dataset
    dataset = {"id": d.id, "config": d.config, "split": eval_split.spec.split, "rows": len(eval_split.rows),
               "sha256": eval_split.sha256(), "source": eval_split.source,
               "train": {"split": train_split.spec.split, "rows": len(train_split.rows), "sha256": train_sha}}
    return _TaskOutcome(models, dataset, predictions, model_dirs, durations)


def train_and_eval(
    suite: SuiteConfig,
    *,
    reports_dir: str | Path = "reports",
    leaderboard_dir: str | Path | None = "leaderboards",
    include_paths: Sequence[str | Path] = (),
) -> RunResult:
    started = time.perf_counter()
    tasks = [get_task(name, include_paths) for name in suite.tasks]  # fail on a bad name before any work
    run_id = new_run_id(suite.name)
    results, pairs, datasets, durations, samples = {}, {}, {}, {}, []
    models: dict = {}
    with staged_run_dir(Path(reports_dir), run_id) as run_dir:
        outcomes = {}
        for task in tasks:
            outcome = outcomes[task.name] = _run_task(task, suite, run_dir)
            preds = outcome.predictions
            results[task.name] = {role: task.score(p, suite.eval, suite.seed) for role, p in preds.items()}
            pairs[task.name] = {f"{role}|{TEACHER}": task.score_pair(p, preds[TEACHER], suite.eval, suite.seed)
                                for role, p in preds.items() if role != TEACHER}
            if BASELINE in preds:
                pairs[task.name][f"{STUDENT}|{BASELINE}"] = task.compare(preds[STUDENT], preds[BASELINE],
                                                                         suite.eval, suite.seed)
            datasets[task.name] = outcome.dataset
            durations[task.name] = outcome.durations
            samples.extend(p.to_frame() for p in preds.values())
            for role, info in outcome.models.items():
                models.setdefault(role, info)

        # efficiency on the first task's evaluation inputs, each model in its own process
        first = tasks[0]
        texts, text_pairs = first.inputs(first.eval_data(suite.data.eval_rows))
        eff = {}
        for role, folder in tqdm(outcomes[first.name].model_dirs.items(), desc="efficiency", leave=False):
            eff[role] = efficiency.measure(folder, texts, text_pairs, dtype=suite.dtype, max_length=suite.max_length,
                                           batch_sizes=suite.eval.latency_batches,
                                           throughput_batch=suite.eval.batch_size)

        record = {
            "schema_version": SCHEMA_VERSION,
            "kdbench_version": kdbench.__version__,
            "git_hash": environment.git_hash(),
            "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "suite": suite.name,
            "config": {**suite.model_dump(mode="json"),
                       "task_specs": {t.name: t.spec.model_dump(mode="json") for t in tasks}},
            "environment": environment.describe(suite.dtype, "cpu"),
            "seeds": [suite.seed],
            "models": models,
            "datasets": datasets,
            "results": results,
            "pairs": pairs,
            "efficiency": eff,
            "efficiency_task": first.name,
            "durations": {**durations, "total_s": round(time.perf_counter() - started, 2)},
        }
        (run_dir / RECORD_FILE).write_text(dumps(record))
        frame = pd.concat(samples, ignore_index=True)
        frame.to_parquet(run_dir / SAMPLES_FILE, index=False)
        (run_dir / "report.html").write_text(html.render_run(record, frame))
    final_dir = Path(reports_dir) / run_id
    board = leaderboard.build(Path(reports_dir), Path(leaderboard_dir)) if leaderboard_dir is not None else None
    return RunResult(final_dir, record, board)
