"""Comparability: two runs are comparable on a task only when the task's configuration and the
hash of its evaluation data match. Every consumer (leaderboard, gate, :func:`load_runs`) uses this
module and says so when runs are not comparable.

*Task configuration* is what defines the evaluation, not the model: the task spec of the run record
(``config.task_specs[TASK]``: dataset id, config, pinned revision and evaluation split (not where a
local dataset's files lie: its content hash says what it is), column map, label names,
family) plus the evaluation settings that change the reported numbers (``eval.ece_bins``,
``eval.confidence``, ``max_length``). The metric lists and the description are left out (adding a
metric does not change the others), and so are the GLUE-average weights, the headline (`main_score`) and unset optional keys,
and everything about training: runs with different
training budgets, students or losses are exactly what a leaderboard compares.
*Data hash* is ``datasets[TASK].sha256``, the content hash of the evaluation rows.
*Efficiency figures* (latency, throughput, memory) compare only between runs on the same hardware
(:func:`efficiency_comparable`): a CPU run and a GPU run of the same models are comparable in
quality, never in latency.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

from kdbench.devices import CPU, CUDA

_SPEC_DROPPED = ("description", "metrics", "pair_metrics", "glue_score", "main_score")
_EVAL_KEYS = ("ece_bins", "confidence")
_DATASET_DROPPED = ("train_split", "path", "data_files")


def task_config(record: dict, task: str) -> dict:
    """The part of a record's configuration that decides comparability on ``task``."""
    cfg = record.get("config", {})
    spec = cfg.get("task_specs", {}).get(task)
    if spec is None:  # records without task specs: the dataset reference is all there is
        d = record.get("datasets", {}).get(task, {})
        spec = {"name": task, "dataset": {k: d.get(k) for k in ("id", "config", "split")}}
    else:
        # unset optional keys are left out, so a key added to the spec schema later (null by
        # default) keeps older records comparable
        spec = {k: v for k, v in spec.items() if k not in _SPEC_DROPPED and v is not None}
        # your own data is identified by its content hash, wherever its files lie
        spec["dataset"] = {k: v for k, v in spec.get("dataset", {}).items()
                           if k not in _DATASET_DROPPED and v is not None}
    override = cfg.get("per_task", {}).get(task, {})  # a mixed suite's settings for this task
    ev = {**cfg.get("eval", {}), **override.get("eval", {})}
    max_length = override.get("max_length", cfg.get("max_length"))
    return {"task": spec, "eval": {k: ev.get(k) for k in _EVAL_KEYS}, "max_length": max_length}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Key:
    """What must match for two runs to be comparable on one task."""

    config_hash: str  # sha256 of the canonical JSON of :func:`task_config`
    data_sha256: str | None  # the evaluation data's content hash
    rows: int | None

    def short(self) -> str:
        return f"config {self.config_hash[:8]}, data {(self.data_sha256 or 'none')[:8]}"


def key(record: dict, task: str) -> Key:
    d = record.get("datasets", {}).get(task, {})
    return Key(_digest(task_config(record, task)), d.get("sha256"), d.get("rows"))


def _first_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if found:
                return found
        return None
    if a != b:
        return f"{path or '(root)'} ({json.dumps(a)} vs {json.dumps(b)})"
    return None


def reason(a: dict, b: dict, task: str, names: tuple[str, str] = ("baseline", "candidate")) -> str | None:
    """None when runs ``a`` and ``b`` are comparable on ``task``; otherwise one line saying why not."""
    da, db = a.get("datasets", {}).get(task), b.get("datasets", {}).get(task)
    if da is None or db is None:
        missing = names[0] if da is None else names[1]
        return f"{task}: the {missing} run has no dataset entry for this task"
    if da.get("sha256") != db.get("sha256"):
        return (f"{task}: evaluation data differ (data-hash mismatch: {names[0]} sha256 {str(da.get('sha256'))[:12]}… "
                f"over {da.get('rows')} rows, {names[1]} {str(db.get('sha256'))[:12]}… over {db.get('rows')} rows)")
    diff = _first_difference(task_config(a, task), task_config(b, task))
    if diff:
        return f"{task}: task configuration differs at {diff}"
    return None


def reference_keys(records: list[dict]) -> dict[str, Key]:
    """Per task, the key most runs share (ties: the newest run's) — what a leaderboard ranks on.
    ``records`` oldest first."""
    counts: dict[str, Counter] = {}
    newest: dict[str, dict[Key, int]] = {}
    for i, record in enumerate(records):
        for task in record.get("results", {}):
            k = key(record, task)
            counts.setdefault(task, Counter())[k] += 1
            newest.setdefault(task, {})[k] = i
    return {task: max(c, key=lambda k: (c[k], newest[task][k])) for task, c in counts.items()}


def reference_records(records: list[dict]) -> dict[str, dict]:
    """Per task, the newest record whose key is the reference key (to explain a mismatch against)."""
    refs = reference_keys(records)
    out = {}
    for record in records:
        for task in record.get("results", {}):
            if key(record, task) == refs[task]:
                out[task] = record
    return out


# efficiency ---------------------------------------------------------------------------------------
# Quality metrics compare across devices (the device is not part of :func:`task_config`); latency,
# throughput and memory figures only between runs measured on the same hardware class.
def hardware(record: dict) -> str:
    """Where a record's efficiency figures were measured: ``cpu`` (records from before the device
    fields are CPU runs), or ``cuda: GPU NAME``."""
    env = record.get("environment", {})
    if env.get("device_type", str(env.get("device", CPU)).split(":")[0]) == CUDA:
        return f"{CUDA}: {env.get('gpu_name') or 'unknown GPU'}"
    return CPU


def efficiency_comparable(a: dict, b: dict) -> bool:
    """Whether two records' efficiency figures may be compared: never a CPU run's with a GPU run's,
    nor two different GPUs'."""
    return hardware(a) == hardware(b)


def reference_hardware(records: list[dict]) -> str | None:
    """The hardware most of ``records`` (oldest first) ran on, ties to the newest's: the one a
    leaderboard compares latency on."""
    counts = Counter(hardware(r) for r in records)
    newest = {hardware(r): i for i, r in enumerate(records)}
    return max(counts, key=lambda h: (counts[h], newest[h])) if counts else None
