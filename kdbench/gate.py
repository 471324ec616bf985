"""The CI regression gate: a candidate run against a baseline run record, metric by metric, with
paired tests on the two runs' per-example samples.

For every (task, model, metric) of the baseline record (``results`` and the ``MODEL|teacher``
pair metrics), the metric is recomputed from each run's ``samples.parquet`` (and checked against the
record's value), the examples are paired by id, and:

* accuracy-like metrics (a mean of per-example 0/1 outcomes: ``accuracy``, ``label_loyalty``) get
  the exact McNemar test (:func:`kdbench.metrics.stats.mcnemar_exact`);
* every other metric gets the paired bootstrap: the examples are resampled with both runs' values
  kept together (:func:`kdbench.metrics.stats.paired_bootstrap` for per-example means; the same
  scheme over whole-sample statistics such as ECE).

A **regression** is a change for the worse that is significant (p < alpha) *and* larger than the
metric's absolute tolerance (``--tolerance METRIC=DELTA``, default 0). Exit status: 0 pass,
1 regression, 2 unusable input (missing file, metric, role or samples, NaN, schema or data-hash
mismatch), always with a one-line reason. ``kdbench baseline promote`` writes a baseline.
"""
from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kdbench.errors import KdbenchError
from kdbench.fsio import write_atomic
from kdbench.metrics import calibration, registry
from kdbench.metrics.stats import mcnemar_exact, paired_bootstrap, percentile_ci
from kdbench.report import compare
from kdbench.report.record import (
    RECORD_FILE,
    read_record,
    read_samples,
    samples_path,
    write_record,
)

EXIT_PASS, EXIT_REGRESSION, EXIT_UNUSABLE = 0, 1, 2
ACCURACY_LIKE = ("accuracy", "label_loyalty", "exact_match")
# what registry.paired_comparison writes under "A|B" pairs: statistics of a comparison, not metrics of a model
COMPARISON_STATISTICS = ("accuracy_difference", "mcnemar_p_value", "mcnemar_odds_ratio")
SAMPLES_MATCH_TOL = 1e-5
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------
@dataclass
class Side:
    """One run: its record, its samples and where they came from."""

    label: str  # "baseline" or "candidate"
    path: Path
    record: dict
    samples: object  # pandas DataFrame

    def probs_and_labels(self, task: str, role: str, ids: Sequence[str] | None = None):
        """(example ids, probs (N, C), labels (N,)) of one model on one task, in ``ids`` order."""
        part = self.samples[(self.samples["task"] == task) & (self.samples["role"] == role)]
        if part.empty:
            raise KdbenchError(f"{self.label} {self.path}: missing samples for {task}/{role}")
        if part["example_id"].duplicated().any():
            dup = part.loc[part["example_id"].duplicated(), "example_id"].iloc[0]
            raise KdbenchError(f"{self.label} {self.path}: example {dup!r} appears twice in the samples of {task}/{role}")
        part = part.set_index("example_id")
        if ids is not None:
            ids = list(ids)
            if set(ids) != set(part.index):
                raise KdbenchError(f"{task}/{role}: the baseline's and the candidate's samples cover different "
                                   f"examples ({len(ids)} vs {len(part)})")
            part = part.loc[ids]
        try:
            probs = np.array(part["probs"].tolist(), dtype=np.float64)
        except ValueError:
            raise KdbenchError(f"{self.label} {self.path}: ragged probabilities in the samples of {task}/{role}") from None
        if probs.ndim != 2 or probs.shape[1] < 2:
            raise KdbenchError(f"{self.label} {self.path}: samples of {task}/{role} carry no class probabilities")
        if not np.isfinite(probs).all():
            raise KdbenchError(f"{self.label} {self.path}: NaN or infinite probability in the samples of {task}/{role}")
        if part["label"].isna().any():
            raise KdbenchError(f"{self.label} {self.path}: samples of {task}/{role} have examples without a label")
        return list(part.index), probs, part["label"].to_numpy(dtype=np.int64)


