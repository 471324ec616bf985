"""The one way a run is scored and written, and the evaluation of existing models.

``evaluate``: existing models are loaded by id or folder; ``kdbench.distill.run.train_and_eval``:
each task's recipe makes or reuses the teacher, distils a student and trains a no-KD baseline. Both
then go through :func:`score_and_write`: predictions → metrics → run record → samples, HTML report,
leaderboard. Data flows one way (DESIGN.md); tasks never write files, metrics never load models,
and evaluation imports nothing of the trainer (``kdbench.distill``).
"""
from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kdbench import devices, environment, names, preflight, progress, tracking
from kdbench._version import __version__
from kdbench.backends import efficiency, engines, speculative
from kdbench.config import SuiteConfig
from kdbench.errors import KdbenchError, ModelHeadError
from kdbench.fsio import within, write_atomic
from kdbench.metrics.glue import glue_average
from kdbench.metrics.sanity import run_warnings
from kdbench.metrics.stats import aggregate_seed_results
from kdbench.models import card
from kdbench.models.loading import count_parameters, model_revision
from kdbench.predictions import samples_frame
from kdbench.predictions.ensemble import ensemble_predictions
from kdbench.report import html, leaderboard
from kdbench.report.record import RECORD_FILE, SAMPLES_FILE, SCHEMA_VERSION, write_record
from kdbench.report.rundir import staged_run_dir
from kdbench.roles import BASELINE, ENSEMBLE, STUDENT, TEACHER
from kdbench.tasks import generated_text, get_task
from kdbench.tasks.base import RunSettings, Task
from kdbench.timing import timed

TASK_PLACEHOLDER = "{task}"


@dataclass(frozen=True)
class Score:
    """One metric's value and its confidence interval (None where the metric has none)."""

    value: float
    ci: tuple[float, float] | None = None

    @classmethod
    def of(cls, entry: dict) -> Score:
        return cls(entry["value"], tuple(entry["ci"]) if entry.get("ci") is not None else None)


@dataclass
class RunResult:
    """What ``evaluate`` and ``train_and_eval`` return: the run folder, its record (``report.json``
    as a dict) and typed views of it."""

    run_dir: Path
    record: dict
    leaderboard: Path | None = None
    written: bool = True  # False on the other processes of a multi-process run (the main one writes)

    @property
    def tasks(self) -> list[str]:
        return list(self.record["results"])

    def roles(self, task: str) -> list[str]:
        return list(self.record["results"][task])

    def scores(self, task: str, role: str) -> dict[str, Score]:
        """Every metric of one model on one task."""
        try:
            return {m: Score.of(e) for m, e in self.record["results"][task][role].items()}
        except KeyError:
            raise KdbenchError(f"run {self.record.get('run_id')}: no results for task {task!r}, role {role!r} "
                               f"(tasks: {', '.join(self.tasks)})") from None

    def score(self, task: str, role: str, metric: str) -> Score:
        scores = self.scores(task, role)
        if metric not in scores:
            raise KdbenchError(f"task {task}, role {role}: no metric {metric!r} (metrics: {', '.join(scores)})")
        return scores[metric]

    def pair(self, task: str, model: str = STUDENT, reference: str = TEACHER) -> dict[str, Score]:
        """The teacher–student metrics of ``model`` against ``reference`` (``student|baseline``: what KD bought)."""
        key = f"{model}|{reference}"
        found = self.record["pairs"].get(task, {}).get(key)
        if found is None:
            raise KdbenchError(f"task {task}: no pair {key!r} (pairs: {', '.join(self.record['pairs'].get(task, {}))})")
        return {m: Score.of(e) for m, e in found.items()}

    def model(self, role: str, task: str | None = None) -> dict:
        """The record's entry of one model (id, revision, params, how it was made), on ``task`` when given."""
        return (self.record["models_by_task"][task] if task else self.record["models"])[role]


