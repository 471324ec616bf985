"""Statistics for the report and the gate: bootstrap confidence intervals (vectorised, seeded),
the paired bootstrap, the exact McNemar test and multi-seed aggregation.

Resampling scheme (used by every CI in the run record)
------------------------------------------------------
* ``N × n_samples ≤ EXACT_DRAWS`` (2·10⁷): the classic Efron bootstrap — each resample draws N
  examples with replacement; the draw counts form an ``(n_samples, N)`` matrix built with one
  ``bincount`` (Efron & Tibshirani 1993, ch. 6).
* larger: the Poisson bootstrap (Hanley & MacGibbon 2006, "Creating non-parametric bootstrap
  samples using Poisson frequencies"; Chamandy et al. 2012) on *atoms*: examples are grouped into
  about ``max_units`` atoms of similar examples (a few more where groups split them) (see :class:`Units`); an atom of n examples gets
  a Poisson(n) count per resample, which is exactly the sum of its members' Poisson(1) weights;
  the sum of a per-example column over the m draws that fall in an atom is drawn from its normal
  approximation m·mean + √m·sd·z (sd the within-atom standard deviation). With atoms of one
  example this is the plain Poisson bootstrap, exactly.

Percentile intervals: the (α/2, 1 − α/2) quantiles of the resampled statistic, α = 1 − confidence.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import stats as _st

EXACT_DRAWS = 20_000_000
DEFAULT_MAX_UNITS = 256


def percentile_ci(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval: the (α/2, 1 − α/2) empirical quantiles of ``samples`` (Efron 1979)."""
    alpha = 1.0 - confidence
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def finite_ci(samples: np.ndarray, confidence: float = 0.95) -> list[float] | None:
    """:func:`percentile_ci` as a record's ``ci``: None when too few samples are finite to give one."""
    ci = percentile_ci(samples, confidence)
    return list(ci) if all(math.isfinite(v) for v in ci) else None


