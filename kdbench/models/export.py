"""``kdbench export``: one model a run saved, as a folder that stands on its own — weights and
tokenizer (``from_pretrained`` loads it), its model card, the run record — and, when asked, on the
Hugging Face Hub (``huggingface_hub``'s ``create_repo`` and ``upload_folder``)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from kdbench.errors import KdbenchError
from kdbench.models.card import CARD_FILE, model_card, saved_models
from kdbench.report.record import RECORD_FILE, read_record
from kdbench.roles import STUDENT


def run_folder(run: str | Path, reports_dir: str | Path = "reports") -> Path:
    """A run folder, its ``report.json``, or a run id under ``reports_dir``."""
    path = Path(run)
    if not path.exists() and (Path(reports_dir) / str(run)).is_dir():
        path = Path(reports_dir) / str(run)
    return path.parent if path.name == RECORD_FILE else path


def _chosen(record: dict, where: Path, task: str | None, role: str) -> tuple[str, str]:
    """(task, model folder in the run) of the ``role`` model to export."""
    saved = {(t, r): folder for t, r, folder in saved_models(record)}
    listing = ", ".join(f"{t}/{r}" for t, r in saved) or "none"
    if task is None:
        tasks = [t for t, r in saved if r == role]
        if len(tasks) != 1:
            raise KdbenchError(f"run {where}: {'several tasks have' if tasks else 'no task has'} a saved {role} "
                               f"(saved: {listing}){'; choose one with --task' if tasks else ''}")
        task = tasks[0]
    if (task, role) not in saved:
        raise KdbenchError(f"run {where}: no saved {role} model for task {task!r} (saved: {listing})")
    return task, saved[task, role]


def export(run: str | Path, to: str | Path, *, task: str | None = None, role: str = STUDENT,
           reports_dir: str | Path = "reports") -> Path:
    """Copy the ``role`` model of ``task`` (the run's only one when None) with a fresh card and the
    run record into ``to`` (new or empty), written aside and renamed into place."""
    where = run_folder(run, reports_dir)
    record = read_record(where)
    task, folder = _chosen(record, where, task, role)
    source, dest = where / folder, Path(to)
    if not source.is_dir():
        raise KdbenchError(f"run {where}: the {role} model of {task} is missing (no folder {source})")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise KdbenchError(f"--to {dest}: exists and is not an empty folder")
    staging = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging)
        model_card(record, task, role).save(staging / CARD_FILE)
        shutil.copyfile(where / RECORD_FILE, staging / RECORD_FILE)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Upload an exported folder to the model repo ``repo_id`` (created when missing); its URL."""
    from huggingface_hub import HfApi, is_offline_mode
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    later = f"the folder {folder} is exported; upload it later with `hf upload {repo_id} {folder}`"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise KdbenchError(f"--push-to-hub {repo_id!r}: not a repo id ({str(e).splitlines()[0]})") from None
    if is_offline_mode():
        raise KdbenchError(f"--push-to-hub {repo_id}: offline (HF_HUB_OFFLINE=1), the Hub is not reachable; {later}")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                   commit_message="kdbench export")
    except Exception as e:  # network, authentication, permissions: one line, the export stays
        first = (str(e).strip().splitlines() or [""])[0]
        raise KdbenchError(f"--push-to-hub {repo_id}: {type(e).__name__}: {first}; {later}") from None
    return getattr(commit, "repo_url", None) or f"https://huggingface.co/{repo_id}"