def resolve_record_path(path: str | Path, baselines_dir: str | Path = "baselines") -> Path:
    """A run folder, a ``report.json``, a baseline ``NAME.json``, or a bare baseline name."""
    p = Path(path)
    if p.is_dir():
        return p / RECORD_FILE
    if not p.exists() and p.suffix == "" and NAME_RE.match(str(path)):
        named = Path(baselines_dir) / f"{path}.json"
        if named.exists():
            return named
    return p


def load_side(path: str | Path, label: str) -> Side:
    p = resolve_record_path(path)
    try:
        record = read_record(p)
    except KdbenchError as e:
        raise KdbenchError(f"{label}: {e}") from None
    samples = read_samples(samples_path(p), where=f"{label} {p}")
    return Side(label, p, record, samples)


# --------------------------------------------------------------------------------------------------
# paired views of one metric: the per-example data of both runs and how to test the difference
# --------------------------------------------------------------------------------------------------
@dataclass
class Paired:
    """A metric on both runs over the same examples: ``stat(*arrays)`` is the metric; ``binary``
    (per-example 0/1 values) → McNemar, ``per_example`` → paired bootstrap of the mean, else a
    paired bootstrap of ``stat`` over resampled examples."""

    base: tuple[np.ndarray, ...]
    cand: tuple[np.ndarray, ...]
    stat: Callable[..., float]
    per_example: Callable[..., np.ndarray] | None = None
    binary: bool = False
    # optional vectorised form: (arrays, counts (S, N) draw counts) -> (S,) statistic per resample
    replicates: Callable[..., np.ndarray] | None = None


def _ece_replicates(n_bins: int) -> Callable[..., np.ndarray]:
    """ECE over resamples at once: (1/N) Σ_b |Σ_{i∈b} w_i (c_i − conf_i)| with draw counts w —
    the same formula as :func:`calibration.expected_calibration_error`, bins fixed per example."""
    def replicates(probs: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
        conf, correct = calibration.top_label(probs, labels)
        gap = np.zeros((conf.size, n_bins))
        gap[np.arange(conf.size), calibration.equal_width_bin(conf, n_bins)] = correct - conf
        return np.abs(counts @ gap).sum(axis=1) / counts.sum(axis=1)
    return replicates


def _paired_statistic_bootstrap(p: Paired, n_samples: int, confidence: float, seed: int) -> dict:
    """Paired bootstrap of a whole-sample statistic: resample example indices (Efron), evaluate the
    statistic on both runs with the same indices, and take the difference — the scheme of
    :func:`kdbench.metrics.stats.paired_bootstrap`, for statistics that are not means. p-value:
    2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)), capped at 1."""
    n = len(p.base[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_samples, n))
    if p.replicates is not None:
        counts = np.zeros((n_samples, n))
        np.add.at(counts, (np.repeat(np.arange(n_samples), n), idx.ravel()), 1.0)
        deltas = p.replicates(*p.cand, counts) - p.replicates(*p.base, counts)
    else:
        deltas = np.array([p.stat(*(a[i] for a in p.cand)) - p.stat(*(a[i] for a in p.base)) for i in idx])
    deltas = deltas[np.isfinite(deltas)]
    identical = all(np.array_equal(a, b) for a, b in zip(p.base, p.cand))
    pval = 1.0 if identical or deltas.size == 0 else min(1.0, 2.0 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)))
    ci = list(percentile_ci(deltas, confidence)) if deltas.size else None
    return {"ci": ci, "p_value": float(pval)}


