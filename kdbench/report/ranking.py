"""How a leaderboard orders its rows, from the metric registry: each task's ``main_score`` with its
direction; **significance tiers** — the best model and every model not significantly different
from it (the metric's paired test over the shared examples, from the runs' samples) form tier 1,
the same again among the rest tier 2, and so on; **% of teacher** — a model's main score over its
own run's teacher's (teacher over model for a lower-is-better score), as the DistilBERT, MiniLM and
ERNIE-Tiny papers report; and **identical reruns** (same models, configuration and data) collapsed
into one row with a count."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kdbench.errors import KdbenchError
from kdbench.metrics import spec as metric_spec
from kdbench.metrics.samples import Side, options, read_side, tables
from kdbench.report import compare
from kdbench.report.summary import metric_of

TIER_ALPHA = 0.05


class Samples:
    """Each run's samples, read once and only when a tier needs them."""

    def __init__(self):
        self._sides: dict[Path, Side | None] = {}

    def side(self, run_dir: Path) -> Side | None:
        if run_dir not in self._sides:
            try:
                self._sides[run_dir] = read_side(run_dir, run_dir.name)
            except KdbenchError:
                self._sides[run_dir] = None  # no or unreadable samples: the row gets no tier
        return self._sides[run_dir]


# configuration keys that say where a run reports, not what it measures
_NOT_THE_EXPERIMENT = ("log_with",)


def rerun_key(record: dict, role: str) -> str:
    """What makes two rows the same experiment: the role, every model of the run (id and revision),
    the resolved configuration, each task's evaluation data and the hardware (a GPU rerun of a CPU
    run has latencies of its own)."""
    models = {r: (m.get("id"), m.get("revision")) for r, m in record.get("models", {}).items()}
    data = {t: d.get("sha256") for t, d in record.get("datasets", {}).items()}
    config = {k: v for k, v in (record.get("config") or {}).items() if k not in _NOT_THE_EXPERIMENT}
    return json.dumps([role, models, config, data, compare.hardware(record)], sort_keys=True, default=str)


def percent_of_teacher(value: float | None, teacher: float | None, higher_is_better: bool) -> float | None:
    if value is None or teacher is None or value == 0 or teacher == 0:
        return None
    return 100.0 * (value / teacher if higher_is_better else teacher / value)


def tiers(entries: list[dict], task: str, metric: str, samples: Samples, *, n_samples: int = 1000,
          alpha: float = TIER_ALPHA, seed: int = 0) -> dict[int, int | None]:
    """``{index into entries: tier}`` for entries ``{"run_dir", "record", "role", "value"}`` on one
    task: tier 1 is the best by ``metric`` and every entry whose paired test against it has
    p ≥ ``alpha``; then the same among the rest. An entry whose samples cannot be read gets None."""
    table: Callable = _tables(task, samples)
    ranked, out = [], {}
    for i, e in enumerate(entries):
        spec = _spec(e["record"], task, metric)
        if e["value"] is None or spec is None or table(e) is None:
            out[i] = None
        else:
            ranked.append(i)
    if not ranked:
        return out
    higher = _spec(entries[ranked[0]]["record"], task, metric).higher_is_better is not False
    ranked.sort(key=lambda i: -entries[i]["value"] if higher else entries[i]["value"])
    tier = 0
    while ranked:
        tier += 1
        best, rest = ranked[0], []
        out[best] = tier
        base = table(entries[best])
        how = metric_spec.Resampling(n_samples, 0.95, seed, options(entries[best]["record"], task))
        spec = _spec(entries[best]["record"], task, metric)
        for i in ranked[1:]:
            other = table(entries[i], base[1])
            if other is None:  # its samples do not cover the best's examples
                out[i] = None
            elif metric_spec.paired_test(spec, other[0], base[0], how).p_value >= alpha:
                out[i] = tier
            else:
                rest.append(i)
        ranked = rest
    return out


def _spec(record: dict, task: str, metric: str):
    spec = metric_of(record, task, metric)
    return spec if spec is not None and spec.gated else None


def _tables(task: str, samples: Samples):
    cache: dict = {}

    def table(entry: dict, ids: list[str] | None = None):
        """(table, example ids) of an entry's model on ``task``, in ``ids`` order; None without samples."""
        key = (entry["run_dir"], entry["role"], tuple(ids or ()))
        if key not in cache:
            side = samples.side(Path(entry["run_dir"]))
            try:
                rows = side.rows(task, entry["role"], ids) if side is not None else None
                cache[key] = None if rows is None else (
                    tables(side, task, entry["role"], side.kind(task), ids), list(rows.index))
            except KdbenchError:
                cache[key] = None
        return cache[key]

    return table
