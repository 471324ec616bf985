"""A run's metrics from its ``samples.parquet``, never from a model: each task's per-unit tables
rebuilt by its predictions kind (:mod:`kdbench.metrics.spec`), for the regression gate, the
leaderboard's significance tiers and the check that a record's values agree with its samples."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kdbench.errors import KdbenchError
from kdbench.metrics import spec as metric_spec
from kdbench.registry import FAMILIES

SAMPLES_MATCH_TOL = 1e-5


def record_kind(record: dict, task: str) -> str | None:
    """The predictions kind of ``task`` in ``record`` (None for an old lm-eval record: its samples say)."""
    if task in record.get("kinds", {}):
        return record["kinds"][task]
    # records that predate the "kinds" key: the predictions kind the task's family is registered with
    family = record["config"].get("task_specs", {}).get(task, {}).get("family")
    return FAMILIES.meta(family).get("kind") if family in FAMILIES else None


@dataclass
class Side:
    """One run: its record, its samples and where they came from."""

    label: str  # "baseline", "candidate", or a run id
    path: Path
    record: dict
    samples: object  # pandas DataFrame

    def rows(self, task: str, role: str, ids: Sequence[str] | None = None, required: bool = True):
        """The samples rows of one model (or pair key) on one task, in ``ids`` order."""
        part = self.samples[(self.samples["task"] == task) & (self.samples["role"] == role)]
        if part.empty:
            if not required:
                return None
            raise KdbenchError(f"{self.label} {self.path}: missing samples for {task}/{role}")
        if part["example_id"].duplicated().any():
            dup = part.loc[part["example_id"].duplicated(), "example_id"].iloc[0]
            raise KdbenchError(f"{self.label} {self.path}: example {dup!r} appears twice in the samples of {task}/{role}")
        part = part.set_index("example_id", drop=False)
        if ids is not None:
            if set(ids) != set(part.index):
                raise KdbenchError(f"{task}/{role}: the baseline's and the candidate's samples cover different "
                                   f"examples ({len(ids)} vs {len(part)})")
            part = part.loc[list(ids)]
        return part

    def kind(self, task: str) -> str:
        found = record_kind(self.record, task)
        if found is not None:
            return found
        family = self.record["config"].get("task_specs", {}).get(task, {}).get("family")
        if family == "lm_eval":  # multiple choice keeps class probabilities
            rows = self.rows(task, next(iter(self.record["results"][task])))
            return "lm_eval_choice" if len(rows["probs"].iloc[0]) else "lm_eval_generation"
        raise KdbenchError(f"{self.label} {self.path}: task {task} has no predictions kind in the record "
                           f"(family {family!r})")


def task_spec(record: dict, task: str) -> dict:
    return record["config"].get("task_specs", {}).get(task, {})


def options(record: dict, task: str) -> dict:
    """The evaluation settings of ``task`` in ``record`` (a mixed suite's per-task ones included)."""
    cfg = record["config"]
    return {**cfg.get("eval", {}), **cfg.get("per_task", {}).get(task, {}).get("eval", {})}


def tables(side: Side, task: str, model: str, kind_name: str, ids: Sequence[str] | None = None):
    """The per-unit table of one model (``role``) or pair (``student|reference``) of ``side`` on
    ``task``, rebuilt from its samples in ``ids`` order (the baseline's)."""
    spec = task_spec(side.record, task)
    where = f"{side.label} {side.path}: {task}/{model}"
    k = metric_spec.kind(kind_name)
    if "|" not in model:
        return k.table.from_samples(side.rows(task, model, ids), spec, where)
    student, reference = model.split("|")
    pk = metric_spec.kind(k.pair)
    return pk.table.from_samples(side.rows(task, student, ids), side.rows(task, reference, ids),
                                 side.rows(task, model, ids, required=False), spec, where)


def read_side(path: Path, label: str) -> Side:
    """A run folder, ``report.json`` or baseline ``NAME.json`` with its samples."""
    from kdbench.report.record import RECORD_FILE, read_record, read_samples, samples_path

    path = Path(path)
    record_path = path / RECORD_FILE if path.is_dir() else path
    try:
        record = read_record(record_path)
    except KdbenchError as e:
        raise KdbenchError(f"{label}: {e}") from None
    return Side(label, record_path, record, read_samples(samples_path(record_path), where=f"{label} {record_path}"))


def recompute(side: Side) -> list[str]:
    """Every metric of ``side``'s record recomputed from its samples, as one line per value that
    does not match (empty: the samples back the record); raises on samples that cannot be read."""
    out = []
    for task, by_role in side.record["results"].items():
        kind_name = side.kind(task)
        k = metric_spec.kind(kind_name)
        how = metric_spec.Resampling(0, 0.95, 0, options(side.record, task))
        blocks = list(by_role.items()) + [(key, ms) for key, ms in side.record["pairs"].get(task, {}).items()
                                          if not set(ms) & set(k.comparison_names())]
        for model, metrics in blocks:
            kind_of = k if "|" not in model else metric_spec.kind(k.pair)
            table = tables(side, task, model, kind_name)
            ctx = how.context(table)
            for name, m in metrics.items():
                spec = kind_of.find(name)
                if spec is None or not table.has(name):
                    continue
                got = spec.value(ctx)
                if not matches(got, m["value"]):
                    out.append(f"{task}/{model}/{name} is {m['value']:.6g} in the record, {got:.6g} from the samples")
    return out


def matches(got: float, want: float) -> bool:
    return math.isfinite(got) and abs(got - want) <= SAMPLES_MATCH_TOL * max(1.0, abs(want))