def _classifier_view(name: str, metric: registry.Metric, base, cand, ece_bins: int) -> Paired:
    (bp, by), (cp, cy) = base, cand
    if name in ("ts_ece_before", "ts_ece_after", "ts_nll_before", "ts_nll_after"):
        # temperature scaling: T is fitted once per run on the fit half (as in the record); the
        # resampling is over the evaluation half, so T stays fixed (refitting per resample would
        # test the optimiser, not the model)
        fit, ev = calibration.temperature_split(len(by), 0.5, registry.TS_SPLIT_SEED)

        def half(probs, labels):
            if name.endswith("_after"):
                t = calibration.fit_temperature(probs[fit], labels[fit])
                return calibration.apply_temperature(probs[ev], t), labels[ev]
            return probs[ev], labels[ev]

        base_h, cand_h = half(bp, by), half(cp, cy)
        if "_nll_" in name:
            return Paired(base_h, cand_h, calibration.negative_log_likelihood, registry._nll_terms)
        return Paired(base_h, cand_h, lambda p, y: calibration.expected_calibration_error(p, y, ece_bins),
                      replicates=_ece_replicates(ece_bins))
    return Paired((bp, by), (cp, cy), metric.point, metric.per_example, binary=name in ACCURACY_LIKE,
                  replicates=_ece_replicates(ece_bins) if name == "ece" else None)


def _pair_view(name: str, metric: registry.Metric, base, cand) -> Paired:
    # pair metrics take (teacher probs, student probs)
    return Paired(base, cand, metric.point, metric.per_example, binary=name in ACCURACY_LIKE)


# --------------------------------------------------------------------------------------------------
# checks and the result
# --------------------------------------------------------------------------------------------------
@dataclass
class Check:
    task: str
    model: str  # role, or "student|teacher" for a pair metric
    metric: str
    baseline: float
    candidate: float
    delta: float  # candidate − baseline
    ci: list[float] | None  # CI of delta
    p_value: float
    test: str
    tolerance: float
    higher_is_better: bool
    verdict: str = ""

    @property
    def worse_by(self) -> float:
        """How much worse the candidate is (positive = worse), in the metric's units."""
        return -self.delta if self.higher_is_better else self.delta


@dataclass
class GateResult:
    baseline: Side
    candidate: Side
    checks: list[Check]
    alpha: float
    confidence: float
    n_samples: int
    not_gated: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "regression"]

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressions else EXIT_PASS

    def markdown(self) -> str:
        return render_markdown(self)