def format_p(p: float | None, n_samples: int, test: str = "", *, name: str = "p") -> str:
    """A p-value as people read it: ``name = value`` ("p = 0.012", "p = 0.00042"). A resampling p of 0
    means only that no resample crossed zero, so it is the bound ``p < 1/n_samples``; an exact
    test's (``test`` starting "exact") is shown as it is. ``name=""``: a table cell ("0.012",
    "< 0.001"); None: "–" (not tested)."""
    if p is None:
        return "–"
    if p == 0 and not test.startswith("exact"):
        text = f"< {1 / n_samples:g}"
    else:
        text = ("= " if name else "") + (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")
    return f"{name} {text}" if name else text


# --------------------------------------------------------------------------------------------------
# resampling units and weights
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Units:
    """Resampling units: ``unit`` maps each example to its unit (atom); units are numbered in the
    order of ``order_key`` (ascending), ``size`` counts examples per unit."""

    unit: np.ndarray  # (N,) int64
    size: np.ndarray  # (U,) float64

    @property
    def n(self) -> int:
        return int(self.unit.size)

    @property
    def exact(self) -> bool:
        return bool(np.all(self.size == 1))

    @classmethod
    def build(cls, order_key: np.ndarray, groups: Sequence[np.ndarray] = (), max_units: int = DEFAULT_MAX_UNITS) -> Units:
        """Atoms of consecutive examples in ``order_key`` order inside each combination of ``groups``
        (integer arrays; examples of different groups never share an atom). With N ≤ max_units each
        example is its own unit. Units are numbered by their mean ``order_key``."""
        order_key = np.asarray(order_key, dtype=np.float64)
        n = order_key.size
        if n <= max_units:  # one unit per example
            rank = np.argsort(order_key, kind="stable")
            unit = np.empty(n, dtype=np.int64)
            unit[rank] = np.arange(n)
            return cls(unit, np.ones(n))
        block = math.ceil(n / max_units)
        gkey = np.zeros(n, dtype=np.int64)
        for g in groups:
            g = np.asarray(g, dtype=np.int64)
            gkey = gkey * (int(g.max()) + 1) + g
        order = np.lexsort((order_key, gkey))
        gsorted = gkey[order]
        starts = np.r_[0, np.flatnonzero(np.diff(gsorted)) + 1]
        pos_in_group = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        raw = np.empty(n, dtype=np.int64)
        raw[order] = gsorted * (n + 1) + pos_in_group // block
        _, inv = np.unique(raw, return_inverse=True)
        size = np.bincount(inv).astype(np.float64)
        mean_key = np.bincount(inv, weights=order_key) / size
        renumber = np.empty(size.size, dtype=np.int64)
        renumber[np.argsort(mean_key, kind="stable")] = np.arange(size.size)
        unit = renumber[inv]
        return cls(unit, np.bincount(unit).astype(np.float64))

    def moments(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit mean and (population) variance of each column of ``columns`` (N × M)."""
        columns = np.asarray(columns, dtype=np.float64)
        if columns.ndim == 1:
            columns = columns[:, None]
        if self.exact:
            out = np.empty_like(columns)
            out[self.unit] = columns
            return out, np.zeros_like(out)
        u = self.size.size
        mean = np.zeros((u, columns.shape[1]))
        sq = np.zeros((u, columns.shape[1]))
        np.add.at(mean, self.unit, columns)
        np.add.at(sq, self.unit, columns * columns)
        mean /= self.size[:, None]
        var = np.maximum(sq / self.size[:, None] - mean * mean, 0.0)
        return mean, var


def unit_budget(n: int, n_samples: int, max_units: int = DEFAULT_MAX_UNITS) -> int:
    """How many units to resample: every example (the exact Efron bootstrap) while
    n·n_samples ≤ EXACT_DRAWS, else ``max_units`` atoms."""
    return n if n * n_samples <= EXACT_DRAWS else max_units


def draw_index(n_units: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_samples, n_units)`` Efron draws: each resample draws ``n_units`` units with replacement."""
    return rng.integers(0, n_units, size=(n_samples, n_units))


def counts_of(index: np.ndarray, n_units: int) -> np.ndarray:
    """Draw counts ``(n_samples, n_units)`` of an index matrix, with one ``bincount``."""
    n_samples = index.shape[0]
    flat = index + (np.arange(n_samples, dtype=np.int64) * n_units)[:, None]
    return np.bincount(flat.ravel(), minlength=n_samples * n_units).reshape(n_samples, n_units).astype(np.float64)


def resample_counts(units: Units, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_samples, U)`` draw counts: Efron multinomial counts when every unit is one example and
    N·n_samples ≤ EXACT_DRAWS, else Poisson(size) counts (the Poisson bootstrap)."""
    n_units = units.size.size
    if units.exact and n_units * n_samples <= EXACT_DRAWS:
        return counts_of(draw_index(n_units, n_samples, rng), n_units)
    return rng.poisson(units.size, size=(n_samples, n_units)).astype(np.float64)


def paired_draws(n: int, n_samples: int, seed: int) -> np.ndarray:
    """Efron draws ``(n_samples, n)`` of the indices of n paired units: the one set of resamples both
    sides of a paired test are evaluated on (:class:`Resampled` ``draws``)."""
    return draw_index(n, n_samples, np.random.default_rng(seed))


def _tag_seed(tag: str) -> int:
    return zlib.crc32(tag.encode())


def _group_sums(unit: np.ndarray, n_units: int, cell: np.ndarray, n_cells: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-(unit, cell) sums of values and of squared values; ``cell``/``values`` (N,) or (N, C)."""
    key = (unit[:, None] * n_cells + cell.reshape(len(unit), -1)).ravel()
    v = values.reshape(len(unit), -1).ravel()
    size = n_units * n_cells
    return (np.bincount(key, weights=v, minlength=size).reshape(n_units, n_cells),
            np.bincount(key, weights=v * v, minlength=size).reshape(n_units, n_cells))


class Resampled:
    """The resampling engine every CI and paired test of kdbench goes through: bootstrap draw counts
    over resampling units (see the module docstring) and resampled sums of per-unit columns.

    ``order_key`` numbers the units (atoms of examples consecutive in it, inside each combination of
    ``groups``); a family's context adds its own columns on top. ``share``: the same units and draws
    as another context (the same examples before and after a recalibration). ``draws`` (n_samples, N):
    given Efron draws of example indices (:func:`paired_draws`), so that two contexts of
    the same examples (two runs, two models) are evaluated on the same resamples; every example is then
    its own unit. ``exact``: Efron draws of single examples whatever the size (statistics that need the
    resampled examples themselves, such as rank correlations). ``own_order``: each mean gets draws of
    its own, with units ordered by the values averaged (the resampling of
    :func:`bootstrap_mean_samples`); ignored with ``draws``."""

    def __init__(self, n: int, *, n_samples: int, seed: int, order_key: np.ndarray | None = None,
                 groups: Sequence[np.ndarray] = (), max_units: int = DEFAULT_MAX_UNITS, share: Resampled | None = None,
                 draws: np.ndarray | None = None, exact: bool = False, own_order: bool = False):
        self.n, self.n_samples, self.seed = n, n_samples, seed
        self.own_order = own_order and draws is None
        self.max_units = max_units
        self._index = None
        key = np.arange(n, dtype=np.float64) if order_key is None else np.asarray(order_key, dtype=np.float64)
        if share is not None:
            self.units, self.counts, self._index = share.units, share.counts, share._index
        elif draws is not None:
            if draws.shape[1] != n:
                raise ValueError(f"draws of {draws.shape[1]} units for {n} examples")
            self.units = Units.build(key, max_units=n)
            self._index = self.units.unit[draws]
            self.counts = counts_of(self._index, n)
        else:
            self.units = Units.build(key, groups, max_units=n if exact else unit_budget(n, n_samples, max_units))
            rng = np.random.default_rng(seed)
            if exact or (self.units.exact and n * n_samples <= EXACT_DRAWS):
                self._index = draw_index(n, n_samples, rng)
                self.counts = counts_of(self._index, n)
            else:
                self.counts = resample_counts(self.units, n_samples, rng)
        self.total = self.counts.sum(axis=1)

    @property
    def index(self) -> np.ndarray:
        """``(n_samples, N)`` example indices of each resample (Efron draws of single examples)."""
        if self._index is None:
            raise ValueError("resampled examples need Efron draws of single examples (exact=True)")
        example_of_unit = np.empty(self.n, dtype=np.int64)
        example_of_unit[self.units.unit] = np.arange(self.n)
        return example_of_unit[self._index]

    def _noise(self, tag: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng([self.seed, _tag_seed(tag)]).standard_normal(shape)

    def sums(self, tag: str, values: np.ndarray, cell: np.ndarray | None = None, n_cells: int = 1) -> np.ndarray:
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

    def column_sums(self, tag: str, columns: np.ndarray) -> np.ndarray:
        """Resampled sums of each column of ``columns`` (N, M): (n_samples, M)."""
        columns = np.asarray(columns, dtype=np.float64).reshape(self.n, -1)
        cells = np.broadcast_to(np.arange(columns.shape[1]), columns.shape)
        return self.sums(tag, columns, cells, columns.shape[1])

    def mean_of(self, tag: str, values: np.ndarray) -> np.ndarray:
        """Resampled means of per-example ``values``: (n_samples,)."""
        if self.own_order:
            own = Resampled(self.n, n_samples=self.n_samples, seed=self.seed, order_key=values,
                            max_units=self.max_units)
            return own.mean_of(tag, values)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums(tag, values)[:, 0] / self.total

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


class ColumnContext(Resampled):
    """A context over per-unit columns (``ctx.columns[name]``; ``params`` for the rest) whose means
    are each resampled on their own, units ordered by the values averaged
    (:func:`bootstrap_mean_samples`' scheme)."""

    def __init__(self, columns: dict[str, np.ndarray], n: int, *, n_samples: int, seed: int,
                 draws: np.ndarray | None = None, params: dict | None = None):
        self.columns, self.params = columns, params or {}
        super().__init__(n, n_samples=n_samples, seed=seed, draws=draws, own_order=True)


# --------------------------------------------------------------------------------------------------
# bootstrap CIs
# --------------------------------------------------------------------------------------------------
def bootstrap_mean_samples(
    values: np.ndarray, n_samples: int = 1000, seed: int = 0, max_units: int = DEFAULT_MAX_UNITS
) -> np.ndarray:
    """Resampled means Σ w_i v_i / Σ w_i of per-example ``values`` (atoms sorted by value)."""
    values = np.asarray(values, dtype=np.float64)
    return Resampled(values.size, n_samples=n_samples, seed=seed, order_key=values, max_units=max_units).mean_of(
        "mean", values)


def bootstrap_mean_ci(
    values: np.ndarray, n_samples: int = 1000, confidence: float = 0.95, seed: int = 0,
    max_units: int = DEFAULT_MAX_UNITS,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-example ``values`` (Efron & Tibshirani 1993),
    seeded and vectorised (see the module docstring for the resampling scheme)."""
    return percentile_ci(bootstrap_mean_samples(values, n_samples, seed, max_units), confidence)


def bootstrap_statistic_ci(
    statistic: Callable[..., float], arrays: tuple[np.ndarray, ...], n_samples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of any ``statistic(*arrays)``: Efron resamples of the examples (rows),
    one evaluation per resample. Generic and exact but a Python loop: the registry uses vectorised
    forms instead; this is the reference they are tested against."""
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_samples, n))
    values = np.array([statistic(*(np.asarray(a)[i] for a in arrays)) for i in idx])
    return percentile_ci(values, confidence)


def paired_bootstrap(
    a_values: np.ndarray, b_values: np.ndarray, n_samples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict:
    """Paired bootstrap for the difference of two systems scored on the same items
    (Koehn 2004; Berg-Kirkpatrick et al. 2012): resample items, keeping each item's pair together,
    so the difference of means is the mean of d_i = a_i − b_i.

    Returns ``value`` (mean a − mean b), the percentile ``ci`` and ``p_value``, the two-sided
    bootstrap p-value 2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)) (capped at 1).
    """
    a_values, b_values = np.asarray(a_values, dtype=np.float64), np.asarray(b_values, dtype=np.float64)
    if a_values.shape != b_values.shape:
        raise ValueError(f"paired bootstrap needs the same items: shapes {a_values.shape} and {b_values.shape}")
    d = a_values - b_values
    samples = bootstrap_mean_samples(d, n_samples, seed)
    return {"value": float(d.mean()), "ci": list(percentile_ci(samples, confidence)), "p_value": bootstrap_p_value(samples)}


def bootstrap_p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a difference from its resampled values (the finite ones):
    2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)), capped at 1 (1 when every resample is 0, as for identical systems;
    Koehn 2004). The one p-value of every paired bootstrap in kdbench."""
    deltas = np.asarray(deltas, dtype=np.float64)
    deltas = deltas[np.isfinite(deltas)]
    if deltas.size == 0:
        return float("nan")
    return float(min(1.0, 2.0 * min(np.mean(deltas <= 0), np.mean(deltas >= 0))))


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray, confidence: float = 0.95) -> dict:
    """Exact McNemar test for paired right/wrong outcomes (McNemar 1947; exact form: the discordant
    pairs are Binomial(b + c, ½) under H0, Fay 2010 "Two-sided exact tests and matching confidence
    intervals for discrete data").

    b = #(A right, B wrong), c = #(A wrong, B right). p-value: two-sided binomial test of b out of
    b + c at ½ (``scipy.stats.binomtest``). Effect size: the conditional (matched-pairs) odds ratio
    OR = b / c (A's odds of being right on a discordant item), with its exact CI from the
    Clopper–Pearson interval [pl, pu] for b/(b + c): OR ∈ [pl/(1 − pl), pu/(1 − pu)]
    (Breslow & Day 1980, §7). Also the accuracy difference (b − c)/N. OR is inf when c = 0 and
    nan when b + c = 0 (p = 1 then).
    """
    a_correct, b_correct = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a_correct.shape != b_correct.shape:
        raise ValueError("McNemar needs paired outcomes of the same length")
    b = int(np.sum(a_correct & ~b_correct))
    c = int(np.sum(~a_correct & b_correct))
    n = a_correct.size
    out = {"b": b, "c": c, "n": n, "accuracy_difference": (b - c) / n if n else float("nan")}
    if b + c == 0:
        return {**out, "p_value": 1.0, "odds_ratio": float("nan"), "odds_ratio_ci": [float("nan"), float("nan")]}
    test = _st.binomtest(b, b + c, 0.5)
    ci = test.proportion_ci(confidence_level=confidence, method="exact")

    def odds(p: float) -> float:
        return float("inf") if p >= 1 else p / (1 - p)

    return {**out, "p_value": float(test.pvalue), "odds_ratio": odds(b / (b + c)),
            "odds_ratio_ci": [odds(ci.low), odds(ci.high)]}


def adjust_p_values(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """p-values adjusted for testing them all at once, controlling the family-wise error rate:
    ``"bonferroni"`` min(1, m·p_i); ``"holm"`` the step-down adjustment (Holm 1979): with p sorted
    ascending, p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)), never larger than Bonferroni's and as
    strict about the family-wise error; ``"none"`` unchanged. m = the number of p-values."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if method == "none" or m == 0:
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(1.0, m * p).tolist()
    if method != "holm":
        raise ValueError(f"unknown correction {method!r} (holm, bonferroni, none)")
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out.tolist()


def aggregate_seeds(values: Sequence[float]) -> dict:
    """Mean ± sample standard deviation (ddof = 1; 0 for one seed) over runs with different seeds."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n_seeds": int(v.size)}


def aggregate_seed_results(per_seed: Sequence[dict[str, dict]]) -> dict[str, dict]:
    """Combine ``{metric: {"value", "ci"}}`` dicts of several seeds into the run-record form
    ``{metric: {"value": mean, "ci": [mean − t·s/√n, mean + t·s/√n] | null, "std": s, "n_seeds": n,
    "per_seed": [...]}}`` — the CI is the t interval over seeds (null for one seed); metrics missing
    from a seed are dropped rather than averaged over fewer seeds."""
    if not per_seed:
        return {}
    names = [m for m in per_seed[0] if all(m in r for r in per_seed)]
    out = {}
    for m in names:
        vals = [float(r[m]["value"]) for r in per_seed]
        agg = aggregate_seeds(vals)
        n = agg["n_seeds"]
        if n > 1:
            half = float(_st.t.ppf(0.975, n - 1)) * agg["std"] / math.sqrt(n)
            ci = [agg["mean"] - half, agg["mean"] + half]
        else:
            ci = per_seed[0][m].get("ci")
        out[m] = {"value": agg["mean"], "ci": ci, "std": agg["std"], "n_seeds": n, "per_seed": vals}
    return out
