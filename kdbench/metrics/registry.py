"""Metric names (as they appear in the run record) mapped to functions, with bootstrap CIs.

Every metric has a point ``statistic`` computed exactly on all examples, and a vectorised
``replicates`` function that returns its value on each bootstrap resample. All metrics of one
``compute`` call share one :class:`Resampled` context (one seed, one set of resample counts), so
their resamples are the same draws, and the cost is paid once: at 100k examples × 10 classes the
full classifier set with 1000 resamples takes well under a second (benchmarks/bench_metrics.py).
The resampling scheme is described in :mod:`kdbench.metrics.stats`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
from scipy.special import digamma

from kdbench.metrics import calibration, loyalty
from kdbench.metrics.stats import (
    DEFAULT_MAX_UNITS,
    Units,
    bootstrap_mean_ci,
    bootstrap_statistic_ci,
    mcnemar_exact,
    paired_bootstrap,
    percentile_ci,
    resample_counts,
    unit_budget,
)

SELECTIVE_COVERAGE = 0.1
TOP_K = 5


@dataclass(frozen=True)
class Metric:
    """``per_example(a, b)`` -> values whose mean is the metric, or ``statistic(a, b)`` -> float;
    ``replicates(ctx)`` -> (n_samples,) resampled values (``None``: the CI is null)."""

    per_example: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    statistic: Callable[[np.ndarray, np.ndarray], float] | None = None
    higher_is_better: bool = True
    replicates: Callable[[Resampled], np.ndarray] | None = None
    has_ci: bool = True

    def point(self, a: np.ndarray, b: np.ndarray) -> float:
        if self.statistic is not None:
            return float(self.statistic(a, b))
        return float(np.mean(self.per_example(a, b)))


# --------------------------------------------------------------------------------------------------
# the shared resampling context
# --------------------------------------------------------------------------------------------------
def _group_sums(unit: np.ndarray, n_units: int, cell: np.ndarray, n_cells: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-(unit, cell) sums of values and of squared values; ``cell``/``values`` (N,) or (N, C)."""
    key = (unit[:, None] * n_cells + cell.reshape(len(unit), -1)).ravel()
    v = values.reshape(len(unit), -1).ravel()
    size = n_units * n_cells
    return (np.bincount(key, weights=v, minlength=size).reshape(n_units, n_cells),
            np.bincount(key, weights=v * v, minlength=size).reshape(n_units, n_cells))


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H_n = Σ_{k=1}^{n} 1/k for real n ≥ 0 (ψ(n + 1) + γ)."""
    return digamma(np.asarray(n, dtype=np.float64) + 1.0) + np.euler_gamma


def _harmonic_prefix(m: np.ndarray) -> np.ndarray:
    """SH(m) = Σ_{k=0}^{m−1} H_k = m·H_{m−1} − (m − 1) for m ≥ 1, SH(0) = 0."""
    m = np.asarray(m, dtype=np.float64)
    safe = np.maximum(m, 1.0)
    return np.where(m >= 1, safe * _harmonic(safe - 1.0) - (safe - 1.0), 0.0)


class Resampled:
    """Bootstrap counts over resampling units plus lazily computed resampled sums. ``a`` and ``b``
    are what the metric functions take: (probs, labels) for a classifier, (teacher probs, student
    probs) for a pair."""

    def __init__(self, a: np.ndarray, b: np.ndarray, *, n_samples: int, seed: int, ece_bins: int = 15,
                 order_key: np.ndarray | None = None, groups: tuple[np.ndarray, ...] = (),
                 max_units: int = DEFAULT_MAX_UNITS, share: Resampled | None = None):
        self.a, self.b = a, b
        self.n_samples, self.seed, self.ece_bins = n_samples, seed, ece_bins
        self.n = len(a)
        if share is not None:  # same examples, same units and draws (e.g. before/after a recalibration)
            self.units, self.counts, self.total = share.units, share.counts, share.total
        else:
            key = np.zeros(self.n) if order_key is None else order_key
            self.units = Units.build(key, groups, max_units=unit_budget(self.n, n_samples, max_units))
            self.counts = resample_counts(self.units, n_samples, np.random.default_rng(seed))
            self.total = self.counts.sum(axis=1)
        self._noise_seed = seed

    def _noise(self, tag: int, shape: tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng([self._noise_seed, tag]).standard_normal(shape)

    def sums(self, tag: int, values: np.ndarray, cell: np.ndarray | None = None, n_cells: int = 1) -> np.ndarray:
        """Resampled sums over draws of ``values`` per cell: (n_samples, n_cells). ``tag`` names the
        column set so its within-unit noise is reproducible and independent of other columns."""
        u = self.units
        cell = np.zeros(self.n, dtype=np.int64) if cell is None else cell
        s, sq = _group_sums(u.unit, u.size.size, cell, n_cells, np.asarray(values, dtype=np.float64))
        mean = s / u.size[:, None]
        out = self.counts @ mean
        if not u.exact:
            var = np.maximum(sq / u.size[:, None] - mean * mean, 0.0)
            if np.any(var > 0):
                out += np.sqrt(np.maximum(self.counts @ var, 0.0)) * self._noise(tag, out.shape)
        return out

    def mean_of(self, tag: int, values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums(tag, values)[:, 0] / self.total

    def unit_means(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.units.unit, weights=values, minlength=self.units.size.size) / self.units.size

    def prefix(self, cum_x: np.ndarray, weighted_x: np.ndarray, xbar: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Sum of x over the k lowest-ranked draws (units in ascending order; the unit that holds
        rank k contributes its resampled mean per draw ``xbar``), for k of shape (n_samples, J);
        ``weighted_x`` (n_samples, U) is each unit's resampled sum and ``cum_x`` its cumsum."""
        r, u = self.counts.shape
        big = float(self.total.max()) + 1.0
        off = (np.arange(r) * big)[:, None]
        pos = np.searchsorted((self.ccum + off).ravel(), (k + off).ravel(), side="left")
        pos = np.minimum(pos, r * u - 1)
        prev_c = self.ccum.ravel()[pos] - self.counts.ravel()[pos]
        prev_x = cum_x.ravel()[pos] - weighted_x.ravel()[pos]
        return (prev_x + (k.ravel() - prev_c) * xbar.ravel()[pos]).reshape(k.shape)

    @cached_property
    def ccum(self) -> np.ndarray:
        return np.cumsum(self.counts, axis=1)


