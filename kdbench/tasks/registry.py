"""Tasks registered by name, described in YAML. Built-ins live in ``kdbench/tasks/builtin``;
``include_paths`` add folders whose tasks override built-ins of the same name (as lm-eval's
``--include_path``)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kdbench.errors import KdbenchError
from kdbench.metrics.registry import PAIR_METRICS, classifier_metrics
from kdbench.tasks.classification import ClassificationTask
from kdbench.tasks.spec import TaskSpec, load_task_spec

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
FAMILIES = {"glue": ClassificationTask, "classification": ClassificationTask}


def _specs(include_paths: Sequence[str | Path] = ()) -> dict[str, tuple[TaskSpec, Path]]:
    specs: dict[str, tuple[TaskSpec, Path]] = {}
    for folder in [BUILTIN_DIR, *map(Path, include_paths)]:
        if not folder.is_dir():
            raise KdbenchError(f"include path {folder}: not a folder")
        for path in sorted(folder.glob("*.yaml")):
            spec = load_task_spec(path)
            _check(spec, path)
            specs[spec.name] = (spec, path)
    return specs


def _check(spec: TaskSpec, path: Path) -> None:
    if spec.family not in FAMILIES:
        raise KdbenchError(f"{path}: key 'family': unknown family '{spec.family}' (known: {', '.join(FAMILIES)})")
    known = classifier_metrics(15)
    for name in spec.metrics:
        if name not in known:
            raise KdbenchError(f"{path}: key 'metrics': unknown metric '{name}'")
    for name in spec.pair_metrics:
        if name not in PAIR_METRICS:
            raise KdbenchError(f"{path}: key 'pair_metrics': unknown metric '{name}'")


def list_tasks(include_paths: Sequence[str | Path] = ()) -> list[TaskSpec]:
    return [spec for spec, _ in sorted(_specs(include_paths).values(), key=lambda sp: sp[0].name)]


def get_task(name: str, include_paths: Sequence[str | Path] = ()) -> ClassificationTask:
    specs = _specs(include_paths)
    if name not in specs:
        raise KdbenchError(f"unknown task '{name}' (known: {', '.join(sorted(specs))})")
    spec = specs[name][0]
    return FAMILIES[spec.family](spec)
