"""Experiment trackers: TensorBoard, Weights & Biases and MLflow through accelerate's trackers.

A run names them (``--log-with``, suite key ``log_with``); the pipeline opens a :func:`scope` on
the run folder and every training inside it logs its curves per optimiser step — the loss, its KD
and label terms (and each feature term), the learning rate, TAID's t — as one tracker run named
after the training (``train-student-on-sst2``), and the run's final evaluation results as a run
named ``evaluation``. Where each writes, inside the run folder:

* TensorBoard: event files under ``logs/tensorboard/<training>/``;
* W&B: ``logs/wandb/`` (project ``kdbench`` or ``WANDB_PROJECT``, the run id as the group;
  ``WANDB_MODE=offline`` keeps it on disk, ``wandb sync`` uploads it later);
* MLflow: a local store, ``logs/mlflow.db`` (SQLite: MLflow's file store is retired), artifacts in
  ``logs/mlruns/`` (experiment ``kdbench`` or ``MLFLOW_EXPERIMENT_NAME``), unless
  ``MLFLOW_TRACKING_URI`` names another store.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kdbench.errors import KdbenchError

# tracker -> (the module it needs, the kdbench extra that installs it)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}
PROJECT = "kdbench"


def check(names) -> None:
    """Fail before any work when a tracker's package is missing, naming the extra that installs it."""
    for name in names:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise KdbenchError(f"--log-with {name}: {module} is not installed (pip install 'kdbench[{extra}]')")


@dataclass(frozen=True)
class _Scope:
    names: tuple[str, ...]
    logs: Path  # the run's logs folder
    run_id: str


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("kdbench_tracking_scope", default=None)


@contextlib.contextmanager
def scope(names, logs: str | Path, run_id: str):
    """Every training inside logs to the trackers ``names`` under ``logs`` (nothing when empty)."""
    token = _SCOPE.set(_Scope(tuple(names), Path(logs), run_id) if names else None)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def slug(text: str) -> str:
    """A training's name as a folder name (checkpoints, tracker runs): ``train-student-on-sst2``."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.") or "train"


def _flat(config: dict, prefix: str = "") -> dict:
    """Hyperparameters as trackers take them: scalars and strings under dotted keys."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) or value is None \
                else json.dumps(value)
    return out


@contextlib.contextmanager
def _mlflow_store(logs: Path):
    """MLflow's store: ``MLFLOW_TRACKING_URI`` when set, else the run's own ``logs/mlflow.db``."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        yield
        return
    import mlflow

    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    logs.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{(logs / 'mlflow.db').resolve()}")
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def _tracker(name: str, run: str, s: _Scope):
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    if name == "tensorboard":
        return TensorBoardTracker(run, s.logs / "tensorboard")
    if name == "wandb":
        (s.logs / "wandb").mkdir(parents=True, exist_ok=True)
        return WandBTracker(os.environ.get("WANDB_PROJECT", PROJECT), name=run, group=s.run_id,
                            dir=str(s.logs / "wandb"))
    return MLflowTracker(os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT), (s.logs / "mlruns").resolve().as_uri(),
                         run_name=run, tags={"kdbench_run_id": s.run_id})


class Curves:
    """The trackers of one training (or of the evaluation), opened on the main process; MLflow's
    store is this run's from the start to :meth:`finish`."""

    def __init__(self, run: str, config: dict, s: _Scope):
        self.trackers, self._store = [], contextlib.ExitStack()
        if "mlflow" in s.names:
            self._store.enter_context(_mlflow_store(s.logs))
        for name in s.names:
            try:
                tracker = _tracker(name, run, s)
                tracker.start()
                tracker.store_init_configuration(_flat(config))
            except Exception as e:  # a tracker that cannot start (W&B not logged in...) stops the run, in one line
                self._store.close()
                hint = " (offline: WANDB_MODE=offline)" if name == "wandb" else ""
                raise KdbenchError(f"--log-with {name}: cannot start{hint}: {type(e).__name__}: "
                                   f"{(str(e).strip().splitlines() or [''])[0]}") from None
            self.trackers.append(tracker)

    def log(self, values: dict, step: int) -> None:
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def finish(self) -> None:
        try:
            for tracker in self.trackers:
                tracker.finish()
        finally:
            self._store.close()


def open_curves(desc: str, config: dict) -> Curves | None:
    """The trackers of a training called ``desc`` in the current scope, or None (no scope, no trackers)."""
    s = _SCOPE.get()
    return None if s is None else Curves(slug(desc), config, s)


def log_results(record: dict) -> None:
    """The run's evaluation results, ``TASK/ROLE/METRIC`` (and pairs), as the tracker run ``evaluation``."""
    curves = open_curves("evaluation", {"suite": record.get("suite"), "run_id": record.get("run_id")})
    if curves is None:
        return
    values = {f"{task}/{role}/{metric}": v["value"] for task, roles in record.get("results", {}).items()
              for role, metrics in roles.items() for metric, v in metrics.items()}
    values.update({f"{task}/{pair}/{metric}": v["value"] for task, pairs in record.get("pairs", {}).items()
                   for pair, metrics in pairs.items() for metric, v in metrics.items()})
    curves.log(values, step=0)
    curves.finish()
