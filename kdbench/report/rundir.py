"""A run folder is built in a hidden staging folder and renamed into place when complete, so
``reports/<run-id>/`` either holds a whole run or does not exist (nothing half-written)."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from kdbench.errors import KdbenchError


@contextmanager
def staged_run_dir(reports_dir: Path, run_id: str):
    final = Path(reports_dir) / run_id
    if final.exists():
        raise KdbenchError(f"run folder {final} already exists")
    staging = Path(reports_dir) / f".{run_id}.partial"
    staging.mkdir(parents=True, exist_ok=False)
    try:
        yield staging
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