def parse_tolerances(items: Iterable[str]) -> dict[str, float]:
    """``["accuracy=0.01", "ece=0.02"]`` → ``{"accuracy": 0.01, "ece": 0.02}``."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            delta = float(value)
        except ValueError:
            delta = float("nan")
        if not sep or not name or not math.isfinite(delta) or delta < 0:
            raise KdbenchError(f"--tolerance {item!r}: expected METRIC=DELTA with DELTA a number ≥ 0")
        out[name] = delta
    return out


def _verdict(c: Check, alpha: float) -> str:
    significant = c.p_value < alpha
    if c.worse_by > 0:
        if significant and c.worse_by > c.tolerance:
            return "regression"
        return "worse, within tolerance" if significant else "worse, not significant"
    if c.worse_by < 0:
        return "better" if significant else "better, not significant"
    return "unchanged"


def run_gate(
    baseline: str | Path,
    candidate: str | Path,
    tolerances: dict[str, float] | None = None,
    *,
    alpha: float = 0.05,
    roles: Sequence[str] = (),
    ignore: Sequence[str] = (),
    n_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    markdown: str | Path | None = None,
) -> GateResult:
    """Compare ``candidate`` with ``baseline`` (paths to records, run folders or baseline names).
    Raises :class:`KdbenchError` (one line) on unusable input; with ``markdown`` the Markdown
    summary (or the reason the inputs are unusable) is also written there."""
    try:
        result = _run_gate(baseline, candidate, tolerances or {}, alpha=alpha, roles=roles, ignore=ignore,
                           n_samples=n_samples, confidence=confidence, seed=seed)
    except KdbenchError as e:
        if markdown is not None:
            write_atomic(Path(markdown), unusable_markdown(str(e)))
        raise
    if markdown is not None:
        write_atomic(Path(markdown), result.markdown())
    return result


def _plan(base: Side, cand: Side, roles, ignore, classifier: dict) -> tuple[list[tuple], list[str]]:
    """Every check to run as (task, model, metric name, Metric, baseline value, candidate value),
    and what is not gated — all inputs are checked here, before any test runs, so unusable input
    fails fast."""
    b_rec, c_rec = base.record, cand.record
    plan, not_gated = [], []

    def classify(name: str, table: dict, where: str) -> registry.Metric | None:
        if name in ignore:
            not_gated.append(f"{where}/{name} (ignored)")
            return None
        if name in COMPARISON_STATISTICS:
            not_gated.append(f"{where}/{name} (a comparison statistic, not a metric of one model)")
            return None
        metric = table.get(name)
        if metric is None:
            raise KdbenchError(f"no paired test for metric {name!r} ({where}); pass --ignore {name} to leave it out")
        if not metric.has_ci:
            not_gated.append(f"{where}/{name} (a fitted parameter with no better direction)")
            return None
        return metric

    for task, by_role in b_rec["results"].items():
        if task not in c_rec["results"]:
            raise KdbenchError(f"candidate has no results for task {task!r} (the baseline has them)")
        why = compare.reason(b_rec, c_rec, task)
        if why:
            raise KdbenchError(f"runs not comparable on {why}")
        for role in roles:
            if role not in by_role:
                raise KdbenchError(f"--role {role}: the baseline has no model {role!r} on {task}")
        for role in (r for r in by_role if not roles or r in roles):
            if role not in c_rec["results"][task]:
                raise KdbenchError(f"candidate has no model {role!r} on {task} (the baseline has it)")
            for name, b_m in by_role[role].items():
                metric = classify(name, classifier, f"{task}/{role}")
                if metric is None:
                    continue
                c_m = c_rec["results"][task][role].get(name)
                if c_m is None:
                    raise KdbenchError(f"candidate has no metric {task}/{role}/{name} (missing metric; the baseline "
                                       "has it)")
                plan.append((task, role, name, metric, b_m["value"], c_m["value"]))
        for pair, b_ms in b_rec["pairs"].get(task, {}).items():
            if roles and pair.split("|")[0] not in roles:
                continue
            for name, b_m in b_ms.items():
                metric = classify(name, registry.PAIR_METRICS, f"{task}/{pair}")
                if metric is None:
                    continue
                c_m = c_rec["pairs"].get(task, {}).get(pair, {}).get(name)
                if c_m is None:
                    raise KdbenchError(f"candidate has no metric {task}/{pair}/{name} (missing metric; the "
                                       "baseline has it)")
                plan.append((task, pair, name, metric, b_m["value"], c_m["value"]))
    if not plan:
        raise KdbenchError("nothing to gate: the baseline has no metric with a paired test")
    return plan, not_gated


def _run_gate(baseline, candidate, tolerances, *, alpha, roles, ignore, n_samples, confidence, seed) -> GateResult:
    if not 0 < alpha < 1:
        raise KdbenchError(f"--alpha {alpha}: must be between 0 and 1")
    base = load_side(baseline, "baseline")
    cand = load_side(candidate, "candidate")
    b_metrics = {m for t in base.record["results"].values() for ms in t.values() for m in ms}
    b_metrics |= {m for t in base.record["pairs"].values() for ms in t.values() for m in ms}
    for name in tolerances:
        if name not in b_metrics:
            raise KdbenchError(f"--tolerance {name}: the baseline has no metric {name!r}")
    ece_bins = int(base.record["config"].get("eval", {}).get("ece_bins", 15))
    plan, not_gated = _plan(base, cand, roles, ignore, registry.classifier_metrics(ece_bins))

    cache: dict[tuple[str, str, str], tuple] = {}

    def data(side: Side, task: str, role: str):
        """(ids, probs, labels) of one model, the candidate's in the baseline's example order."""
        k = (side.label, task, role)
        if k not in cache:
            if role not in side.record["results"].get(task, {}):
                raise KdbenchError(f"{side.label} has no model {role!r} on {task}")
            ids = None if side is base else data(base, task, role)[0]
            cache[k] = side.probs_and_labels(task, role, ids)
            if side is cand and not np.array_equal(cache[k][2], data(base, task, role)[2]):
                raise KdbenchError(f"{task}/{role}: the baseline's and the candidate's gold labels differ")
        return cache[k]

    views = []
    for task, model, name, metric, b_val, c_val in plan:  # load and check every input first
        if "|" in model:
            student, ref = model.split("|")
            view = _pair_view(name, metric, (data(base, task, ref)[1], data(base, task, student)[1]),
                              (data(cand, task, ref)[1], data(cand, task, student)[1]))
        else:
            view = _classifier_view(name, metric, data(base, task, model)[1:], data(cand, task, model)[1:], ece_bins)
        for side, val, arrays in ((base, b_val, view.base), (cand, c_val, view.cand)):
            got = view.stat(*arrays)
            if not math.isfinite(got) or abs(got - val) > SAMPLES_MATCH_TOL * max(1.0, abs(val)):
                raise KdbenchError(f"{side.label} {side.path}: samples do not match the record: {task}/{model}/"
                                   f"{name} is {val:.6g} in the record, {got:.6g} from the samples")
        views.append(view)

    checks = []
    for (task, model, name, metric, b_val, c_val), view in zip(plan, views):
        if view.binary:
            a = view.per_example(*view.cand).astype(bool)
            b = view.per_example(*view.base).astype(bool)
            mc = mcnemar_exact(a, b, confidence)
            boot = paired_bootstrap(a.astype(float), b.astype(float), n_samples, confidence, seed)
            p, ci, test = mc["p_value"], boot["ci"], f"exact McNemar (b={mc['b']}, c={mc['c']})"
        elif view.per_example is not None:
            boot = paired_bootstrap(view.per_example(*view.cand), view.per_example(*view.base), n_samples,
                                    confidence, seed)
            p, ci, test = boot["p_value"], boot["ci"], "paired bootstrap"
        else:
            boot = _paired_statistic_bootstrap(view, n_samples, confidence, seed)
            p, ci, test = boot["p_value"], boot["ci"], "paired bootstrap"
        c = Check(task, model, name, b_val, c_val, c_val - b_val, ci, p, test, tolerances.get(name, 0.0),
                  metric.higher_is_better)
        c.verdict = _verdict(c, alpha)
        checks.append(c)
    return GateResult(base, cand, checks, alpha, confidence, n_samples, not_gated)


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------
def _md(text) -> str:
    """A table cell: no pipes, no HTML, one line."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\r", " ").replace("\n", " "))


