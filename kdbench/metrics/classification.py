"""Classifier metrics (functions of class probabilities and gold labels) and teacher–student
metrics of two classifiers (functions of their probabilities), with their specs.

Every metric has an exact point value on all examples and a vectorised resampled form evaluated on
one shared :class:`ClassifierContext` (one seed, one set of draws), so the full classifier set
with 1000 resamples takes well under a second at 100k examples × 10 classes
(benchmarks/bench_metrics.py). Formulas of the calibration metrics: :mod:`kdbench.metrics.calibration`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import digamma

from kdbench.errors import KdbenchError
from kdbench.metrics import calibration, loyalty
from kdbench.metrics.spec import Kind, Table, metric, register_kind, statistic
from kdbench.metrics.stats import DEFAULT_MAX_UNITS, Resampled, _group_sums, paired_draws

SELECTIVE_COVERAGE = 0.1
TOP_K = 5
TS_SPLIT_SEED = 0  # the temperature-scaling split is part of the metric's definition, not the bootstrap's



def _harmonic(n: np.ndarray) -> np.ndarray:
    """H_n = Σ_{k=1}^{n} 1/k for real n ≥ 0 (ψ(n + 1) + γ)."""
    return digamma(np.asarray(n, dtype=np.float64) + 1.0) + np.euler_gamma


def _harmonic_prefix(m: np.ndarray) -> np.ndarray:
    """SH(m) = Σ_{k=0}^{m−1} H_k = m·H_{m−1} − (m − 1) for m ≥ 1, SH(0) = 0."""
    m = np.asarray(m, dtype=np.float64)
    safe = np.maximum(m, 1.0)
    return np.where(m >= 1, safe * _harmonic(safe - 1.0) - (safe - 1.0), 0.0)


# --------------------------------------------------------------------------------------------------
# resampling contexts
# --------------------------------------------------------------------------------------------------
class ClassifierResamples(Resampled):
    """Resampling context of one classifier: units are single examples (exact bootstrap) or atoms of
    examples consecutive in top-label confidence inside one equal-width bin (so bin membership is
    exact), numbered by mean confidence. Correctness may vary inside an atom: its within-atom
    variance enters through the normal term (splitting atoms by correctness would misorder them
    at the selective-accuracy cut)."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, *, n_samples: int, seed: int, ece_bins: int = 15,
                 max_units: int = DEFAULT_MAX_UNITS, extra_groups: tuple[np.ndarray, ...] = (),
                 share: Resampled | None = None, draws: np.ndarray | None = None):
        probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
        self.a, self.b = probs, labels
        self.conf, self.correct = calibration.top_label(probs, labels)
        self.k = probs.shape[1]
        self.ece_bins = ece_bins
        self.bin = calibration.equal_width_bin(self.conf, ece_bins)
        super().__init__(len(labels), n_samples=n_samples, seed=seed, order_key=self.conf,
                         groups=(self.bin, *extra_groups), max_units=max_units, share=share, draws=draws)

    # exact point estimates from the shared per-example arrays (the same formulas as calibration.py;
    # tests check they agree) -------------------------------------------------------------------
    def ece_point(self) -> float:
        gap = np.bincount(self.bin, weights=self.correct - self.conf, minlength=self.ece_bins)
        return float(np.abs(gap).sum() / self.n)

    def mce_point(self) -> float:
        gap = np.bincount(self.bin, weights=self.correct - self.conf, minlength=self.ece_bins)
        count = np.bincount(self.bin, minlength=self.ece_bins)
        return float(np.max(np.abs(gap[count > 0]) / count[count > 0]))

    def nll_terms(self) -> np.ndarray:
        return -np.log(np.clip(self.a[np.arange(self.n), self.b], 1e-12, 1.0))

    def brier_terms(self) -> np.ndarray:
        return np.sum(self.a * self.a, axis=1) - 2 * self.a[np.arange(self.n), self.b] + 1.0

    def nll(self) -> np.ndarray:
        return self.mean_of("nll", self.nll_terms())

    # binned statistics --------------------------------------------------------------------------
    @cached_property
    def _bin_gap(self) -> np.ndarray:
        return self.sums("bin_gap", self.correct - self.conf, self.bin, self.ece_bins)

    @cached_property
    def _bin_count(self) -> np.ndarray:
        return self.sums("bin_count", np.ones(self.n), self.bin, self.ece_bins)

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
        return np.abs(self.sums("classwise", d, cell, k * nb)).sum(axis=1) / (k * self.total)

    def confusion(self) -> np.ndarray:
        """Resampled confusion matrices (n_samples, C, C), rows gold, columns predicted."""
        cell = self.b.astype(np.int64) * self.k + self.a.argmax(axis=1)
        return self.sums("confusion", np.ones(self.n), cell, self.k * self.k).reshape(-1, self.k, self.k)

    # rank statistics (draws ordered by confidence) ----------------------------------------------
    @cached_property
    def _ranked(self) -> dict[str, np.ndarray]:
        # per-unit resampled sums (one shared normal draw: correct and gap move together in a unit)
        out = {}
        z = None if self.units.exact else self._noise("ranked", self.counts.shape)
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


