"""Tasks registered by name, described in YAML. Built-ins live in ``kdbench/tasks/builtin``;
``include_paths`` add folders whose tasks override built-ins of the same name (as lm-eval's
``--include_path``). A file's ``family`` picks the Task class that validates and runs it."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from kdbench.errors import KdbenchError
from kdbench.registry import FAMILIES
from kdbench.tasks.base import Task, TaskSpecBase
from kdbench.yamlio import key_error, read_yaml, validate

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
ALLOW_CODE_ENV = "KDBENCH_ALLOW_CODE"

def family_class(family: str) -> type[Task]:
    return FAMILIES.get(family)


def is_suite(raw: dict) -> bool:
    """A suite file (``tasks`` and no ``family``) may sit in a task folder; it is not a task."""
    return "family" not in raw and "tasks" in raw


def load_spec(path: Path, raw: dict | None = None) -> TaskSpecBase:
    raw = read_yaml(path) if raw is None else raw
    family = raw.get("family")
    if not isinstance(family, str) or family not in FAMILIES:
        raise key_error(path, ("family",), FAMILIES.unknown(str(family)))
    cls = family_class(family)
    spec = validate(cls.Spec, raw, path)
    problem = cls.check_spec(spec)
    if problem is not None:
        loc, message = problem
        raise key_error(path, loc, message)
    return spec


def _specs(include_paths: Sequence[str | Path] = ()) -> dict[str, TaskSpecBase]:
    specs: dict[str, TaskSpecBase] = {}
    for folder in [BUILTIN_DIR, *map(Path, include_paths)]:
        if not folder.is_dir():
            raise KdbenchError(f"include path {folder}: not a folder")
        for path in sorted(folder.glob("*.yaml")):
            raw = read_yaml(path)
            if not is_suite(raw):
                spec = load_spec(path, raw)
                specs[spec.name] = spec
    return specs


def list_tasks(include_paths: Sequence[str | Path] = ()) -> list[TaskSpecBase]:
    return [spec for _, spec in sorted(_specs(include_paths).items())]


def code_allowed(allow_code: bool = False) -> bool:
    """Whether task files may run Python: ``--allow-code`` (``allow_code``) or ``KDBENCH_ALLOW_CODE=1``,
    the opt-in ``trust_remote_code`` is for models."""
    return allow_code or os.environ.get(ALLOW_CODE_ENV) == "1"


def get_task(name: str, include_paths: Sequence[str | Path] = (), *, allow_code: bool = False) -> Task:
    specs = _specs(include_paths)
    if name not in specs:
        raise KdbenchError(f"unknown task '{name}' (known: {', '.join(sorted(specs))}; "
                           "a task file of your own: --include-path FOLDER)")
    spec = specs[name]
    task = family_class(spec.family)(spec)
    code = task.runs_code()
    if code and not code_allowed(allow_code):
        raise KdbenchError(f"task {name}: {code} would run Python from a task folder; task files are data unless "
                           f"you opt in: --allow-code (or {ALLOW_CODE_ENV}=1)")
    return task
