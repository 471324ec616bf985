"""What a capacity-gap grid can say: per student, a best teacher that is significant (:func:`best_tier`),
and across students the law of the optimal teacher size (:func:`fit_law`).

**Best tier.** The top teacher is the one with the best main score (the metric's direction). It is
compared with every other teacher by the metric's paired test (:func:`kdbench.metrics.spec.paired_test`:
exact McNemar for 0/1 outcomes, else the paired bootstrap) on the (seed, example) units pooled across
seeds; the p-values are Holm-corrected across those comparisons, and the best tier is the top teacher
and every teacher whose corrected p ≥ alpha. The top teacher is then tested against the student's
no-KD baseline (the same seeds and examples): unless it is significantly better (p < alpha), **no
teacher helps** and there is no best teacher. A tie at chance is exactly that case.

**The law.** Per student with a best teacher, the optimal teacher size T* (parameters) against the
student size S: the least-squares fit log T* = a + b·log S, and the constant-ratio fit (b = 1) whose
ratio T*/S is the geometric mean of the students' ratios (MiniMA's "law of capacity gap", Zhang et
al. 2023, says that ratio is roughly constant). CIs: a percentile bootstrap over the students (the
fit's points). The record says why a fit cannot show a law: fewer than 3 students with an optimum, an
optimum at an end of the teacher range (the true one may lie beyond), a student no teacher helps.
"""
from __future__ import annotations

import math

import numpy as np

from kdbench.metrics import spec as metric_spec
from kdbench.metrics.stats import adjust_p_values, finite_ci, format_p

ALPHA = 0.05
MIN_STUDENTS = 3
FIT_BOOTSTRAP = 2000
TIER_METHOD = ("top teacher by the main score; paired test (the metric's: exact McNemar or paired bootstrap) against "
               "each other teacher on the (seed, example) units pooled across seeds, Holm-corrected; best tier = "
               f"corrected p >= {ALPHA}; no teacher helps unless the top teacher beats the no-KD baseline at p < {ALPHA}")
VIA_METHOD = ("each student distilled from the assistant that each teacher taught (--assistant), against the same "
              "student distilled from the teacher directly: the same paired test on the (seed, example) units pooled "
              f"across seeds, Holm-corrected across the student's teachers; a difference at corrected p < {ALPHA}")
FIT_METHOD = ("least squares log(optimal teacher params) = a + b log(student params), and the constant-ratio fit "
              f"(b = 1); 95% percentile bootstrap over students ({FIT_BOOTSTRAP} resamples)")


def _better(higher: bool, a: float, b: float) -> bool:
    return a > b if higher else a < b


def best_tier(spec: metric_spec.MetricSpec, pooled: dict[str, object], baseline, how: metric_spec.Resampling,
              alpha: float = ALPHA) -> dict:
    """The verdict of one student over its teachers: ``pooled`` maps each teacher to its student's
    pooled table, ``baseline`` is the no-KD baseline's pooled table over the same units (None: not
    trained, so whether a teacher helps is not tested). Returns ``top_teacher`` (best score),
    ``best_teacher`` (the top teacher, or None when no teacher helps), ``best_tier``,
    ``comparisons`` (top − other, CI, p, Holm p), ``baseline_test`` (top − baseline) and ``no_teacher_helps``."""
    higher = spec.higher_is_better is not False
    value = {t: spec.value(how.context(table)) for t, table in pooled.items()}
    top = max(value, key=lambda t: value[t] if higher else -value[t])  # first of equals: the plan's order
    others = [t for t in pooled if t != top]
    tests = [metric_spec.paired_test(spec, pooled[top], pooled[t], how) for t in others]
    holm = adjust_p_values([t.p_value for t in tests], "holm")
    comparisons = [{"teacher": t, "delta": r.delta, "ci": r.ci, "p_value": r.p_value, "p_holm": q, "test": r.test,
                    "in_tier": not (q < alpha and _better(higher, r.value_a, r.value_b))}
                   for t, r, q in zip(others, tests, holm)]
    tier = [top] + [c["teacher"] for c in comparisons if c["in_tier"]]
    out = {"top_teacher": top, "best_tier": tier, "comparisons": comparisons, "baseline_test": None, "no_teacher_helps": None,
           "best_teacher": top}
    if baseline is not None:
        r = metric_spec.paired_test(spec, pooled[top], baseline, how)
        helps = r.p_value < alpha and _better(higher, r.value_a, r.value_b)
        out["baseline_test"] = {"value": r.value_b, "delta": r.delta, "ci": r.ci, "p_value": r.p_value, "test": r.test}
        out["no_teacher_helps"] = not helps
        out["best_teacher"] = top if helps else None
    return out


