"""What a metric is, said once, where the metric is defined.

A **kind** is what a family's predictions are, seen as a table of resampling units (examples,
sentences, queries, documents): its :class:`Table` is built from a model's Predictions in the
pipeline, and the same table is rebuilt from the rows of ``samples.parquet`` by the gate, so that
every record value can be recomputed without a model. A **metric** of a kind is one function plus
its :class:`MetricSpec` (name, direction, display, the per-unit statistic its CI resamples, its
paired test, formula and reference), registered with :func:`metric` (a mean of per-unit values) or
:func:`statistic` (anything else) in the kind's module. ``kdbench metrics``, ``docs/metrics.md``,
the tasks' name checks and the gate all read this registry, so a new metric is one decorated
function in one file.

Scoring (:func:`score`) evaluates every requested metric on one resampling context of the table
(:class:`kdbench.metrics.stats.Resampled`; one set of draws per call); a paired test
(:func:`paired_test`) evaluates one metric on two tables of the same units with the same draws.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from kdbench.errors import KdbenchError
from kdbench.metrics.stats import (
    bootstrap_p_value,
    finite_ci,
    mcnemar_exact,
    paired_bootstrap,
    paired_draws,
    percentile_ci,
)
from kdbench.registry import Registry, unknown_name

MCNEMAR, BOOTSTRAP, NO_TEST = "exact McNemar", "paired bootstrap", "none"
EITHER = "exact McNemar on 0/1 values, else paired bootstrap"
# the modules whose decorators fill the registries, in listing order; any other module of
# kdbench.metrics is imported after them (a new metric module needs no edit here)
MODULES = ("kdbench.metrics.classification", "kdbench.metrics.regression", "kdbench.metrics.ner",
           "kdbench.metrics.retrieval", "kdbench.metrics.lm", "kdbench.metrics.generation",
           "kdbench.metrics.lm_eval")


class Table:
    """Per-unit data of one model (or of a teacher–student pair) on one task. A family's subclass
    holds its arrays and says how to resample them (:meth:`context`); ``columns`` are what
    ``samples.parquet`` needs beyond the Predictions' own columns to rebuild the table."""

    kind: ClassVar[str]

    @property
    def n(self) -> int:
        raise NotImplementedError

    def context(self, *, n_samples: int, seed: int, options: dict, draws: np.ndarray | None = None):
        """A resampling context (a :class:`~kdbench.metrics.stats.Resampled`) over the table's
        units; ``options`` are the run's evaluation settings (``ece_bins``...)."""
        raise NotImplementedError

    def columns(self) -> dict[str, np.ndarray]:
        return {}

    def has(self, metric: str) -> bool:
        """Whether the table holds what ``metric`` reads (tables of optional columns override this)."""
        return True

    def trivial(self) -> Table | None:
        """The same units predicted by a model that learnt nothing (the majority class, all ``O``
        tags, a constant score, no answer), or None where no such model is meaningful: what a
        teacher must beat (:mod:`kdbench.metrics.sanity`)."""
        return None


