"""One model setting scored over several seeds at once, from the seeds' ``samples.parquet``: the
per-seed tables of one role on one task, the **pooled table** of every (seed, example) unit (what a
paired test of two settings run with the same seeds on the same examples compares), and the
**seed-pooled bootstrap**: seeds resampled, then the examples within them (Davison & Hinkley 1997,
§3.8, resampling data with two sources of variation), so the interval of a setting whose seeds
happen to score the same does not collapse to a point. Every seed is scored on the same examples
(a crossed design, not nested), so one resample of the examples is shared by all the seeds of a
replicate: the evaluation slice's error does not shrink with more seeds.

Every resample goes through the metric's own resampling context
(:class:`kdbench.metrics.stats.Resampled`), so any registered metric of any kind gets the same
treatment: a mean of per-unit values and a statistic (F1, perplexity, nDCG...) alike.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdbench.metrics import spec as metric_spec
from kdbench.metrics.samples import Side, tables, task_spec
from kdbench.metrics.stats import finite_ci, paired_draws

SEED_STREAM = 7919  # the seed-level draws' own random stream, apart from every example-level one


def seed_tables(sides: Sequence[Side], task: str, role: str, kind_name: str, ids: Sequence[str]) -> list:
    """The table of ``role`` on ``task`` in each seed's run, in ``ids`` order (the same examples)."""
    return [tables(side, task, role, kind_name, ids) for side in sides]


def pooled_table(sides: Sequence[Side], task: str, role: str, kind_name: str, ids: Sequence[str]):
    """One table of every (seed, example) unit of ``role``: the seeds' samples rows one after the
    other, each seed's in ``ids`` order, so two settings pooled from the same seeds are paired unit
    by unit."""
    import pandas as pd

    rows = pd.concat([side.rows(task, role, ids) for side in sides], ignore_index=True)
    where = f"{sides[0].label} {sides[0].path}: {task}/{role} pooled over {len(sides)} seeds"
    return metric_spec.kind(kind_name).table.from_samples(rows, task_spec(sides[0].record, task), where)


def seed_pooled_samples(spec: metric_spec.MetricSpec, per_seed: Sequence, how: metric_spec.Resampling) -> np.ndarray | None:
    """``how.n_samples`` resamples of the mean over seeds of ``spec``: each draws the S seeds with
    replacement and one resample of the examples, the same draws in every seed (the seeds are
    scored on the same examples, so the error of the evaluation slice is shared, not averaged away
    by more seeds), and averages ``spec`` over the drawn seeds. None when ``spec`` has no resamples."""
    s, b = len(per_seed), max(how.n_samples, 1)
    draws = paired_draws(per_seed[0].n, b, how.seed)
    reps = []
    for table in per_seed:
        r = spec.samples(how.context(table, draws))
        if r is None:
            return None
        reps.append(np.asarray(r, dtype=np.float64))
    reps = np.stack(reps)  # (seed, replicate)
    pick = np.random.default_rng([how.seed, SEED_STREAM]).integers(0, s, size=(b, s))
    return reps[pick, np.arange(b)[:, None]].mean(axis=1)


def seed_pooled_ci(spec: metric_spec.MetricSpec, per_seed: Sequence, how: metric_spec.Resampling) -> list[float] | None:
    """The percentile interval of :func:`seed_pooled_samples` (None without resamples)."""
    samples = seed_pooled_samples(spec, per_seed, how)
    if samples is None:
        return None
    return finite_ci(samples, how.confidence)