class ClassifierResamples(Resampled):
    """Resampling context of one classifier: units are single examples (exact bootstrap) or atoms of
    examples consecutive in top-label confidence inside one equal-width bin (so bin membership is
    exact), numbered by mean confidence. Correctness may vary inside an atom: its within-atom
    variance enters through the normal term (splitting atoms by correctness would misorder them
    at the selective-accuracy cut)."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, *, n_samples: int, seed: int, ece_bins: int = 15,
                 max_units: int = DEFAULT_MAX_UNITS, extra_groups: tuple[np.ndarray, ...] = (),
                 share: Resampled | None = None):
        probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
        self.conf, self.correct = calibration.top_label(probs, labels)
        self.k = probs.shape[1]
        self.bin = calibration.equal_width_bin(self.conf, ece_bins)
        super().__init__(probs, labels, n_samples=n_samples, seed=seed, ece_bins=ece_bins, order_key=self.conf,
                         groups=(self.bin, *extra_groups), max_units=max_units, share=share)

    # exact point estimates from the shared per-example arrays (the same formulas as calibration.py;
    # tests check they agree) -------------------------------------------------------------------
    def point(self, name: str) -> float | None:
        rows = np.arange(self.n)
        if name == "accuracy":
            return float(self.correct.mean())
        if name in ("ece", "mce"):
            gap = np.bincount(self.bin, weights=self.correct - self.conf, minlength=self.ece_bins)
            if name == "ece":
                return float(np.abs(gap).sum() / self.n)
            count = np.bincount(self.bin, minlength=self.ece_bins)
            return float(np.max(np.abs(gap[count > 0]) / count[count > 0]))
        if name == "brier_top_label":
            return float(np.mean((self.conf - self.correct) ** 2))
        if name == "nll":
            return float(-np.mean(np.log(np.clip(self.a[rows, self.b], 1e-12, 1.0))))
        if name == "brier":
            return float(np.mean(np.sum(self.a * self.a, axis=1) - 2 * self.a[rows, self.b] + 1.0))
        return None

    # linear statistics --------------------------------------------------------------------------
    def accuracy(self) -> np.ndarray:
        return self.mean_of(1, self.correct)

    def nll(self) -> np.ndarray:
        picked = self.a[np.arange(self.n), self.b]
        return self.mean_of(2, -np.log(np.clip(picked, 1e-12, 1.0)))

    def brier(self) -> np.ndarray:
        terms = np.sum(self.a * self.a, axis=1) - 2 * self.a[np.arange(self.n), self.b] + 1.0
        return self.mean_of(3, terms)

    def brier_top_label(self) -> np.ndarray:
        return self.mean_of(4, (self.conf - self.correct) ** 2)

    # binned statistics --------------------------------------------------------------------------
    @cached_property
    def _bin_gap(self) -> np.ndarray:
        return self.sums(5, self.correct - self.conf, self.bin, self.ece_bins)

    @cached_property
    def _bin_count(self) -> np.ndarray:
        return self.sums(6, np.ones(self.n), self.bin, self.ece_bins)

    def ece(self) -> np.ndarray:
        return np.abs(self._bin_gap).sum(axis=1) / self.total

    def mce(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.where(self._bin_count > 0.5, np.abs(self._bin_gap) / self._bin_count, 0.0)
        return gap.max(axis=1)

    def classwise_ece(self) -> np.ndarray:
        k, nb = self.k, self.ece_bins
        cell = calibration.equal_width_bin(self.a, nb) + nb * np.arange(k)
        d = (self.b[:, None] == np.arange(k)).astype(np.float64) - self.a
        return np.abs(self.sums(7, d, cell, k * nb)).sum(axis=1) / (k * self.total)

    # rank statistics (draws ordered by confidence) ----------------------------------------------
    @cached_property
    def _ranked(self) -> dict[str, np.ndarray]:
        # per-unit resampled sums (one shared normal draw: correct and gap move together in a unit)
        out = {}
        z = None if self.units.exact else self._noise(8, self.counts.shape)
        u = self.units
        for name, x in (("correct", self.correct), ("gap", self.correct - self.conf)):
            s, sq = _group_sums(u.unit, u.size.size, np.zeros(self.n, dtype=np.int64), 1, x)
            mean = s[:, 0] / u.size
            weighted = self.counts * mean
            if z is not None:
                weighted = weighted + np.sqrt(self.counts * np.maximum(sq[:, 0] / u.size - mean * mean, 0.0)) * z
            with np.errstate(invalid="ignore", divide="ignore"):
                per_draw = np.where(self.counts > 0, weighted / self.counts, 0.0)
            out[name] = (np.cumsum(weighted, axis=1), weighted, per_draw)
        return out

    def ece_equal_mass(self) -> np.ndarray:
        b = np.arange(self.ece_bins + 1)
        k = np.ceil(b[None, :] * self.total[:, None] / self.ece_bins - 1e-9)
        p = self.prefix(*self._ranked["gap"], k)
        return np.abs(np.diff(p, axis=1)).sum(axis=1) / self.total

    def selective_accuracy(self, coverage: float = SELECTIVE_COVERAGE) -> np.ndarray:
        top = np.maximum(1.0, np.ceil(coverage * self.total - 1e-9))
        k = np.stack([self.total - top, self.total], axis=1)
        p = self.prefix(*self._ranked["correct"], k)
        return (p[:, 1] - p[:, 0]) / top

    def coverage_accuracy_auc(self) -> np.ndarray:
        _, weighted, cbar = self._ranked["correct"]
        above = self.total[:, None] - self.ccum  # draws more confident than each unit
        m = self.counts
        h_t = _harmonic(self.total)[:, None]
        # above + m of unit u is `above` of unit u − 1 (and T for the first): one SH evaluation
        sh = _harmonic_prefix(np.concatenate([self.total[:, None], above], axis=1))
        contrib = cbar * (m * h_t - (sh[:, :-1] - sh[:, 1:]))
        return contrib.sum(axis=1) / self.total


TS_SPLIT_SEED = 0  # the temperature-scaling split is part of the metric's definition, not the bootstrap's


class TemperatureScaled:
    """Temperature scaling fitted on a seeded held-out half (:func:`calibration.temperature_split`);
    resampling contexts for the other half before and after scaling (CIs are conditional on T)."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, *, n_samples: int, seed: int, ece_bins: int):
        probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
        fit, ev = calibration.temperature_split(len(labels), 0.5, TS_SPLIT_SEED)
        self.temperature = calibration.fit_temperature(probs[fit], labels[fit])
        self.probs, self.labels = probs[ev], labels[ev]
        self.scaled = calibration.apply_temperature(self.probs, self.temperature)
        self._kw = dict(n_samples=n_samples, seed=seed, ece_bins=ece_bins)
        self._scaled_bin = calibration.equal_width_bin(self.scaled.max(axis=1), ece_bins)
        self.points = {
            "ts_temperature": self.temperature,
            "ts_ece_before": calibration.expected_calibration_error(self.probs, self.labels, ece_bins),
            "ts_ece_after": calibration.expected_calibration_error(self.scaled, self.labels, ece_bins),
            "ts_nll_before": calibration.negative_log_likelihood(self.probs, self.labels),
            "ts_nll_after": calibration.negative_log_likelihood(self.scaled, self.labels),
        }

    @cached_property
    def before(self) -> ClassifierResamples:
        # units nested in the bins before *and* after scaling, so both share one set of draws
        return ClassifierResamples(self.probs, self.labels, extra_groups=(self._scaled_bin,), **self._kw)

    @cached_property
    def after(self) -> ClassifierResamples:
        return ClassifierResamples(self.scaled, self.labels, share=self.before, **self._kw)


