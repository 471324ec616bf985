"""A suite's runs as points on an executor (``train-and-eval`` / ``eval --executor ray``), merged
into the one run record the suite makes in one process.

Each task × seed of ``train-and-eval`` (each task of ``eval``) is one point: an ordinary run of
the one-task, one-seed suite that ``kdbench.distill.run.train_and_eval`` makes for that task and seed
(``per_task`` merged in, the suite's ``seed`` set to that seed), written into the staging folder
of the suite's run. When every point is done their records are merged: each task's results,
pairs, datasets and models from its first seed, mean ± std over seeds in ``seed_results``, the
efficiency figures of the first task that measures them (only that point measures), the samples
of every first seed; the saved models are moved to where one process puts them (``models/TASK/``,
``seed-N/models/TASK/``), tracker logs to ``logs/points/``, and the points' folders are removed. The run folder, HTML report,
model cards and leaderboard are then those of a run made in one process.

The points share no trained models (a later seed fine-tunes its own teacher, as in one process),
so they wait for nothing and run side by side.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from kdbench.config import SuiteConfig
from kdbench.fsio import within
from kdbench.sweeps.executors import Job, run_points

POINTS = "points"  # in the suite run's staging folder, while its points run


def point_suites(suite: SuiteConfig, seeds: Sequence[int]) -> dict[tuple[str, int], dict]:
    """``{(task, seed): the point's suite, JSON form}``; efficiency is measured by one point only
    (the first task whose suite measures it, first seed), speculative decoding by first seeds."""
    measured = next((t for t in suite.tasks if suite.for_task(t).eval.efficiency), None)
    out = {}
    for task in suite.tasks:
        for seed in seeds:
            one = suite.for_task(task)
            first = seed == seeds[0]
            ev = one.eval.model_copy(update={"efficiency": one.eval.efficiency and first and task == measured,
                                             **({} if first else {"speculative": None})})
            one = one.model_copy(update={"tasks": [task], "seed": seed, "seeds": None, "per_task": {}, "eval": ev})
            out[task, seed] = SuiteConfig.model_validate(one.model_dump(mode="json")).model_dump(mode="json")
    return out


def train_point(suite: dict, folder: str, include_paths: list[str], allow_code: bool) -> tuple[str, float]:
    """One train-and-eval point, into ``folder`` (anything unfinished there is removed first)."""
    from kdbench.sweeps.capacity_gap import run_point

    return run_point(suite, folder, include_paths=include_paths, allow_code=allow_code)


def eval_point(suite: dict, models: dict, revisions: dict, folder: str, include_paths: list[str],
               allow_code: bool) -> tuple[str, float]:
    """One eval point (a task), into ``folder``."""
    from kdbench.pipeline import evaluate

    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    result = evaluate(SuiteConfig.model_validate(suite), models, revisions=revisions, reports_dir=folder,
                      leaderboard_dir=None, include_paths=include_paths, allow_code=allow_code)
    return str(result.run_dir), round(time.perf_counter() - start, 2)


def run(suite: SuiteConfig, executor, *, models: dict[str, str] | None = None, revisions: dict | None = None,
        reports_dir: str | Path = "reports", leaderboard_dir: str | Path | None = "leaderboards",
        include_paths: Sequence[str | Path] = (), allow_code: bool = False, log=None):
    """``train-and-eval`` of ``suite`` (or, with ``models``, ``eval`` of them) as points on ``executor``;
    returns the merged run as :class:`kdbench.pipeline.RunResult`."""
    from kdbench import progress
    from kdbench.pipeline import TASK_PLACEHOLDER, RunResult, new_run_id
    from kdbench.report import leaderboard
    from kdbench.report.rundir import staged_run_dir

    log = log or progress.info
    if leaderboard_dir is not None:
        leaderboard.check_output(Path(leaderboard_dir))
    seeds = suite.run_seeds if models is None else suite.run_seeds[:1]  # eval scores once per task
    suites = point_suites(suite, seeds)
    includes = [str(Path(p).resolve()) for p in include_paths]  # a worker has its own working folder
    if models is not None:  # so a model folder given relative to here is found there (hub ids stay as they are)
        models = {role: str(Path(m).absolute()) if any(Path(m.replace(TASK_PLACEHOLDER, t)).exists() for t in suite.tasks)
                  else m for role, m in models.items()}
    _check_points(suites, models, revisions, includes, allow_code)
    started = time.perf_counter()
    run_id = new_run_id(suite.name)
    with staged_run_dir(Path(reports_dir), run_id) as staging:
        folder = staging.resolve()
        point_dirs: dict[tuple[str, int], Path] = {}

        def job(task: str, seed: int) -> Job:
            name = f"{task}-seed{seed}"
            out = str(within(folder, POINTS, name))
            args = ((suites[task, seed], out, includes, allow_code) if models is None else
                    (suites[task, seed], models, revisions or {}, out, includes, allow_code))
            return Job(name, train_point if models is None else eval_point, args, gpu=suite.device.startswith("cuda"))

        jobs = {key: job(*key) for key in suites}
        keys = {j.name: key for key, j in jobs.items()}

        def done(j: Job, result) -> None:
            point_dirs[keys[j.name]] = Path(result[0])

        run_points(executor, list(jobs.values()), done, log)
        record = merge(suite, seeds, point_dirs, staging, run_id, executor.describe(), time.perf_counter() - started)
        _write(record, [point_dirs[t, seeds[0]] for t in suite.tasks], staging)
    board = leaderboard.build(Path(reports_dir), Path(leaderboard_dir)) if leaderboard_dir is not None else None
    return RunResult(within(reports_dir, run_id), record, board)


def _check_points(suites, models, revisions, includes, allow_code) -> None:
    """Bad input fails here, before any point runs: every point's suite against its task, models and data."""
    from kdbench.distill.preflight import check_training
    from kdbench.pipeline import TASK_PLACEHOLDER
    from kdbench.preflight import check_evaluation
    from kdbench.tasks import get_task

    for (task_name, seed), suite_json in suites.items():
        cfg = SuiteConfig.model_validate(suite_json)
        task = get_task(task_name, includes, allow_code=allow_code)
        if models is None:
            if seed == next(s for t, s in suites if t == task_name):
                check_training(cfg, [task])
        else:
            ids = {task_name: {role: m.replace(TASK_PLACEHOLDER, task_name) for role, m in models.items()}}
            check_evaluation(cfg, [task], ids, revisions or {})


def merge(suite: SuiteConfig, seeds: list[int], point_dirs: dict, run_dir: Path, run_id: str, executor: str,
          wall_s: float) -> dict:
    """The suite's run record from its points' records; their saved models moved into ``run_dir``."""
    from kdbench.pipeline import aggregate_seeds
    from kdbench.report.record import RECORD_FILE

    records = {key: json.loads((path / RECORD_FILE).read_text()) for key, path in point_dirs.items()}
    first = records[suite.tasks[0], seeds[0]]
    record = {k: first[k] for k in ("schema_version", "kdbench_version", "git_hash", "trainer_revision") if k in first}
    record.update({
        "run_id": run_id, "created": datetime.now(UTC).isoformat(timespec="seconds"), "suite": suite.name,
        "config": {**suite.model_dump(mode="json"),
                   "task_specs": {t: records[t, seeds[0]]["config"]["task_specs"][t] for t in suite.tasks}},
        "environment": {**first["environment"], "executor": executor},
        "seeds": suite.run_seeds,
    })
    for key in ("models", "models_by_task", "datasets", "kinds", "results", "pairs", "efficiency", "durations",
                "speculative", "curves"):
        record[key] = {}
    per_seed = {}
    for task in suite.tasks:
        own = records[task, seeds[0]]
        for role, info in own["models"].items():
            record["models"].setdefault(role, info)
        for key in ("models_by_task", "datasets", "kinds", "results", "pairs", "speculative", "curves"):
            if task in own.get(key, {}):
                record[key][task] = own[key][task]
        if own.get("efficiency") and not record["efficiency"]:
            record["efficiency"], record["efficiency_task"] = own["efficiency"], task
        for seed in seeds:
            rec = records[task, seed]
            record["durations"][task if seed == seeds[0] else f"{task}/seed-{seed}"] = rec["durations"][task]
            per_seed.setdefault(task, []).append((rec["results"][task], rec["pairs"][task]))
            _move_outputs(point_dirs[task, seed], run_dir, task, seed, seeds[0])
    record["durations"]["total_s"] = round(wall_s, 2)
    for key in ("speculative", "curves"):
        if not record[key]:
            del record[key]
    if len(suite.run_seeds) > 1:  # as one process writes it (eval too, over its one scoring)
        record["seed_results"] = aggregate_seeds(per_seed)
    return record


def _move_outputs(point_dir: Path, run_dir: Path, task: str, seed: int, first_seed: int) -> None:
    """A point's saved models to where one process saves them; its tracker logs (one store per point:
    two are not merged) to ``logs/points/TASK-seedN/``."""
    moves = {point_dir / "models" / task: within(run_dir, *([] if seed == first_seed else [f"seed-{seed}"]), "models", task),
             point_dir / "logs": within(run_dir, "logs", POINTS, f"{task}-seed{seed}")}
    for source, target in moves.items():
        if source.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), target)


def _write(record: dict, first_seeds: list[Path], run_dir: Path) -> None:
    """The samples of the first seeds' points, the HTML report, model cards, and the record (last: a
    staging folder with one is a whole run); the points' folders are removed before it."""
    import pandas as pd

    from kdbench.pipeline import write_outputs
    from kdbench.predictions import samples_frame
    from kdbench.report.record import RECORD_FILE, SAMPLES_FILE, write_record

    write_outputs(record, samples_frame([pd.read_parquet(p / SAMPLES_FILE) for p in first_seeds]), run_dir)
    shutil.rmtree(run_dir / POINTS)
    write_record(run_dir / RECORD_FILE, record)
