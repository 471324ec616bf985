"""``train-and-eval``: per task, the recipe of its head makes or reuses the teacher, distils a
student and trains the no-KD baseline (``kdbench.distill.recipes``); then the run is scored and
written as any other (:func:`kdbench.pipeline.score_and_write`)."""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from kdbench import devices, progress, tracking
from kdbench.backends import engines, speculative
from kdbench.config import SuiteConfig
from kdbench.distill import curves, preflight
from kdbench.distill.recipes import run_recipe
from kdbench.distill.trainer import checkpoint_scope, effective_batch_size
from kdbench.errors import KdbenchError
from kdbench.fsio import within, write_atomic
from kdbench.pipeline import (
    CurveEvaluator,
    RunResult,
    TaskRun,
    build_leaderboard,
    new_run_id,
    process_outputs,
    score_and_write,
    written_by_main,
)
from kdbench.report import leaderboard
from kdbench.report.record import RECORD_FILE, read_record
from kdbench.report.rundir import CHECKPOINTS, RESUME_FILE, run_id_of_staging, staged_run_dir, staging_dir
from kdbench.roles import TEACHER, teacher_roles
from kdbench.tasks import get_task


def train_and_eval(
    suite: SuiteConfig | None,
    *,
    reports_dir: str | Path = "reports",
    leaderboard_dir: str | Path | None = "leaderboards",
    include_paths: Sequence[str | Path] = (),
    resume: str | Path | None = None,
    allow_code: bool = False,
) -> RunResult:
    """Distil a student per task with the suite's recipe, train the no-KD baseline, score all; with
    several seeds, the whole recipe once per seed (later seeds' models under ``seed-N/``).

    Trainings checkpoint under ``<run folder>/checkpoints/TASK/`` (``TrainConfig.checkpoint_every``).
    ``resume``: the staging folder ``REPORTS/.RUN_ID.partial`` of an interrupted run; the run goes on
    with its own suite, include paths and leaderboard folder (``suite`` must be None and
    ``leaderboard_dir`` is not used): finished trainings load their final checkpoint, an unfinished
    one continues from its latest, and the result is the uninterrupted run's.
    ``allow_code``: task files may run Python (lm-eval's ``!function``; also ``KDBENCH_ALLOW_CODE=1``)."""
    run_id = None
    if resume is not None:
        suite, include_paths, run_id, reports_dir, leaderboard_dir = _resumed(Path(resume))
    device = devices.resolve(suite.device)  # a device that cannot be had fails before any work
    tracking.check(suite.log_with)  # so does a tracker whose package is missing
    # under `accelerate launch` every process runs the recipes (training is data-parallel) and
    # checkpoints into the main process's run folder; only the main process writes the run
    procs = devices.process_state(device)  # gloo across launched CPU processes, NCCL across GPUs
    if resume is not None and (Path(resume) / RECORD_FILE).is_file():  # killed after the record was written
        return _complete(Path(resume), leaderboard_dir, procs)
    run_id = _shared(run_id or new_run_id(suite.name), procs)
    checkpoints = staging_dir(Path(reports_dir), run_id)
    suite, reports_dir, leaderboard_dir, scratch = process_outputs(procs, suite, reports_dir, leaderboard_dir)
    # fail on a bad name before any work...
    tasks = [get_task(name, include_paths, allow_code=allow_code) for name in suite.tasks]
    engines.check(suite.eval.backend, tasks, device=device, processes=procs.num_processes,
                  tensor_parallel_size=suite.eval.tensor_parallel_size)
    preflight.check_training(suite, tasks)  # ... and on a value the models or the data cannot take
    speculative.check_setup(suite, tasks, device)
    if leaderboard_dir is not None:
        leaderboard.check_output(Path(leaderboard_dir))
    first, *others = suite.run_seeds

    def runs(run_dir: Path):
        if not (run_dir / RESUME_FILE).exists():
            write_atomic(run_dir / RESUME_FILE, json.dumps({
                "suite": suite.model_dump(mode="json"), "include_paths": [str(Path(p).resolve()) for p in include_paths],
                "leaderboard_dir": None if leaderboard_dir is None else str(Path(leaderboard_dir).resolve())}))
            if procs.is_main_process:
                progress.info(f"run folder {run_dir} (if interrupted: kdbench train-and-eval --resume {run_dir})")
        for task in tasks:
            for seed in (first, *others):
                task_suite = suite.for_task(task.name).model_copy(update={"seed": seed})
                folder = run_dir if seed == first else within(run_dir, f"seed-{seed}")
                ckpt = checkpoints if seed == first else within(checkpoints, f"seed-{seed}")
                evaluator = CurveEvaluator(task, task_suite) if task_suite.eval.during_training else None
                with checkpoint_scope(within(ckpt, CHECKPOINTS, task.name)), curves.scope(evaluator), \
                        tracking.scope(suite.log_with, within(ckpt, "logs"), run_id):
                    trained = run_recipe(task, task_suite, folder)
                _record_training(trained.info, task_suite)
                yield TaskRun(task, trained.models, trained.info, trained.dirs, trained.train_dataset,
                              trained.durations, None if seed == first else seed, trained.ensemble,
                              evaluator.record(trained.curves) if evaluator is not None and trained.curves else None)
        procs.wait_for_everyone()

    def finish(run_dir: Path) -> None:
        if procs.is_main_process:
            _drop_checkpoints(run_dir)

    return written_by_main(scratch, lambda: score_and_write(
        suite, tasks, runs, reports_dir, leaderboard_dir, device, procs.num_processes, run_id=run_id,
        resume=resume is not None and scratch is None, finish=finish, trained=True))