@dataclass(frozen=True)
class Kind:
    """A kind of predictions: its unit, what it reads, its table type and, for one model's
    predictions, the pair kind (teacher–student) and the metric a student is compared with its
    no-KD baseline on (``compare``; ``compare_label`` names the difference when it differs);
    ``columns``: the metrics reports show beside the task's main score."""

    name: str
    unit: str
    reads: str
    table: type[Table] | None = None
    pair: str | None = None
    compare: str | None = None
    compare_label: str | None = None
    compare_p_name: str | None = None
    compare_odds_ratio: bool = True
    parents: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # what reports show beside the main score, when the task has them
    metrics: Registry = field(default=None, compare=False)

    @property
    def units(self) -> str:
        return self.unit[:-1] + "ies" if self.unit.endswith("y") else self.unit + "s"

    def __post_init__(self):
        if self.metrics is None:
            object.__setattr__(self, "metrics", Registry(f"{self.name.replace('_pair', ' pair')} metric"))

    def find(self, name: str) -> MetricSpec | None:
        """The spec of ``name``: the kind's own names, then its parents', then its own templates."""
        found = self.metrics.find(name, templates=False)
        for parent in self.parents if found is None else ():
            spec = KINDS.get(parent).find(name)
            if spec is not None:
                return spec
        found = found or self.metrics.find(name)
        if found is None:
            return None
        spec, fields = found
        return spec.bind(name, fields) if fields else spec

    def names(self) -> list[str]:
        own = self.metrics.names()
        return own + [n for p in self.parents for n in KINDS.get(p).names() if n not in own]

    def metric(self, name: str, where: str = "") -> MetricSpec:
        spec = self.find(name)
        if spec is None:
            raise KdbenchError(unknown_name(self.metrics.what, name, self.names(), where))
        return spec

    def comparison_names(self) -> tuple[str, ...]:
        """What :func:`compare` writes under ``student|baseline`` for this kind."""
        if self.compare is None:
            return ()
        label = self.compare_label or self.compare
        if self.metric(self.compare).test in (MCNEMAR, EITHER):
            return (f"{label}_difference", "mcnemar_p_value", "mcnemar_odds_ratio")[:3 if self.compare_odds_ratio else 2]
        return f"{label}_difference", self.compare_p_name or f"{label}_difference_p_value"


KINDS: Registry[Kind] = Registry("predictions kind", MODULES, packages=("kdbench.metrics",))


def kind(name: str) -> Kind:
    return KINDS.get(name)