def _num(x: float) -> str:
    return f"{x:.4f}"


def _p(c: Check, n_samples: int) -> str:
    if c.p_value == 0 and not c.test.startswith("exact"):  # no resample crossed zero
        return f"< {1 / n_samples:g}"
    return f"{c.p_value:.2g}" if c.p_value < 0.001 else f"{c.p_value:.3f}"


_VERDICT_ICON = {"regression": "❌ regression", "worse, within tolerance": "⚠️ worse, within tolerance",
                 "worse, not significant": "worse, not significant", "better": "✅ better",
                 "better, not significant": "better, not significant", "unchanged": "unchanged"}


def render_markdown(result: GateResult) -> str:
    b = result.baseline.record
    n_reg = len(result.regressions)
    head = (f"### kdbench gate: ❌ FAIL — {n_reg} regression{'s' if n_reg != 1 else ''} in {len(result.checks)} checks"
            if n_reg else f"### kdbench gate: ✅ PASS — no regression in {len(result.checks)} checks")

    def who(side: Side) -> str:
        r = side.record
        return (f"`{_md(side.path)}` (run `{_md(r['run_id'])}`, suite `{_md(r['suite'])}`, kdbench {_md(r['kdbench_version'])}"
                f"{', ' + _md(r['git_hash'][:10]) if r.get('git_hash') else ''})")

    data = "; ".join(f"{_md(t)}: {d['rows']} examples, sha256 `{d['sha256'][:12]}`"
                     for t, d in b["datasets"].items() if t in b["results"])
    pct = round(result.confidence * 100)
    lines = [
        head, "",
        f"Baseline {who(result.baseline)}  ",
        f"Candidate {who(result.candidate)}  ",
        f"Data: {data}", "",
        f"A regression is a change for the worse that is significant (p < {result.alpha:g}) and larger than the "
        f"metric's tolerance. Tests pair the two runs example by example: exact McNemar for accuracy-like metrics, "
        f"paired bootstrap ({result.n_samples} resamples) otherwise. Δ = candidate − baseline; McNemar's b counts examples "
        f"only the candidate gets right, c those only the baseline gets right; ↑/↓: higher/lower is better.", "",
        f"| task | model | metric | baseline | candidate | Δ | {pct}% CI of Δ | p | test | tolerance | verdict |",
        "|---|---|---|---:|---:|---:|---|---:|---|---:|---|",
    ]
    order = {"regression": 0, "worse, within tolerance": 1, "worse, not significant": 2}
    for ch in sorted(result.checks, key=lambda ch: order.get(ch.verdict, 3)):
        ci = f"[{ch.ci[0]:+.4f}, {ch.ci[1]:+.4f}]" if ch.ci else "–"
        arrow = "↑" if ch.higher_is_better else "↓"
        lines.append(f"| {_md(ch.task)} | {_md(ch.model)} | {_md(ch.metric)} {arrow} | {_num(ch.baseline)} | "
                     f"{_num(ch.candidate)} | {ch.delta:+.4f} | {ci} | {_p(ch, result.n_samples)} | {_md(ch.test)} | "
                     f"{ch.tolerance:g} | {_VERDICT_ICON[ch.verdict]} |")
    if result.not_gated:
        lines += ["", "Not gated: " + ", ".join(_md(x) for x in result.not_gated) + "."]
    return "\n".join(lines) + "\n"