def _drop_checkpoints(run_dir: Path) -> None:
    """The run's record is written: its checkpoints (weights and optimiser states) are not part of it."""
    for folder in [run_dir, *run_dir.glob("seed-*")]:
        shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)


def _complete(staging: Path, leaderboard_dir, procs) -> RunResult:
    """Finish a run killed after its record was written: drop its checkpoints, rename it into place."""
    if not procs.is_main_process:
        return RunResult(staging, {}, written=False)
    reports_dir, run_id = staging.parent, run_id_of_staging(staging)
    with staged_run_dir(reports_dir, run_id, resume=True) as run_dir:
        record = read_record(run_dir / RECORD_FILE)
        _drop_checkpoints(run_dir)
    return RunResult(within(reports_dir, run_id), record, build_leaderboard(reports_dir, leaderboard_dir))


def _shared(run_id: str, procs) -> str:
    """The main process's run id on every process."""
    if procs.num_processes == 1:
        return run_id
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([run_id], from_process=0)[0]


def _resumed(folder: Path) -> tuple[SuiteConfig, list[str], str, Path, str | None]:
    """(suite, include paths, run id, reports folder, leaderboard folder) of the interrupted run in ``folder``."""
    run_id = run_id_of_staging(folder)
    saved = folder / RESUME_FILE
    if run_id is None or not saved.is_file():
        raise KdbenchError(f"--resume {folder}: not an interrupted run folder (REPORTS/.RUN_ID.partial with {RESUME_FILE})")
    try:
        data = json.loads(saved.read_text())
        suite = SuiteConfig.model_validate(data["suite"])
        include_paths, board = [str(p) for p in data["include_paths"]], data.get("leaderboard_dir", "leaderboards")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        # ValueError: not JSON, or a suite that does not validate (pydantic's ValidationError)
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise KdbenchError(f"--resume {folder}: {saved} cannot be used ({why}); the run cannot be resumed") from None
    return suite, include_paths, run_id, folder.parent, board


def _record_training(info: dict, suite: SuiteConfig) -> None:
    """Each trained role's batch arithmetic in its record entry: the effective batch size is what
    makes runs with different accumulation or process counts comparable."""
    teachers = {TEACHER: suite.teacher, **dict(zip(teacher_roles(len(suite.teachers or [])), suite.teachers or []))}
    for role, entry in info.items():
        # a teacher reused from the cache was trained by an earlier run: its entry says which
        fresh = entry.get("finetuned") and not entry.get("reused_from_cache")
        cfg = suite.distill if role not in teachers else (teachers[role].finetune if fresh else None)
        if cfg is None or (role not in teachers and entry.get("method") not in ("kd", "labels_only")):
            continue
        entry["training"] = {"batch_size": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps,
                             "effective_batch_size": effective_batch_size(cfg)}