def register_kind(k: Kind) -> Kind:
    return KINDS.add(k.name, k)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``values(ctx)`` per-unit values whose mean it is, or ``point(ctx)`` with its
    vectorised resamples ``replicates(ctx)`` (n_samples,); ``interval(ctx, confidence)`` for a CI
    that is not a percentile of resamples; neither resamples nor interval: the CI is null.
    ``fields`` are a template name's fields (``{"k": "10"}`` of ``ndcg_at_{k}``), passed to the
    functions as keyword arguments (``template`` keeps the registered name); ``check(fields,
    task_spec)`` says what a task cannot ask for; ``resolve(fields)`` gives what a bound name changes
    (a direction known only per name)."""

    name: str
    kind: str
    higher_is_better: bool | None
    percent: bool
    per_unit: str
    formula: str
    reference: str
    test: str
    values: Callable[..., np.ndarray] | None = None
    point: Callable[..., float] | None = None
    replicates: Callable[..., np.ndarray] | None = None
    interval: Callable[..., list | None] | None = None
    check: Callable[[dict, dict], str | None] | None = None
    resolve: Callable[[dict], dict] | None = None
    fields: dict = field(default_factory=dict)
    template: str = ""

    @property
    def gated(self) -> bool:
        return self.higher_is_better is not None and self.test != NO_TEST

    @property
    def ci_method(self) -> str:
        if self.interval is not None:
            return "see formula"
        if self.values is None and self.replicates is None:
            return "none"
        return f"percentile bootstrap over {kind(self.kind).units}"

    def bind(self, name: str, fields: dict) -> MetricSpec:
        changes = self.resolve(fields) if self.resolve is not None else {}
        return replace(self, name=name, fields=fields, template=self.name, **changes)

    def value(self, ctx) -> float:
        if self.point is not None:
            return float(self.point(ctx, **self.fields))
        return float(np.mean(self.values(ctx, **self.fields)))

    def samples(self, ctx) -> np.ndarray | None:
        """The metric on each resample of ``ctx`` (None: no CI)."""
        if self.replicates is not None:
            return self.replicates(ctx, **self.fields)
        if self.values is not None:
            return ctx.mean_of(self.name, self.values(ctx, **self.fields))
        return None

    def ci(self, ctx, confidence: float) -> list[float] | None:
        if self.interval is not None:
            ci = self.interval(ctx, confidence, **self.fields)
        else:
            samples = self.samples(ctx)
            ci = None if samples is None else list(percentile_ci(samples, confidence))
        return ci if ci is not None and all(math.isfinite(x) for x in ci) else None


def _register(decorated: Callable, name: str, kind_name: str, *, higher_is_better: bool | None, percent: bool = False,
              per_unit: str, reference: str = "—", test: str, role: str, **hooks) -> Callable:
    doc = (decorated.__doc__ or "").strip().split("\n\n")[0]
    spec = MetricSpec(name=name, kind=kind_name, higher_is_better=higher_is_better, percent=percent,
                      per_unit=per_unit, formula=" ".join(doc.split()), reference=reference, test=test,
                      **{role: decorated}, **hooks)
    KINDS.registered(kind_name).metrics.add(name, spec)
    return decorated


def metric(name: str, kind: str, *, higher_is_better: bool | None, per_unit: str, percent: bool = False,
           reference: str = "—", binary: bool = False, test: str | None = None, check=None, resolve=None,
           interval=None, point=None) -> Callable:
    """Register the decorated ``values(ctx, **fields) -> (units,)``: the metric is their mean, its CI
    the percentile bootstrap of that mean over the kind's units, its paired test exact McNemar when
    the values are per-unit 0/1 outcomes (``binary``), else the paired bootstrap. The docstring's
    first paragraph is the formula."""
    test = test or (MCNEMAR if binary else BOOTSTRAP)
    return lambda f: _register(f, name, kind, higher_is_better=higher_is_better, percent=percent, per_unit=per_unit,
                               reference=reference, test=test, role="values", check=check, resolve=resolve,
                               interval=interval, point=point)


def statistic(name: str, kind: str, *, higher_is_better: bool | None, per_unit: str, percent: bool = False,
              reference: str = "—", replicates=None, interval=None, check=None) -> Callable:
    """Register the decorated ``point(ctx, **fields) -> float`` of a metric that is not a mean of
    per-unit values, with ``replicates(ctx, **fields)`` (its value on each resample of ``ctx``) or
    ``interval(ctx, confidence, **fields)``; paired test: the paired bootstrap (both runs on the
    same resamples). Without either, the CI is null and the metric is not gated."""
    test = BOOTSTRAP if (replicates is not None or interval is not None) and higher_is_better is not None else NO_TEST
    return lambda f: _register(f, name, kind, higher_is_better=higher_is_better, percent=percent, per_unit=per_unit,
                               reference=reference, test=test, role="point", replicates=replicates,
                               interval=interval, check=check)


def kinds() -> list[Kind]:
    """Every kind, in the order of :data:`MODULES` (then any other module's), whatever order the
    modules were imported in."""
    rank = {m: i for i, m in enumerate(MODULES)}
    ordered = [k for _, k in KINDS.items()]
    return sorted(ordered, key=lambda k: rank.get(k.table.__module__, len(rank)))


def all_metrics() -> list[MetricSpec]:
    """Every registered metric (templates unbound), kind by kind."""
    return [spec for k in kinds() for _, spec in k.metrics.items()]


# --------------------------------------------------------------------------------------------------
# scoring and comparing
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resampling:
    """How CIs are made: resamples, confidence, seed, and the evaluation options (``ece_bins``)."""

    n_samples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    options: dict = field(default_factory=dict)

    @classmethod
    def of(cls, eval_cfg: Any, seed: int) -> Resampling:
        cfg = eval_cfg if isinstance(eval_cfg, dict) else eval_cfg.model_dump(mode="json")
        return cls(int(cfg.get("bootstrap_samples", 1000)), float(cfg.get("confidence", 0.95)), seed, cfg)

    def context(self, table: Table, draws: np.ndarray | None = None):
        return table.context(n_samples=max(self.n_samples, 1), seed=self.seed, options=self.options, draws=draws)


def score(table: Table, names: Sequence[str], how: Resampling) -> dict[str, dict]:
    """``{name: {"value": float, "ci": [low, high] | None}}`` for each metric, all on one resampling
    context of ``table`` (the same draws); a CI is null for a fitted parameter or without resamples."""
    k = kind(table.kind)
    specs = [k.metric(name) for name in names]
    ctx = how.context(table)
    return {spec_name: {"value": spec.value(ctx), "ci": spec.ci(ctx, how.confidence) if how.n_samples > 0 else None}
            for spec_name, spec in zip(names, specs)}


@dataclass
class Paired:
    """A paired test of one metric: ``a`` against ``b`` on the same units."""

    value_a: float
    value_b: float
    delta: float  # a − b
    ci: list[float] | None  # CI of delta
    p_value: float
    test: str  # what was run, for people: "exact McNemar (b=3, c=9)", "paired bootstrap over sentences"
    mcnemar: dict | None = None


def paired_test(spec: MetricSpec, a: Table, b: Table, how: Resampling) -> Paired:
    """``spec`` on ``a`` against ``b`` (the same units in the same order): a mean of per-unit
    values gets the paired bootstrap of the per-unit differences (Koehn 2004) and, for 0/1
    outcomes, the exact McNemar test (its p-value; the CI stays the bootstrap's); any other
    statistic is evaluated on both tables with the same draws (:func:`~kdbench.metrics.stats.paired_draws`)
    and the differences give the percentile CI and :func:`~kdbench.metrics.stats.bootstrap_p_value`."""
    if a.n != b.n:
        raise ValueError(f"a paired test needs the same units: {a.n} and {b.n}")
    unit = kind(spec.kind).units
    draws = None if spec.values is not None else paired_draws(a.n, max(how.n_samples, 1), how.seed)
    ctx_a, ctx_b = how.context(a, draws), how.context(b, draws)
    va, vb = spec.value(ctx_a), spec.value(ctx_b)
    if spec.values is not None:
        ua = np.asarray(spec.values(ctx_a, **spec.fields), dtype=np.float64)
        ub = np.asarray(spec.values(ctx_b, **spec.fields), dtype=np.float64)
        boot = paired_bootstrap(ua, ub, how.n_samples, how.confidence, how.seed)
        binary = np.isin(ua, (0.0, 1.0)).all() and np.isin(ub, (0.0, 1.0)).all()
        if spec.test == MCNEMAR or (spec.test == EITHER and binary):
            mc = mcnemar_exact(ua > 0.5, ub > 0.5, how.confidence)
            return Paired(va, vb, boot["value"], boot["ci"], mc["p_value"],
                          f"exact McNemar (b={mc['b']}, c={mc['c']})", mc)
        return Paired(va, vb, boot["value"], boot["ci"], boot["p_value"], f"paired bootstrap over {unit}")
    deltas = np.asarray(spec.samples(ctx_a), dtype=np.float64) - np.asarray(spec.samples(ctx_b), dtype=np.float64)
    return Paired(va, vb, va - vb, finite_ci(deltas, how.confidence), bootstrap_p_value(deltas),
                  f"paired bootstrap over {unit}")


def compare(a: Table, b: Table, how: Resampling) -> dict[str, dict]:
    """System ``a`` against ``b`` on the kind's comparison metric, in run-record form (what KD bought
    over the no-KD baseline, and whether it is real): ``<metric>_difference`` (a − b, paired-bootstrap
    CI) and either ``mcnemar_p_value`` with ``mcnemar_odds_ratio`` (b/c with its exact CI; left out
    when not finite) or the bootstrap p-value. Empty when the kind has no comparison metric."""
    k = kind(a.kind)
    if k.compare is None or k.find(k.compare) is None or not a.has(k.compare):
        return {}
    names = k.comparison_names()
    t = paired_test(k.metric(k.compare), a, b, how)
    out = {names[0]: {"value": t.delta, "ci": t.ci}, names[1]: {"value": t.p_value, "ci": None}}
    if t.mcnemar is not None and k.compare_odds_ratio and math.isfinite(t.mcnemar["odds_ratio"]):
        ci = t.mcnemar["odds_ratio_ci"]
        out[names[2]] = {"value": t.mcnemar["odds_ratio"], "ci": ci if all(math.isfinite(x) for x in ci) else None}
    return out