def unusable_markdown(reason: str) -> str:
    return f"### kdbench gate: ⚠️ unusable input\n\n{_md(reason)}\n\nThe gate did not run; exit status 2.\n"


# --------------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------------
def promote(run: str | Path, name: str, baselines_dir: str | Path = "baselines", *, reports_dir: str | Path = "reports",
            force: bool = False) -> tuple[Path, Path]:
    """Copy a run's record and samples into ``baselines_dir/NAME.json`` and
    ``NAME.samples.parquet`` (samples first, record last, each atomically). ``run`` is a run
    folder, its ``report.json``, or a run id under ``reports_dir``."""
    if not NAME_RE.match(name):
        raise KdbenchError(f"baseline name {name!r}: use letters, digits, '.', '_' and '-' only")
    src = Path(run)
    if not src.exists() and (Path(reports_dir) / str(run)).is_dir():
        src = Path(reports_dir) / str(run)
    record_path = src / RECORD_FILE if src.is_dir() else src
    record = read_record(record_path)
    samples_src = samples_path(record_path)
    samples = read_samples(samples_src, where=str(record_path))
    have = set(zip(samples["task"], samples["role"]))
    for task, by_role in record["results"].items():
        for role in by_role:
            if (task, role) not in have:
                raise KdbenchError(f"{record_path}: missing samples for {task}/{role} in {samples_src}")
    try:  # the gate's own checks (metrics recomputed from the samples...), on the run against itself
        _run_gate(record_path, record_path, {}, alpha=0.05, roles=(), ignore=(), n_samples=100, confidence=0.95, seed=0)
    except KdbenchError as e:
        raise KdbenchError(f"{record_path}: not promoted, the gate would refuse it as a baseline: {e}") from None
    out_dir = Path(baselines_dir)
    dest = out_dir / f"{name}.json"
    dest_samples = samples_path(dest)
    if dest.exists() and not force:
        raise KdbenchError(f"baseline {dest} already exists (pass --force to replace it)")
    record = {**record, "promoted": {"from": str(record_path), "name": name,
                                     "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_samples.with_name(f".{dest_samples.name}.tmp")
    shutil.copyfile(samples_src, tmp)
    tmp.replace(dest_samples)
    write_record(dest, record)
    return dest, dest_samples
