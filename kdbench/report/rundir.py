"""A run folder is built in a hidden staging folder and renamed into place when complete, so
``reports/<run-id>/`` either holds a whole run or does not exist (nothing half-written)."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from kdbench.errors import KdbenchError


def staging_dir(reports_dir: Path, run_id: str) -> Path:
    return Path(reports_dir) / f".{run_id}.partial"


def run_id_of_staging(folder: Path) -> str | None:
    """The run id of a staging folder ``.RUN_ID.partial``, or None when ``folder`` is not one."""
    name = Path(folder).name
    return name[1 : -len(".partial")] if name.startswith(".") and name.endswith(".partial") else None


@contextmanager
def staged_run_dir(reports_dir: Path, run_id: str, *, resume: bool = False):
    """``resume``: continue in the existing staging folder of an interrupted run. A run that fails
    keeps its staging folder when it holds training checkpoints (to be resumed), else drops it."""
    final = Path(reports_dir) / run_id
    if final.exists():
        raise KdbenchError(f"run folder {final} already exists")
    staging = staging_dir(reports_dir, run_id)
    if resume and not staging.is_dir():
        raise KdbenchError(f"--resume: no interrupted run folder {staging}")
    staging.mkdir(parents=True, exist_ok=resume)
    try:
        yield staging
        os.replace(staging, final)
    except BaseException:
        if not (staging / "checkpoints").is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        raise