@dataclass
class TaskRun:
    """One task's models by role, ready to predict, with what the record says about them."""

    task: Task
    models: dict  # role -> LoadedModel
    info: dict  # role -> run-record models entry
    dirs: dict  # role -> folder or id, for the efficiency figures
    train_dataset: dict | None
    durations: dict
    seed: int | None = None  # set for every seed after the first of a multi-seed run
    ensemble: dict | None = None  # multi-teacher: teacher role -> weight (the ensemble pseudo-model)
    curves: dict | None = None  # eval.during_training: the record's curves entry of this task


class CurveEvaluator:
    """``eval.during_training``: scores a model in training on the first ``rows`` evaluation
    examples (its own metrics, and its pair metrics against the teacher, whose predictions are made
    once), with the hf engine and without the costly extras (generated text, speculative decoding)."""

    def __init__(self, task: Task, suite: SuiteConfig):
        cfg = suite.eval.during_training
        self.every, self.rows, self.task = cfg.every, cfg.rows, task
        quiet = suite.eval.model_copy(update={"backend": "hf", "bootstrap_samples": 100, "generated_text": None,
                                              "speculative": None, "tensor_parallel_size": 1})
        self.settings = RunSettings.of(suite.model_copy(update={"eval": quiet}))
        self.data = task.eval_data(cfg.rows)
        self.reference = None

    def __call__(self, role: str, model, tokenizer, teacher) -> dict:
        from kdbench.tasks.base import LoadedModel

        if self.reference is None and teacher is not None:
            self.reference = self.task.predict(teacher, self.data, TEACHER, self.settings)
        preds = self.task.predict(LoadedModel(model, tokenizer, f"{role} in training"), self.data, role, self.settings)
        point = {"metrics": {m: v["value"] for m, v in self.task.score(preds, self.settings).items()}}
        if self.reference is not None:
            point["pairs"] = {m: v["value"] for m, v in self.task.score_pair(preds, self.reference, self.settings).items()}
        return point

    def record(self, points: dict[str, list[dict]]) -> dict:
        """The run record's ``curves`` entry of the task."""
        data = self.task.dataset_record(self.data)
        return {"every": self.every, "rows": data["rows"], "split": data["split"], "roles": points}