class TemperatureScaled:
    """Temperature scaling fitted on a seeded held-out half (:func:`calibration.temperature_split`);
    resampling contexts for the other half before and after scaling (CIs are conditional on T)."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, *, n_samples: int, seed: int, ece_bins: int,
                 paired: bool = False):
        probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
        fit, ev = calibration.temperature_split(len(labels), 0.5, TS_SPLIT_SEED)
        self.temperature = calibration.fit_temperature(probs[fit], labels[fit])
        self.probs, self.labels = probs[ev], labels[ev]
        self.scaled = calibration.apply_temperature(self.probs, self.temperature)
        # paired (two runs on the same half): draws of the half's examples in their own order
        draws = paired_draws(len(ev), n_samples, seed) if paired else None
        self._kw = dict(n_samples=n_samples, seed=seed, ece_bins=ece_bins, draws=draws)
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
    def __init__(self, probs, labels, *, n_samples, seed, ece_bins=15, draws=None):
        super().__init__(probs, labels, n_samples=n_samples, seed=seed, ece_bins=ece_bins, draws=draws)
        self._ts_args = (probs, labels, dict(n_samples=n_samples, seed=seed, ece_bins=ece_bins, paired=draws is not None))

    @cached_property
    def ts(self) -> TemperatureScaled:
        probs, labels, kw = self._ts_args
        return TemperatureScaled(probs, labels, **kw)


class PairContext(Resampled):
    """Resampling context of a teacher–student pair: atoms of examples with the same argmax
    agreement (so label loyalty is exact), consecutive in probability loyalty."""

    def __init__(self, teacher, student, *, n_samples, seed, draws=None):
        self.a, self.b = np.asarray(teacher, dtype=np.float64), np.asarray(student, dtype=np.float64)
        self.agree = loyalty.label_loyalty_per_example(self.a, self.b)
        self.ploy = loyalty.probability_loyalty_per_example(self.a, self.b)
        super().__init__(len(self.a), n_samples=n_samples, seed=seed, order_key=self.ploy,
                         groups=(self.agree.astype(np.int64),), draws=draws)


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------
def probs_from_samples(rows, where: str) -> np.ndarray:
    """The class probabilities of ``samples.parquet`` rows as an (N, C) array."""
    try:
        probs = np.array(rows["probs"].tolist(), dtype=np.float64)
    except ValueError:
        raise KdbenchError(f"{where}: ragged probabilities in the samples") from None
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise KdbenchError(f"{where}: the samples carry no class probabilities")
    if not np.isfinite(probs).all():
        raise KdbenchError(f"{where}: NaN or infinite probability in the samples")
    return probs


def labels_from_samples(rows, where: str) -> np.ndarray:
    if rows["label"].isna().any():
        raise KdbenchError(f"{where}: the samples have examples without a label")
    return np.asarray(rows["label"].astype(float), dtype=np.float64).astype(np.int64)


@dataclass
class ClassifierTable(Table):
    kind = "classifier"
    probs: np.ndarray
    labels: np.ndarray

    @property
    def n(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, preds, task_spec: dict) -> ClassifierTable:
        if preds.labels is None:
            raise KdbenchError(f"task {preds.task}: {preds.role} predictions have no gold labels to score")
        return cls(preds.probs, preds.labels)

    @classmethod
    def from_samples(cls, rows, task_spec: dict, where: str) -> ClassifierTable:
        return cls(probs_from_samples(rows, where), labels_from_samples(rows, where))

    def context(self, *, n_samples, seed, options, draws=None) -> ClassifierContext:
        return ClassifierContext(self.probs, self.labels, n_samples=n_samples, seed=seed,
                                 ece_bins=int(options.get("ece_bins", 15)), draws=draws)

    def trivial(self) -> ClassifierTable:
        """Certain of the majority class, always."""
        k = self.probs.shape[1]
        majority = np.bincount(self.labels, minlength=k).argmax()
        return ClassifierTable(np.tile(np.eye(k)[majority], (self.n, 1)), self.labels)


@dataclass
class ClassifierPairTable(Table):
    kind = "classifier_pair"
    teacher: np.ndarray
    student: np.ndarray

    @property
    def n(self) -> int:
        return len(self.teacher)

    @classmethod
    def of(cls, student, teacher, task_spec: dict) -> ClassifierPairTable:
        if student.probs.shape != teacher.probs.shape:
            raise KdbenchError(f"task {student.task}: {student.role} and {teacher.role} scored different classes")
        return cls(teacher.probs, student.probs)

    @classmethod
    def from_samples(cls, student_rows, teacher_rows, pair_rows, task_spec: dict, where: str) -> ClassifierPairTable:
        return cls(probs_from_samples(teacher_rows, where), probs_from_samples(student_rows, where))

    def context(self, *, n_samples, seed, options, draws=None) -> PairContext:
        return PairContext(self.teacher, self.student, n_samples=n_samples, seed=seed, draws=draws)


register_kind(Kind("classifier", "example", "class probabilities and gold labels", table=ClassifierTable,
                   pair="classifier_pair", compare="accuracy", columns=("ece", "brier", "nll")))
register_kind(Kind("classifier_pair", "example", "teacher and student class probabilities", table=ClassifierPairTable,
                   columns=("label_loyalty", "probability_loyalty")))


# --------------------------------------------------------------------------------------------------
# classifier metrics
# --------------------------------------------------------------------------------------------------
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


BINS = "(its bin under B equal-width top-label confidence bins, c_i − conf_i)"


@metric("accuracy", "classifier", higher_is_better=True, percent=True, binary=True,
        per_unit="c_i = 1[argmax_k p_ik = y_i]")
def accuracy(ctx):
    """(1/N) Σ_i c_i: the share of examples whose most probable class is the gold one."""
    return ctx.correct


@statistic("f1", "classifier", higher_is_better=True, percent=True, per_unit="(y_i, argmax_k p_ik): a confusion-matrix cell",
           reference="GLUE (Wang et al. 2019) for MRPC and QQP",
           replicates=lambda ctx: f1_from_confusion(ctx.confusion()))
def f1(ctx):
    """Binary F1 of the positive class (id 1): 2·TP / (2·TP + FP + FN), 0 when there is no positive at all."""
    return f1_from_confusion(confusion_matrix(ctx.a, ctx.b))


@statistic("mcc", "classifier", higher_is_better=True, per_unit="(y_i, argmax_k p_ik): a confusion-matrix cell",
           reference="Matthews 1975; Gorodkin 2004 (multiclass); GLUE's CoLA metric",
           replicates=lambda ctx: mcc_from_confusion(ctx.confusion()))
def mcc(ctx):
    """Matthews correlation (c·s − Σ_k p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)): c correct, s total, t_k gold and
    p_k predicted counts of class k (scikit-learn's multiclass form); 0 when a denominator term is 0."""
    return mcc_from_confusion(confusion_matrix(ctx.a, ctx.b))


@statistic("ece", "classifier", higher_is_better=False, per_unit=BINS, reference="Naeini et al. 2015; Guo et al. 2017",
           replicates=lambda ctx: ctx.ece())
def ece(ctx):
    """Equal-width ECE (1/N) Σ_b |Σ_{i∈b} (c_i − conf_i)| = Σ_b (n_b/N)|acc_b − conf_b|, conf_i = max_k p_ik; bin b
    = (b/B, (b+1)/B], the first also takes 0, a confidence on an edge goes to the lower bin (B = eval.ece_bins)."""
    return ctx.ece_point()


@statistic("ece_equal_mass", "classifier", higher_is_better=False,
           per_unit="(conf_i, c_i − conf_i): its rank in confidence decides its bin",
           reference="Nixon et al. 2019; Roelofs et al. 2022", replicates=lambda ctx: ctx.ece_equal_mass())
def ece_equal_mass(ctx):
    """The ECE sum over B equal-mass bins: examples sorted by confidence (stable), rank r ∈ [0, N) in bin ⌊rB/N⌋, so
    bins hold ⌊N/B⌋ or ⌈N/B⌉ examples (ties may split across bins)."""
    return calibration.expected_calibration_error(ctx.a, ctx.b, ctx.ece_bins, "mass")


@statistic("mce", "classifier", higher_is_better=False, per_unit=BINS, reference="Naeini et al. 2015",
           replicates=lambda ctx: ctx.mce())
def mce(ctx):
    """Maximum calibration error: max over non-empty equal-width bins of |acc_b − conf_b|."""
    return ctx.mce_point()


@statistic("classwise_ece", "classifier", higher_is_better=False,
           per_unit="per class k: its bin of p_ik and 1[y_i = k] − p_ik", reference="Kull et al. 2019",
           replicates=lambda ctx: ctx.classwise_ece())
def classwise_ece(ctx):
    """(1/K) Σ_k Σ_b (n_kb/N)|ȳ_kb − p̄_kb|: for each class k, equal-width bins of p_ik, ȳ_kb the share of members
    labelled k, p̄_kb their mean p_ik."""
    return calibration.classwise_ece(ctx.a, ctx.b, ctx.ece_bins)


@metric("brier", "classifier", higher_is_better=False, per_unit="Σ_k (p_ik − 1[y_i = k])²", reference="Brier 1950")
def brier(ctx):
    """Multiclass Brier score (1/N) Σ_i Σ_k (p_ik − 1[y_i = k])², in [0, 2] (= 2 × scikit-learn's binary
    brier_score_loss for K = 2)."""
    return ctx.brier_terms()


@metric("brier_top_label", "classifier", higher_is_better=False, per_unit="(conf_i − c_i)²",
        reference="Gupta & Ramdas 2022")
def brier_top_label(ctx):
    """Top-label Brier score (1/N) Σ_i (conf_i − c_i)², in [0, 1]."""
    return (ctx.conf - ctx.correct) ** 2


@metric("nll", "classifier", higher_is_better=False, per_unit="−ln p_{i,y_i}")
def nll(ctx):
    """Negative log-likelihood −(1/N) Σ_i ln p_{i,y_i}, natural log, p clipped at 10⁻¹² (at most 27.6 nats)."""
    return ctx.nll_terms()


@statistic("selective_accuracy_10", "classifier", higher_is_better=True, percent=True,
           per_unit="(conf_i, c_i): its rank in confidence decides whether it is kept",
           reference="Geifman & El-Yaniv 2017", replicates=lambda ctx: ctx.selective_accuracy())
def selective_accuracy_10(ctx):
    """Accuracy of the k = ⌈0.1 N⌉ most confident examples (among equal confidences the later example counts as
    more confident)."""
    return calibration.selective_accuracy(ctx.a, ctx.b, SELECTIVE_COVERAGE)


@statistic("coverage_accuracy_auc", "classifier", higher_is_better=True,
           per_unit="(conf_i, c_i): its rank in confidence", reference="Geifman et al. 2019",
           replicates=lambda ctx: ctx.coverage_accuracy_auc())
def coverage_accuracy_auc(ctx):
    """Area under the coverage–accuracy curve (1/N) Σ_{k=1}^{N} acc_k, acc_k the accuracy of the k most confident,
    = (1/N) Σ_j c_(j)(H_N − H_{j−1}) over confidence ranks j (H the harmonic numbers) = 1 − AURC."""
    return calibration.coverage_accuracy_auc(ctx.a, ctx.b)


@statistic("ts_temperature", "classifier", higher_is_better=None, per_unit="—", reference="Guo et al. 2017 §4.2")
def ts_temperature(ctx):
    """Temperature T minimising the NLL of softmax(ln p / T) on a seeded random half of the examples (split seed 0);
    Newton steps on β = 1/T (the NLL is convex in β). A fitted parameter: no CI, no better direction, not gated."""
    return ctx.ts.points["ts_temperature"]


def _ts(name: str, side: str, fn: str, doc: str, higher: str):
    def point(ctx):
        return ctx.ts.points[name]

    point.__doc__ = doc
    statistic(name, "classifier", higher_is_better=False, per_unit=f"an example of the other half: {higher}",
              reference="Guo et al. 2017", replicates=lambda ctx: getattr(getattr(ctx.ts, side), fn)())(point)


for _side in ("before", "after"):
    _ts(f"ts_ece_{_side}", _side, "ece", f"ECE on the other half of the examples, {_side} dividing the logits ln p by T "
        "(CI conditional on T).", BINS)
    _ts(f"ts_nll_{_side}", _side, "nll", f"NLL on the other half of the examples, {_side} dividing the logits ln p by T "
        "(CI conditional on T).", "−ln p_{i,y_i}")


# --------------------------------------------------------------------------------------------------
# teacher–student metrics of two classifiers
# --------------------------------------------------------------------------------------------------
@metric("label_loyalty", "classifier_pair", higher_is_better=True, percent=True, binary=True,
        per_unit="1[argmax p_t,i = argmax p_s,i]", reference="Xu et al. 2021")
def label_loyalty(ctx):
    """(1/N) Σ_i 1[argmax p_t,i = argmax p_s,i]: how often the student picks the teacher's class."""
    return ctx.agree


@metric("probability_loyalty", "classifier_pair", higher_is_better=True, per_unit="1 − √JSD₂(p_t,i, p_s,i)",
        reference="Xu et al. 2021; Lin 1991")
def probability_loyalty(ctx):
    """(1/N) Σ_i (1 − √JSD₂(p_t,i, p_s,i)), JSD₂(p, q) = ½ KL₂(p‖m) + ½ KL₂(q‖m), m = ½(p + q), base-2 logs so
    JSD ∈ [0, 1]; √JSD₂ is the Jensen–Shannon distance (scipy.spatial.distance.jensenshannon(p, q, base=2))."""
    return ctx.ploy


@metric("top_k_overlap", "classifier_pair", higher_is_better=True, per_unit="|top_k(p_t,i) ∩ top_k(p_s,i)| / k",
        reference="Stanton et al. 2021")
def top_k_overlap(ctx):
    """(1/N) Σ_i |top_k(p_t,i) ∩ top_k(p_s,i)| / k, k = min(5, K) (always 1 when K ≤ 5)."""
    return loyalty.top_k_overlap_per_example(ctx.a, ctx.b, min(TOP_K, ctx.a.shape[1]))


@metric("kl_teacher_student", "classifier_pair", higher_is_better=False, per_unit="KL(p_t,i ‖ p_s,i)")
def kl_teacher_student(ctx):
    """(1/N) Σ_i KL(p_t,i ‖ p_s,i), natural log (probabilities clipped at 10⁻¹² inside the logs)."""
    return loyalty.kl_divergence(calibration.probs_to_logits(ctx.a), calibration.probs_to_logits(ctx.b))


@metric("tvd", "classifier_pair", higher_is_better=False, per_unit="½ Σ_k |p_t,ik − p_s,ik|")
def tvd(ctx):
    """(1/N) Σ_i ½ Σ_k |p_t,ik − p_s,ik|, in [0, 1]."""
    return loyalty.total_variation(ctx.a, ctx.b)


@metric("acceptance_rate", "classifier_pair", higher_is_better=True, per_unit="Σ_k min(p_t,ik, p_s,ik)",
        reference="Leviathan et al. 2023")
def acceptance_rate(ctx):
    """(1/N) Σ_i Σ_k min(p_t,ik, p_s,ik) = 1 − tvd: speculative-decoding acceptance with the teacher as target."""
    return loyalty.acceptance_rate_per_token(ctx.a, ctx.b)
