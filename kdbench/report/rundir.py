"""A run folder is built in a hidden staging folder and renamed into place when complete, so
``reports/<run-id>/`` either holds a whole run or does not exist (nothing half-written).

The process writing a run holds a lock on its staging folder for the run's whole life, so
``--resume`` of a run that is still going is refused instead of starting a second writer."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from kdbench import names
from kdbench.errors import KdbenchError
from kdbench.fsio import held, within
from kdbench.report.record import RECORD_FILE

RUN_LOCK = ".lock"  # in a staging folder: held by the process writing the run
RESUME_FILE = "resume.json"  # in a staging folder: what --resume needs to continue the run
CHECKPOINTS = "checkpoints"


def staging_dir(reports_dir: Path, run_id: str) -> Path:
    return within(reports_dir, f".{names.check(run_id, 'run id')}.partial")


def run_id_of_staging(folder: Path) -> str | None:
    """The run id of a staging folder ``.RUN_ID.partial``, or None when ``folder`` is not one."""
    name = Path(folder).name
    run_id = name[1 : -len(".partial")] if name.startswith(".") and name.endswith(".partial") else None
    return None if run_id is None or names.problem(run_id, "run id") else run_id


def resumable(staging: Path) -> bool:
    """A staging folder worth keeping: training checkpoints to continue from, or a whole record
    that only the final rename is missing."""
    return (staging / CHECKPOINTS).is_dir() or (staging / RECORD_FILE).is_file()


@contextmanager
def staged_run_dir(reports_dir: Path, run_id: str, *, resume: bool = False):
    """``resume``: continue in the existing staging folder of an interrupted run. A run that fails
    keeps its staging folder when it is :func:`resumable`, else drops it."""
    final = within(reports_dir, run_id)
    staging = staging_dir(reports_dir, run_id)
    if final.exists():
        raise KdbenchError(f"run folder {final} already exists")
    if resume and not staging.is_dir():
        raise KdbenchError(f"--resume: no interrupted run folder {staging}")
    staging.mkdir(parents=True, exist_ok=resume)
    with held(staging / RUN_LOCK, f"run {staging} is in progress in another kdbench process (it holds "
                                  f"{staging / RUN_LOCK}); resume it only once that process has stopped"):
        try:
            if final.exists():  # its writer finished just before this process took the lock
                raise KdbenchError(f"--resume: run {run_id} was finished by another process ({final})")
            yield staging
            os.replace(staging, final)
        except BaseException:
            if not resumable(staging):
                shutil.rmtree(staging, ignore_errors=True)
            raise
        for name in (RESUME_FILE, RUN_LOCK):  # staging state, not part of the run
            (final / name).unlink(missing_ok=True)