def new_run_id(suite: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{suite}-{secrets.token_hex(3)}"


def process_outputs(procs, suite: SuiteConfig, reports_dir, leaderboard_dir):
    """(suite, reports folder, leaderboard folder, scratch folder) of this process. Under a launcher
    every process runs the models (evaluation: each its shard, gathered by all); only the main one
    writes the run and measures efficiency, the others write into a scratch folder removed after."""
    if procs.is_main_process:
        return suite, reports_dir, leaderboard_dir, None
    scratch = Path(tempfile.mkdtemp(prefix="kdbench-process-"))
    suite = suite.model_copy(update={"eval": suite.eval.model_copy(update={"efficiency": False})})
    return suite, scratch, None, scratch


def written_by_main(scratch: Path | None, score_and_write) -> RunResult:
    try:
        result = score_and_write()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    result.written = scratch is None
    return result


def evaluate(
    suite: SuiteConfig,
    models: dict[str, str],
    *,
    revisions: dict[str, str | None] | None = None,
    reports_dir: str | Path = "reports",
    leaderboard_dir: str | Path | None = "leaderboards",
    include_paths: Sequence[str | Path] = (),
    allow_code: bool = False,
) -> RunResult:
    """Score existing models (``{role: hub id or folder}``, a ``teacher`` among them for the
    teacher–student metrics) on the suite's tasks. Classifiers are fine-tuned per task, so an id
    may contain ``{task}``, replaced by each task's name (e.g. ``runs/{task}/student``)."""
    if not models:
        raise KdbenchError("kdbench eval: name at least one model (--teacher, --student)")
    for role in models:
        names.check(role, "role")
    device = devices.resolve(suite.device)
    tracking.check(suite.log_with)
    procs = devices.process_state(device)
    suite, reports_dir, leaderboard_dir, scratch = process_outputs(procs, suite, reports_dir, leaderboard_dir)
    tasks = [get_task(name, include_paths, allow_code=allow_code) for name in suite.tasks]
    engines.check(suite.eval.backend, tasks, device=device, processes=procs.num_processes,
                  tensor_parallel_size=suite.eval.tensor_parallel_size)
    speculative.check_setup(suite, tasks, device, roles=list(models))
    if leaderboard_dir is not None:
        leaderboard.check_output(Path(leaderboard_dir))
    revisions = revisions or {}
    model_ids = {task.name: {role: template.replace(TASK_PLACEHOLDER, task.name) for role, template in models.items()}
                 for task in tasks}
    preflight.check_evaluation(suite, tasks, model_ids, revisions)

    def runs(run_dir: Path):
        for task in tasks:
            loaded, info, dirs, durations = {}, {}, {}, {}
            for role, template in models.items():
                model_id = model_ids[task.name][role]
                with timed(durations, f"{role}_load_s"):
                    try:
                        loaded[role] = task.load_model(model_id, revisions.get(role), device)
                    except ModelHeadError as e:  # a plain hub model on a classifier task
                        raise ModelHeadError(f"{e}; {_fine_tuned_hint(task, role, template)}") from None
                info[role] = {"id": template, "revision": model_revision(model_id, revisions.get(role)),
                              "params": count_parameters(loaded[role].model)}
                dirs[role] = model_id
            yield TaskRun(task, loaded, info, dirs, None, durations)

    return written_by_main(scratch, lambda: score_and_write(suite, tasks, runs, reports_dir, leaderboard_dir,
                                                              device, procs.num_processes))


def _fine_tuned_hint(task: Task, role: str, template: str) -> str:
    """What ``kdbench eval`` needs for a task whose models are fine-tuned per task (GLUE, NER)."""
    flag = f"--{role}" if role in (TEACHER, STUDENT) else f"--model {role}="
    if TASK_PLACEHOLDER in template:
        return f"is {template} fine-tuned for every task of the suite?"
    return (f"kdbench eval scores {task.head.replace('_', ' ')} models already fine-tuned for each task: name one per "
            f"task with the {TASK_PLACEHOLDER} placeholder ({flag}{'' if flag.endswith('=') else ' '}"
            f"DIR/{TASK_PLACEHOLDER}, e.g. the reports/RUN/models/{TASK_PLACEHOLDER}/student that train-and-eval "
            f"saves), or let kdbench train-and-eval fine-tune {template} as a teacher")


def _score_task(run: TaskRun, eval_data, settings: RunSettings) -> tuple[dict, dict, dict, list]:
    """Predictions of every role, each role's metrics, the pair metrics and the ``samples.parquet``
    rows: every other role against the teacher (with several teachers: against each of them and
    their ensemble, a pseudo-model whose outputs are the weighted mean of theirs), and the student
    against the baseline (what KD bought)."""
    task = run.task
    if settings.eval.speculative is not None:  # a draft the target cannot use fails before any prediction
        for role, model in run.models.items():
            if role != TEACHER:
                speculative.check(f"task {task.name}", run.models[TEACHER], model, role)
    with timed(run.durations, "eval_s"):
        predictions = {role: task.predict(model, eval_data, role, settings) for role, model in run.models.items()}
    references = [TEACHER] if TEACHER in predictions else []
    if run.ensemble:
        ensemble = ensemble_predictions([predictions[r] for r in run.ensemble], list(run.ensemble.values()))
        members = {r: predictions.pop(r) for r in run.ensemble}  # the ensemble listed right after its teachers
        predictions = {**members, ENSEMBLE: ensemble, **predictions}
        references = [*run.ensemble, ENSEMBLE]
    if settings.eval.generated_text is not None:
        generated_text.cross_score(task, run.models, predictions, references, settings)
    results, frames, pairs = {}, [], {}
    for role, p in predictions.items():
        results[role], frame = task.evaluate(p, settings)
        frames.append(frame)
    for ref in references:
        for role, p in predictions.items():
            if role not in references:
                key = f"{role}|{ref}"
                pairs[key], frame = task.evaluate_pair(p, predictions[ref], settings, key)
                if frame is not None:
                    frames.append(frame)
    if STUDENT in predictions and BASELINE in predictions:
        compared = task.compare(predictions[STUDENT], predictions[BASELINE], settings)
        if compared:
            pairs[f"{STUDENT}|{BASELINE}"] = compared
    return predictions, results, {k: v for k, v in pairs.items() if v}, frames


def _speculative(run: TaskRun, eval_data, suite: SuiteConfig) -> dict:
    """``eval.speculative``: the teacher as target, every other model as its draft (record section
    ``speculative``; kdbench.backends.speculative)."""
    cfg = suite.eval.speculative
    teacher = run.models[TEACHER]
    prompts = run.task.speculative_prompts(teacher, eval_data, cfg.rows)
    drafts = {role: m for role, m in run.models.items() if role != TEACHER}
    with timed(run.durations, "speculative_s"):
        measured = speculative.measure(teacher, drafts, prompts, cfg, suite.dtype, f"task {run.task.name}")
    return {"target": TEACHER, "rows": len(prompts), "max_new_tokens": cfg.max_new_tokens,
            "draft_tokens": cfg.draft_tokens, "decoding": speculative.DECODING, "engines": measured}


def _efficiency(run: TaskRun, eval_data, suite: SuiteConfig, settings: RunSettings, device) -> dict:
    """Each model in its own process on the run's device, on the task's evaluation inputs."""
    texts, pairs = run.task.efficiency_inputs(eval_data)
    return {role: efficiency.measure(folder, texts, pairs, dtype=suite.dtype, max_length=run.task.max_length(settings),
                                     head=run.task.head, batch_sizes=suite.eval.latency_batches,
                                     throughput_batch=suite.eval.batch_size, device=device)
            for role, folder in progress.bar(run.dirs.items(), desc="efficiency", unit="model")}


def aggregate_seeds(per_seed: dict[str, list[tuple[dict, dict]]]) -> dict:
    """``{task: {"results": {role: {metric: ...}}, "pairs": {pair: {metric: ...}}}}``: each metric's
    mean ± std over seeds with a t interval (kdbench.metrics.stats.aggregate_seed_results)."""
    out = {}
    for task, seeds in per_seed.items():
        results = {role: aggregate_seed_results([r[role] for r, _ in seeds if role in r]) for role in seeds[0][0]}
        pairs = {key: aggregate_seed_results([p[key] for _, p in seeds if key in p]) for key in seeds[0][1]}
        out[task] = {"results": results, "pairs": pairs}
    return out


def score_and_write(suite: SuiteConfig, tasks: list[Task], runs, reports_dir, leaderboard_dir, device, processes: int,
                     *, run_id: str | None = None, resume: bool = False, finish=None, trained: bool = False) -> RunResult:
    """``device``: where the models ran, ``processes``: how many launched processes ran them;
    ``run_id``: given by train-and-eval, new by default; ``resume``: continue in its existing
    staging folder; ``finish(run_dir)``: called once the record is written, before the folder is
    renamed into place (the record is written last: a staging folder with one is a whole run);
    ``trained``: the run trained its students (the record names the trainer revision)."""
    started = time.perf_counter()
    run_id = run_id or new_run_id(suite.name)
    results, pairs, datasets, durations, frames, models, models_by_task, kinds = {}, {}, {}, {}, [], {}, {}, {}
    eff, eff_task, per_seed, spec, curve_records = {}, None, {}, {}, {}
    with staged_run_dir(Path(reports_dir), run_id, resume=resume) as run_dir:
        for run in runs(run_dir):
            task = run.task
            task_suite = suite.for_task(task.name)
            settings = RunSettings.of(task_suite)
            eval_data = task.eval_data(task_suite.data.eval_rows)
            if run.seed is not None:  # a later seed: its scores feed seed_results, nothing else
                _, seed_scores, seed_pairs, _ = _score_task(run, eval_data, settings)
                per_seed.setdefault(task.name, []).append((seed_scores, seed_pairs))
                durations[f"{task.name}/seed-{run.seed}"] = run.durations
                run.models.clear()
                continue
            predictions, results[task.name], pairs[task.name], task_frames = _score_task(run, eval_data, settings)
            kinds[task.name] = next(iter(predictions.values())).kind
            per_seed[task.name] = [(results[task.name], pairs[task.name])]
            datasets[task.name] = task.dataset_record(eval_data)
            if run.train_dataset is not None:
                datasets[task.name]["train"] = run.train_dataset
            frames.extend(task_frames)
            for role, info in run.info.items():
                models.setdefault(role, info)
            models_by_task[task.name] = run.info
            if eff_task is None and task_suite.eval.efficiency:  # on the first task's evaluation inputs
                eff, eff_task = _efficiency(run, eval_data, task_suite, settings, device), task.name
            if task_suite.eval.speculative is not None:
                spec[task.name] = _speculative(run, eval_data, task_suite)
            if run.curves:
                curve_records[task.name] = run.curves
            durations[task.name] = run.durations
            run.models.clear()  # free this task's models before the next task loads its own

        record = {
            "schema_version": SCHEMA_VERSION,
            "kdbench_version": __version__,
            "git_hash": environment.git_hash(),
            **({"trainer_revision": environment.trainer_revision()} if trained else {}),
            "run_id": run_id,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "suite": suite.name,
            "config": {**suite.model_dump(mode="json"),
                       "task_specs": {t.name: t.spec.model_dump(mode="json") for t in tasks}},
            "environment": {**environment.describe(suite.dtype, device), "backend": suite.eval.backend,
                            "processes": processes},
            "seeds": suite.run_seeds,
            "models": models,  # each role as it was on the first task; every task's in models_by_task
            "models_by_task": models_by_task,
            "datasets": datasets,
            "kinds": kinds,  # each task's predictions kind: how the gate rebuilds its metrics from samples.parquet
            "results": results,
            "pairs": pairs,
            "efficiency": eff,
            **({"efficiency_task": eff_task} if eff_task else {}),
            "durations": {**durations, "total_s": round(time.perf_counter() - started, 2)},
        }
        if spec:
            record["speculative"] = spec
        if curve_records:
            record["curves"] = curve_records
        if len(suite.run_seeds) > 1:
            record["seed_results"] = aggregate_seeds(per_seed)
        write_outputs(record, samples_frame(frames), run_dir)
        with tracking.scope(suite.log_with, within(run_dir, "logs"), run_id):
            tracking.log_results(record)
        write_record(run_dir / RECORD_FILE, record)
        if finish is not None:
            finish(run_dir)
    return RunResult(within(reports_dir, run_id), record, build_leaderboard(reports_dir, leaderboard_dir))


def write_outputs(record: dict, frame, run_dir: Path) -> None:
    """A finished run's GLUE summary and sanity warnings into ``record``, then its samples, HTML
    report and model cards into ``run_dir``; the caller writes the record itself, last (a staging
    folder holding one is a whole run)."""
    summary = glue_average(record)
    if summary:
        record["summary"] = summary
    record["warnings"] = run_warnings(record, frame)
    frame.to_parquet(run_dir / SAMPLES_FILE, index=False)
    write_atomic(run_dir / "report.html", html.render_run(record, frame))
    card.write_cards(record, run_dir)  # a model card beside every saved student and baseline


def build_leaderboard(reports_dir, leaderboard_dir) -> Path | None:
    return leaderboard.build(Path(reports_dir), Path(leaderboard_dir)) if leaderboard_dir is not None else None