def vs_direct(spec: metric_spec.MetricSpec, via: dict[str, object], direct: dict[str, object], how: metric_spec.Resampling,
              alpha: float = ALPHA) -> dict[str, dict]:
    """Per teacher, the student distilled through the teacher's assistant (``via``: teacher -> pooled
    table) against the student distilled from the teacher (``direct``, the same units): the metric's
    paired test, Holm-corrected across the teachers. ``delta`` is via − direct; ``finding`` says
    which is better at corrected p < alpha, if either."""
    higher = spec.higher_is_better is not False
    tests = {t: metric_spec.paired_test(spec, via[t], direct[t], how) for t in via}
    holm = adjust_p_values([r.p_value for r in tests.values()], "holm")
    out = {}
    for (t, r), q in zip(tests.items(), holm):
        finding = "no significant difference"
        if q < alpha and r.value_a != r.value_b:
            finding = "via the assistant is better" if _better(higher, r.value_a, r.value_b) else "direct is better"
        out[t] = {"via_value": r.value_a, "direct_value": r.value_b, "delta": r.delta, "ci": r.ci, "p_value": r.p_value,
                  "p_holm": q, "test": r.test, "n_samples": how.n_samples, "finding": finding}
    return out


def verdict(student: dict, metric: str, n_samples: int) -> str:
    """One sentence for people: what the student's grid row shows (``n_samples``: the bootstrap's
    resamples, the bound of a resampled p of 0)."""
    b = student["baseline_test"]
    if student["no_teacher_helps"]:
        return (f"No teacher helps: the top teacher {student['top_teacher']} is not significantly better than the "
                f"no-KD baseline on {metric} ({b['test']}, {format_p(b['p_value'], n_samples, b['test'])}).")
    tier = student["best_tier"]
    size = "all the teachers" if len(tier) == len(student["comparisons"]) + 1 else f"{len(tier)} teacher(s)"
    said = f"Best teacher {student['top_teacher']}; the best tier (not significantly worse) holds {size}: {', '.join(tier)}."
    if b is None:
        return said + " No no-KD baseline was trained, so whether any teacher helps is not tested."
    p = format_p(b["p_value"], n_samples, b["test"])
    return said + f" It beats the no-KD baseline by {b['delta']:+.4g} ({b['test']}, {p})."


def fit_law(students: list[dict], teacher_range: tuple[int, int], seed: int = 0) -> dict:
    """The law from per-student rows ``{"student", "student_params", "optimal_teacher_params" (None:
    no teacher helps)}``: ``points`` fitted, ``slope``/``intercept`` of log T* on log S and
    ``ratio`` T*/S (the constant-ratio fit), each with a bootstrap ``*_ci`` over the points, the
    ratio the free fit gives at the students' geometric-mean size, and ``limits``: why the data
    cannot show a law (empty when they can); ``enough_data`` says the same as a flag."""
    limits = []
    helped = [s for s in students if s["optimal_teacher_params"] is not None]
    for s in students:
        if s["optimal_teacher_params"] is None:
            limits.append(f"no teacher helps student {s['student']}")
        elif s["optimal_teacher_params"] in teacher_range:
            end = "largest" if s["optimal_teacher_params"] == teacher_range[1] else "smallest"
            limits.append(f"student {s['student']}'s optimum is the {end} teacher: the true optimum may lie beyond the range")
    sizes = {s["student_params"] for s in helped}
    if len(sizes) < MIN_STUDENTS:
        limits.insert(0, f"{len(sizes)} student size(s) with an optimum; a law needs at least {MIN_STUDENTS}")
    out = {"points": [{"student": s["student"], "student_params": s["student_params"],
                       "teacher_params": s["optimal_teacher_params"]} for s in helped],
           "enough_data": not limits, "limits": limits, "method": FIT_METHOD}
    if not helped:
        return out
    x = np.log([s["student_params"] for s in helped], dtype=np.float64)
    y = np.log([s["optimal_teacher_params"] for s in helped], dtype=np.float64)
    ratio = np.exp(y - x)
    out["ratio"] = float(np.exp(np.mean(y - x)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(FIT_BOOTSTRAP, len(x)))
    out["ratio_ci"] = finite_ci(np.exp(np.mean((y - x)[idx], axis=1)))
    if len(sizes) >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        out.update(slope=float(slope), intercept=float(intercept),
                   ratio_at_mean_student=float(math.exp(intercept + (slope - 1) * x.mean())))
        boot = np.array([_line(x[i], y[i]) for i in idx])
        out["slope_ci"], out["intercept_ci"] = finite_ci(boot[:, 0]), finite_ci(boot[:, 1])
    out["ratios"] = [float(r) for r in ratio]
    return out


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of a least-squares line; NaN when the resample holds one student size."""
    if np.ptp(x) == 0:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)