class ClassifierContext(ClassifierResamples):
    def confusion(self) -> np.ndarray:
        """Resampled confusion matrices (n_samples, C, C), rows gold, columns predicted."""
        cell = self.b.astype(np.int64) * self.k + self.a.argmax(axis=1)
        return self.sums(40, np.ones(self.n), cell, self.k * self.k).reshape(-1, self.k, self.k)

    def __init__(self, probs, labels, *, n_samples, seed, ece_bins=15):
        super().__init__(probs, labels, n_samples=n_samples, seed=seed, ece_bins=ece_bins)
        self._ts_args = (probs, labels, dict(n_samples=n_samples, seed=seed, ece_bins=ece_bins))

    @cached_property
    def ts(self) -> TemperatureScaled:
        probs, labels, kw = self._ts_args
        return TemperatureScaled(probs, labels, **kw)


# --------------------------------------------------------------------------------------------------
# classifier metrics: functions of (probs, gold labels)
# --------------------------------------------------------------------------------------------------
def _nll_terms(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs[np.arange(len(probs)), labels], 1e-12, 1.0))


def _brier_terms(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.sum((probs - np.eye(probs.shape[1])[labels]) ** 2, axis=1)


def _ts_point(key: str, ece_bins: int) -> Callable[[np.ndarray, np.ndarray], float]:
    def point(probs: np.ndarray, labels: np.ndarray) -> float:
        report = calibration.temperature_scaling_report(probs, labels, ece_bins, 0.5, TS_SPLIT_SEED)
        return report[key.removeprefix("ts_")]
    return point


def confusion_matrix(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = probs.shape[1]
    return np.bincount(np.asarray(labels) * k + probs.argmax(axis=1), minlength=k * k).reshape(k, k).astype(np.float64)


def f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Binary F1 of the positive class (id 1), as GLUE reports for MRPC and QQP:
    F1 = 2·TP / (2·TP + FP + FN) (0 when there is no positive at all). ``cm`` (..., 2, 2)."""
    tp, fp, fn = cm[..., 1, 1], cm[..., 0, 1], cm[..., 1, 0]
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def mcc_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Matthews correlation coefficient (Matthews 1975; multiclass form of Gorodkin 2004, as in
    scikit-learn): (c·s − Σ_k p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)), c correct, s total, t_k gold
    and p_k predicted counts of class k; 0 when a denominator term is 0. GLUE's CoLA metric."""
    t, p = cm.sum(axis=-1), cm.sum(axis=-2)
    c = np.trace(cm, axis1=-2, axis2=-1)
    s = cm.sum(axis=(-2, -1))
    cov = c * s - (t * p).sum(axis=-1)
    denom = np.sqrt((s * s - (p * p).sum(axis=-1)) * (s * s - (t * t).sum(axis=-1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cov / np.where(denom > 0, denom, 1), 0.0)


def classifier_metrics(ece_bins: int = 15) -> dict[str, Metric]:
    """Metrics of one classifier: functions of (probs, gold labels). See docs/metrics.md."""
    lower = dict(higher_is_better=False)
    ts_before = lambda ctx, f: getattr(ctx.ts.before, f)()  # noqa: E731
    ts_after = lambda ctx, f: getattr(ctx.ts.after, f)()  # noqa: E731
    return {
        "accuracy": Metric(per_example=lambda p, y: (p.argmax(axis=1) == y).astype(np.float64),
                           replicates=lambda c: c.accuracy()),
        "f1": Metric(statistic=lambda p, y: f1_from_confusion(confusion_matrix(p, y)),
                     replicates=lambda c: f1_from_confusion(c.confusion())),
        "mcc": Metric(statistic=lambda p, y: mcc_from_confusion(confusion_matrix(p, y)),
                      replicates=lambda c: mcc_from_confusion(c.confusion())),
        "ece": Metric(statistic=partial(calibration.expected_calibration_error, n_bins=ece_bins),
                      replicates=lambda c: c.ece(), **lower),
        "ece_equal_mass": Metric(statistic=partial(calibration.expected_calibration_error, n_bins=ece_bins,
                                                   strategy="mass"), replicates=lambda c: c.ece_equal_mass(), **lower),
        "mce": Metric(statistic=partial(calibration.maximum_calibration_error, n_bins=ece_bins),
                      replicates=lambda c: c.mce(), **lower),
        "classwise_ece": Metric(statistic=partial(calibration.classwise_ece, n_bins=ece_bins),
                                replicates=lambda c: c.classwise_ece(), **lower),
        "brier": Metric(per_example=_brier_terms, replicates=lambda c: c.brier(), **lower),
        "brier_top_label": Metric(statistic=calibration.top_label_brier_score,
                                  replicates=lambda c: c.brier_top_label(), **lower),
        "nll": Metric(per_example=_nll_terms, replicates=lambda c: c.nll(), **lower),
        "selective_accuracy_10": Metric(statistic=partial(calibration.selective_accuracy, coverage=SELECTIVE_COVERAGE),
                                        replicates=lambda c: c.selective_accuracy()),
        "coverage_accuracy_auc": Metric(statistic=calibration.coverage_accuracy_auc,
                                        replicates=lambda c: c.coverage_accuracy_auc()),
        # a fitted parameter: its CI is null (a bootstrap would have to refit T per resample)
        "ts_temperature": Metric(statistic=_ts_point("ts_temperature", ece_bins), has_ci=False),
        "ts_ece_before": Metric(statistic=_ts_point("ts_ece_before", ece_bins),
                                replicates=lambda c: ts_before(c, "ece"), **lower),
        "ts_ece_after": Metric(statistic=_ts_point("ts_ece_after", ece_bins),
                               replicates=lambda c: ts_after(c, "ece"), **lower),
        "ts_nll_before": Metric(statistic=_ts_point("ts_nll_before", ece_bins),
                                replicates=lambda c: ts_before(c, "nll"), **lower),
        "ts_nll_after": Metric(statistic=_ts_point("ts_nll_after", ece_bins),
                               replicates=lambda c: ts_after(c, "nll"), **lower),
    }


_TS_METRICS = ("ts_temperature", "ts_ece_before", "ts_ece_after", "ts_nll_before", "ts_nll_after")


# --------------------------------------------------------------------------------------------------
# pair metrics: functions of (teacher probs, student probs)
# --------------------------------------------------------------------------------------------------
class PairContext(Resampled):
    """Resampling context of a teacher–student pair: atoms of examples with the same argmax
    agreement (so label loyalty is exact), consecutive in probability loyalty."""

    def __init__(self, teacher, student, *, n_samples, seed, ece_bins=15):
        teacher, student = np.asarray(teacher, dtype=np.float64), np.asarray(student, dtype=np.float64)
        self.agree = loyalty.label_loyalty_per_example(teacher, student)
        self.ploy = loyalty.probability_loyalty_per_example(teacher, student)
        super().__init__(teacher, student, n_samples=n_samples, seed=seed, ece_bins=ece_bins,
                         order_key=self.ploy, groups=(self.agree.astype(np.int64),))

    def mean_metric(self, tag: int, per_example: Callable) -> np.ndarray:
        return self.mean_of(tag, per_example(self.a, self.b))


def _pair_kl(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    from kdbench.metrics.calibration import probs_to_logits
    return loyalty.kl_divergence(probs_to_logits(t), probs_to_logits(s))


def _pair_top_k(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    return loyalty.top_k_overlap_per_example(t, s, min(TOP_K, t.shape[1]))


_PAIR_PER_EXAMPLE: dict[str, tuple[Callable, bool]] = {
    "label_loyalty": (loyalty.label_loyalty_per_example, True),
    "probability_loyalty": (loyalty.probability_loyalty_per_example, True),
    "top_k_overlap": (_pair_top_k, True),
    "kl_teacher_student": (_pair_kl, False),
    "tvd": (loyalty.total_variation, False),
    "acceptance_rate": (loyalty.acceptance_rate_per_token, True),
}

PAIR_METRICS: dict[str, Metric] = {
    name: Metric(per_example=f, higher_is_better=hib,
                 replicates=(lambda tag, f: lambda c: c.mean_metric(tag, f))(20 + i, f))
    for i, (name, (f, hib)) in enumerate(_PAIR_PER_EXAMPLE.items())
}


def compute(
    metrics: dict[str, Metric],
    names: list[str],
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    ece_bins: int | None = None,
) -> dict[str, dict]:
    """``{name: {"value": float, "ci": [low, high] | None}}`` for each requested metric; one shared,
    seeded resampling context per call. A CI is null only for fitted parameters (``ts_temperature``)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if ece_bins is None:
        ece_bins = _infer_bins(metrics)
    # the two name sets are disjoint: pair metrics take (teacher probs, student probs)
    ctx_cls = PairContext if names and all(n in PAIR_METRICS for n in names) else ClassifierContext
    ctx: Resampled | None = None

    def context() -> Resampled:
        nonlocal ctx
        if ctx is None:
            ctx = ctx_cls(a, b, n_samples=max(n_samples, 1), seed=seed, ece_bins=ece_bins)
        return ctx

    out = {}
    for name in names:
        m = metrics[name]
        point = None
        if ctx_cls is ClassifierContext and m is not None:
            point = context().ts.points[name] if name in _TS_METRICS else context().point(name)
        if point is None:
            point = m.point(a, b)
        ci = None
        if m.has_ci and n_samples > 0:
            if m.replicates is not None:
                ci = list(percentile_ci(m.replicates(context()), confidence))
            elif m.per_example is not None:
                ci = list(bootstrap_mean_ci(m.per_example(a, b), n_samples, confidence, seed))
            else:
                ci = list(bootstrap_statistic_ci(m.statistic, (a, b), n_samples, confidence, seed))
            if not all(math.isfinite(x) for x in ci):
                ci = None
        out[name] = {"value": float(point), "ci": ci}
    return out


def paired_comparison(
    labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, *, n_samples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> dict[str, dict]:
    """System A against system B on the same examples, in run-record form: ``accuracy_difference``
    (acc_A − acc_B with a paired-bootstrap CI), ``mcnemar_p_value`` (exact McNemar, CI null) and
    ``mcnemar_odds_ratio`` (b/c with its exact CI; left out when not finite)."""
    labels = np.asarray(labels)
    a_right = np.asarray(probs_a).argmax(axis=1) == labels
    b_right = np.asarray(probs_b).argmax(axis=1) == labels
    diff = paired_bootstrap(a_right.astype(float), b_right.astype(float), n_samples, confidence, seed)
    mc = mcnemar_exact(a_right, b_right, confidence)
    out = {"accuracy_difference": {"value": diff["value"], "ci": diff["ci"]},
           "mcnemar_p_value": {"value": mc["p_value"], "ci": None}}
    if math.isfinite(mc["odds_ratio"]):
        ci = mc["odds_ratio_ci"] if all(math.isfinite(x) for x in mc["odds_ratio_ci"]) else None
        out["mcnemar_odds_ratio"] = {"value": mc["odds_ratio"], "ci": ci}
    return out


def _infer_bins(metrics: dict[str, Metric]) -> int:
    ece = metrics.get("ece")
    if ece is not None and isinstance(ece.statistic, partial):
        return int(ece.statistic.keywords.get("n_bins", 15))
    return 15
