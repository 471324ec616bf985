"""The CI regression gate: a candidate run against a baseline run record, metric by metric, with
paired tests on the two runs' per-unit samples, for every task family.

For every (task, model, metric) of the baseline record (``results`` and the ``MODEL|REFERENCE`` pair
metrics), the metric's spec (:mod:`kdbench.metrics.spec`) says how: its predictions kind rebuilds
the per-unit table of each run from ``samples.parquet`` (never a model), the metric is recomputed
and checked against the record's value, the units (examples, sentences, queries, documents) are
paired by id, and the spec's paired test runs: exact McNemar for per-unit 0/1 outcomes, else the
paired bootstrap (both runs on the same resamples of the units).

The p-values are corrected for the number of checks of the run (Holm by default, ``--correction
none|holm|bonferroni``). A **regression** is a change for the worse that is significant (corrected
p < alpha) *and* larger than the metric's tolerance (``--tolerance METRIC=DELTA``, absolute, or
``METRIC=15%``, relative to the baseline; default 0). Efficiency figures (``latency_ms_b32``...) are
gated only with a relative tolerance, and only when both runs were measured on the same device
(no p-value: timing has no per-unit samples). Exit status: 0 pass, 1 regression, 2 unusable input
(missing file, metric, role or samples, NaN, schema or data-hash mismatch, runs not comparable),
always with a one-line reason. ``kdbench baseline promote`` writes a baseline.
"""
from __future__ import annotations

import fnmatch
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kdbench import names
from kdbench.errors import KdbenchError
from kdbench.fsio import within, write_atomic
from kdbench.metrics import lm
from kdbench.metrics import spec as metric_spec
from kdbench.metrics.samples import Side, matches, options, read_side, tables
from kdbench.metrics.stats import adjust_p_values, format_p
from kdbench.report import compare
from kdbench.report.record import RECORD_FILE, read_record, read_samples, samples_path, write_record

EXIT_PASS, EXIT_REGRESSION, EXIT_UNUSABLE = 0, 1, 2
CORRECTIONS = ("holm", "bonferroni", "none")
# efficiency figure -> higher is better (gated only with a relative --tolerance, never across hardware)
EFFICIENCY = {"latency_ms_b1": False, "latency_ms_b32": False, "throughput_eps": True, "peak_rss_mb": False,
              "params": False}



# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------
def resolve_record_path(path: str | Path, baselines_dir: str | Path = "baselines") -> Path:
    """A run folder, a ``report.json``, a baseline ``NAME.json``, or a bare baseline name."""
    p = Path(path)
    if p.is_dir():
        return p / RECORD_FILE
    if not p.exists() and p.suffix == "" and not names.problem(str(path)):
        named = within(baselines_dir, f"{path}.json")
        if named.exists():
            return named
    return p


def load_side(path: str | Path, label: str) -> Side:
    return read_side(resolve_record_path(path), label)


# --------------------------------------------------------------------------------------------------
# checks and the result
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    """How much worse a metric may get: ``amount`` in its own units, or as a fraction of the baseline
    value (``relative``)."""

    amount: float
    relative: bool = False

    def allowed(self, baseline: float) -> float:
        return self.amount * abs(baseline) if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"


@dataclass
class Check:
    task: str
    model: str  # role, or "student|teacher" for a pair metric
    metric: str
    baseline: float
    candidate: float
    delta: float  # candidate − baseline
    ci: list[float] | None  # CI of delta
    p_value: float | None  # None: an efficiency figure (no per-unit samples, tolerance only)
    test: str
    tolerance: Tolerance
    higher_is_better: bool
    p_corrected: float | None = None
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
    correction: str = "holm"
    not_gated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "regression"]

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressions else EXIT_PASS

    def markdown(self) -> str:
        return render_markdown(self)


def parse_tolerances(items: Iterable[str]) -> dict[str, Tolerance]:
    """``["accuracy=0.01", "latency_ms_b32=+15%"]`` → absolute and relative tolerances."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        relative = value.endswith("%")
        try:
            amount = float(value.removesuffix("%").removeprefix("+"))
        except ValueError:
            amount = float("nan")
        if not sep or not name or not math.isfinite(amount) or amount < 0:
            raise KdbenchError(f"--tolerance {item!r}: expected METRIC=DELTA (DELTA ≥ 0 in the metric's units) or "
                               "METRIC=P% (how much worse than the baseline, in percent)")
        out[name] = Tolerance(amount / 100 if relative else amount, relative)
    return out


def _verdict(c: Check, alpha: float) -> str:
    worse = c.worse_by > c.tolerance.allowed(c.baseline)
    if c.p_value is None:  # efficiency: the tolerance alone decides
        if c.worse_by > 0:
            return "regression" if worse else "worse, within tolerance"
        return "better" if c.worse_by < 0 else "unchanged"
    significant = c.p_corrected < alpha
    if c.worse_by > 0:
        if significant and worse:
            return "regression"
        return "worse, within tolerance" if significant else "worse, not significant"
    if c.worse_by < 0:
        return "better" if significant else "better, not significant"
    return "unchanged"


def run_gate(
    baseline: str | Path,
    candidate: str | Path,
    tolerances: dict[str, Tolerance] | None = None,
    *,
    alpha: float = 0.05,
    roles: Sequence[str] = (),
    ignore: Sequence[str] = (),
    metrics: Sequence[str] = (),
    correction: str = "holm",
    n_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    markdown: str | Path | None = None,
) -> GateResult:
    """Compare ``candidate`` with ``baseline`` (paths to records, run folders or baseline names).
    ``metrics``: names or shell patterns (``f1*``) of what to gate (all by default). Raises
    :class:`KdbenchError` (one line) on unusable input; with ``markdown`` the Markdown summary (or
    the reason the inputs are unusable) is also written there. A tolerance given as a number is
    absolute."""
    tolerances = {k: v if isinstance(v, Tolerance) else Tolerance(float(v)) for k, v in (tolerances or {}).items()}
    try:
        result = _run_gate(baseline, candidate, tolerances, alpha=alpha, roles=roles, ignore=ignore,
                           metrics=metrics, correction=correction, n_samples=n_samples, confidence=confidence,
                           seed=seed)
    except KdbenchError as e:
        if markdown is not None:
            write_atomic(Path(markdown), unusable_markdown(str(e)))
        raise
    if markdown is not None:
        write_atomic(Path(markdown), result.markdown())
    return result


@dataclass
class _Planned:
    task: str
    model: str
    spec: metric_spec.MetricSpec
    kind: str
    baseline: float
    candidate: float


class _Plan:
    """Every check to run, and what is not gated and why: all inputs are read and checked here,
    before any test runs, so unusable input fails fast."""

    def __init__(self, base: Side, cand: Side, roles, ignore, patterns):
        self.base, self.cand, self.roles, self.ignore, self.patterns = base, cand, roles, ignore, patterns
        self.checks: list[_Planned] = []
        self.not_gated: list[str] = []
        self.matched: set[str] = set()
        self.tables: dict[tuple, object] = {}

    def wanted(self, name: str, where: str) -> bool:
        if name in self.ignore:
            self.not_gated.append(f"{where}/{name} (ignored)")
            return False
        if self.patterns:
            hits = [p for p in self.patterns if fnmatch.fnmatchcase(name, p)]
            self.matched.update(hits)
            if not hits:
                self.not_gated.append(f"{where}/{name} (not in --metrics)")
                return False
        return True

    def table(self, side: Side, task: str, model: str, kind_name: str):
        key = (side.label, task, model)
        if key not in self.tables:
            ids = None if side is self.base else list(self.table(self.base, task, model, kind_name)[1])
            t = tables(side, task, model, kind_name, ids)
            rows = side.rows(task, model.split("|")[0], ids)
            self.tables[key] = (t, list(rows.index), rows["label"])
            if side is self.cand:
                _, _, base_labels = self.table(self.base, task, model, kind_name)
                if not _same_labels(base_labels, rows["label"]):
                    raise KdbenchError(f"{task}/{model}: the baseline's and the candidate's gold labels differ")
        return self.tables[key]

    def add(self, task: str, model: str, name: str, kind_of: metric_spec.Kind, kind_name: str, b_m: dict,
            c_metrics: dict) -> None:
        where = f"{task}/{model}"
        if not self.wanted(name, where):
            return
        spec = kind_of.find(name)
        if spec is None and lm.on_generated_text(name):
            self.not_gated.append(f"{where}/{name} (on generated text: its per-token values are not in the samples)")
            return
        if spec is None:
            raise KdbenchError(f"no paired test for metric {name!r} ({where}, kind {kind_of.name}); pass --ignore "
                               f"{name} to leave it out")
        if not spec.gated:
            why = "a fitted parameter with no better direction" if spec.test == metric_spec.NO_TEST else \
                "no better direction is known for it"
            self.not_gated.append(f"{where}/{name} ({why})")
            return
        c_m = c_metrics.get(name)
        if c_m is None:
            raise KdbenchError(f"candidate has no metric {where}/{name} (missing metric; the baseline has it)")
        for side in (self.base, self.cand):
            table, _, _ = self.table(side, task, model, kind_name)
            if not table.has(name):
                raise KdbenchError(f"{side.label} {side.path}: the samples of {where} lack what {name} is computed "
                                   f"from (a record of an older kdbench?); re-run it, or pass --ignore {name}")
        self.checks.append(_Planned(task, model, spec, kind_name, b_m["value"], c_m["value"]))


def _same_labels(a, b) -> bool:
    a, b = a.astype(object).where(a.notna(), None).tolist(), b.astype(object).where(b.notna(), None).tolist()
    return [None if x is None else str(x) for x in a] == [None if x is None else str(x) for x in b]


def _plan(base: Side, cand: Side, roles, ignore, patterns) -> _Plan:
    b_rec, c_rec = base.record, cand.record
    plan = _Plan(base, cand, roles, ignore, patterns)
    for task, by_role in b_rec["results"].items():
        if task not in c_rec["results"]:
            raise KdbenchError(f"candidate has no results for task {task!r} (the baseline has them)")
        why = compare.reason(b_rec, c_rec, task)
        if why:
            raise KdbenchError(f"runs not comparable on {why}")
        kind_name = base.kind(task)
        if cand.kind(task) != kind_name:
            raise KdbenchError(f"runs not comparable on {task}: predictions of kind {kind_name} vs {cand.kind(task)}")
        k = metric_spec.kind(kind_name)
        for role in roles:
            if role not in by_role:
                raise KdbenchError(f"--role {role}: the baseline has no model {role!r} on {task}")
        for role in (r for r in by_role if not roles or r in roles):
            if role not in c_rec["results"][task]:
                raise KdbenchError(f"candidate has no model {role!r} on {task} (the baseline has it)")
            for name, b_m in by_role[role].items():
                plan.add(task, role, name, k, kind_name, b_m, c_rec["results"][task][role])
        for pair, b_ms in b_rec["pairs"].get(task, {}).items():
            if roles and pair.split("|")[0] not in roles:
                continue
            comparison = set(k.comparison_names())
            for name, b_m in b_ms.items():
                if name in comparison:
                    plan.not_gated.append(f"{task}/{pair}/{name} (a comparison statistic, not a metric of one model)")
                    continue
                plan.add(task, pair, name, metric_spec.kind(k.pair), kind_name, b_m,
                         c_rec["pairs"].get(task, {}).get(pair, {}))
    return plan


def _efficiency_checks(plan: _Plan, tolerances: dict[str, Tolerance], roles) -> list[Check]:
    """Efficiency figures with a relative tolerance, per model, when both runs measured them on the
    same hardware (``compare.efficiency_comparable``) and task."""
    b_rec, c_rec = plan.base.record, plan.cand.record
    b_eff, c_eff = b_rec.get("efficiency") or {}, c_rec.get("efficiency") or {}
    measured = [n for n in EFFICIENCY if any(n in e for e in b_eff.values())]
    if measured and not compare.efficiency_comparable(b_rec, c_rec):  # quality is gated across hardware, latency never
        plan.not_gated.append(f"efficiency figures (baseline on {compare.hardware(b_rec)}, candidate on "
                              f"{compare.hardware(c_rec)}: not comparable across hardware)")
        return []
    named = [n for n in measured if n in tolerances]
    for n in measured:
        if n not in tolerances:
            plan.not_gated.append(f"efficiency/{n} (timing is gated only with a relative --tolerance {n}=P%)")
    if not named:
        return []
    if b_rec.get("efficiency_task") != c_rec.get("efficiency_task"):
        plan.not_gated += [f"efficiency/{n} (timed on other tasks' inputs)" for n in named]
        return []
    out = []
    for role, figures in b_eff.items():
        if roles and role not in roles:
            continue
        for n in named:
            if n not in figures or not plan.wanted(n, f"efficiency/{role}"):
                continue
            c_val = c_eff.get(role, {}).get(n)
            if c_val is None:
                raise KdbenchError(f"candidate has no efficiency figure {role}/{n} (the baseline has it)")
            b_val = figures[n]
            out.append(Check("efficiency", role, n, b_val, c_val, c_val - b_val, None, None, "relative tolerance",
                             tolerances[n], EFFICIENCY[n]))
    return out


def _run_gate(baseline, candidate, tolerances, *, alpha, roles, ignore, metrics, correction, n_samples, confidence,
              seed) -> GateResult:
    if not 0 < alpha < 1:
        raise KdbenchError(f"--alpha {alpha}: must be between 0 and 1")
    if correction not in CORRECTIONS:
        raise KdbenchError(f"--correction {correction}: use one of {', '.join(CORRECTIONS)}")
    base = load_side(baseline, "baseline")
    cand = load_side(candidate, "candidate")
    b_metrics = {m for t in base.record["results"].values() for ms in t.values() for m in ms}
    b_metrics |= {m for t in base.record["pairs"].values() for ms in t.values() for m in ms}
    for name, tol in tolerances.items():
        if name in EFFICIENCY:
            if not tol.relative:
                raise KdbenchError(f"--tolerance {name}: efficiency figures take a relative tolerance ({name}=15%)")
        elif name not in b_metrics:
            raise KdbenchError(f"--tolerance {name}: the baseline has no metric {name!r}")
    plan = _plan(base, cand, roles, ignore, metrics)
    efficiency = _efficiency_checks(plan, tolerances, roles)
    unmatched = [p for p in metrics if p not in plan.matched]
    if unmatched:
        raise KdbenchError(f"--metrics {unmatched[0]}: matches no metric of the baseline")
    if not plan.checks and not efficiency:
        raise KdbenchError("nothing to gate: the baseline has no metric with a paired test")

    for p in plan.checks:  # the samples must back both records before anything is tested
        for side, val in ((base, p.baseline), (cand, p.candidate)):
            table, _, _ = plan.table(side, p.task, p.model, p.kind)
            got = p.spec.value(metric_spec.Resampling(0, confidence, seed, options(side.record, p.task)).context(table))
            if not matches(got, val):
                raise KdbenchError(f"{side.label} {side.path}: samples do not match the record: {p.task}/{p.model}/"
                                   f"{p.spec.name} is {val:.6g} in the record, {got:.6g} from the samples")

    checks = []
    for p in plan.checks:
        how = metric_spec.Resampling(n_samples, confidence, seed, options(base.record, p.task))
        t = metric_spec.paired_test(p.spec, plan.table(cand, p.task, p.model, p.kind)[0],
                                    plan.table(base, p.task, p.model, p.kind)[0], how)
        checks.append(Check(p.task, p.model, p.spec.name, p.baseline, p.candidate, p.candidate - p.baseline, t.ci,
                            t.p_value, t.test, tolerances.get(p.spec.name, Tolerance(0.0)), p.spec.higher_is_better))
    adjusted = adjust_p_values([c.p_value for c in checks], correction)
    for c, q in zip(checks, adjusted):
        c.p_corrected = q
    checks += efficiency
    for c in checks:
        c.verdict = _verdict(c, alpha)
    notes = [n for n in [_trainer_note(base.record, cand.record)] if n]
    return GateResult(base, cand, checks, alpha, confidence, n_samples, correction, plan.not_gated, notes)


def _trainer_note(b: dict, c: dict) -> str | None:
    rb, rc = b.get("trainer_revision"), c.get("trainer_revision")
    if rb and rc and rb != rc:
        return (f"The baseline was trained by trainer revision `{rb}` and the candidate by `{rc}`: differences may "
                "come from the change to the trainer, not the candidate's setting. If the change is meant to move the "
                "numbers, re-promote the baselines in the same commit (`make baselines`).")
    return None


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------
def _md(text) -> str:
    """A table cell: no pipes, no HTML, one line."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\r", " ").replace("\n", " "))


def _num(x: float) -> str:
    return f"{x:.4f}"


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
    corrected = {"holm": "Holm-corrected", "bonferroni": "Bonferroni-corrected", "none": "uncorrected"}[result.correction]
    n_tests = sum(c.p_value is not None for c in result.checks)
    lines = [
        head, "",
        f"Baseline {who(result.baseline)}  ",
        f"Candidate {who(result.candidate)}  ",
        f"Data: {data}", "",
        *(f"⚠️ {_md(n)}" for n in result.notes), *([""] if result.notes else []),
        f"A regression is a change for the worse that is significant ({corrected} p < {result.alpha:g} over the "
        f"{n_tests} tests) and larger than the metric's tolerance. Tests pair the two runs unit by unit (examples, "
        f"sentences, queries, documents): exact McNemar for per-unit right/wrong outcomes, paired bootstrap "
        f"({result.n_samples} resamples) otherwise; efficiency figures have a relative tolerance and no test. "
        f"Δ = candidate − baseline; McNemar's b counts units only the candidate gets right, c those only the baseline "
        f"gets right; ↑/↓: higher/lower is better.", "",
        f"| task | model | metric | baseline | candidate | Δ | {pct}% CI of Δ | p | p ({result.correction}) | test | "
        "tolerance | verdict |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---|---:|---|",
    ]
    order = {"regression": 0, "worse, within tolerance": 1, "worse, not significant": 2}
    for ch in sorted(result.checks, key=lambda ch: order.get(ch.verdict, 3)):
        ci = f"[{ch.ci[0]:+.4f}, {ch.ci[1]:+.4f}]" if ch.ci else "–"
        arrow = "↑" if ch.higher_is_better else "↓"
        lines.append(f"| {_md(ch.task)} | {_md(ch.model)} | {_md(ch.metric)} {arrow} | {_num(ch.baseline)} | "
                     f"{_num(ch.candidate)} | {ch.delta:+.4f} | {ci} | {format_p(ch.p_value, result.n_samples, ch.test, name='')} | "
                     f"{format_p(ch.p_corrected, result.n_samples, ch.test, name='')} | {_md(ch.test)} | {ch.tolerance} | "
                     f"{_VERDICT_ICON[ch.verdict]} |")
    if result.not_gated:
        lines += ["", "Not gated: " + ", ".join(_md(x) for x in result.not_gated) + "."]
    return "\n".join(lines) + "\n"


def unusable_markdown(reason: str) -> str:
    return f"### kdbench gate: ⚠️ unusable input\n\n{_md(reason)}\n\nThe gate did not run; exit status 2.\n"


# --------------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------------
def make_baseline(suite: str, name: str | None = None, overrides: Sequence[str] = (),
                  baselines_dir: str | Path = "baselines") -> tuple[Path, Path]:
    """Run ``kdbench train-and-eval`` of ``suite`` (with ``overrides``) in a scratch folder under
    ``baselines_dir`` and promote it to ``NAME`` (the suite's name by default), replacing the
    baseline there: what ``make baselines`` does for every suite."""
    from kdbench.config import load_suite
    from kdbench.distill.run import train_and_eval

    cfg = load_suite(suite, list(overrides))
    name = name or cfg.name
    names.check(name, "baseline name", where="--name: ")
    scratch = within(baselines_dir, f".make-{name}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        result = train_and_eval(cfg, reports_dir=scratch, leaderboard_dir=None)
        return promote(result.run_dir, name, baselines_dir, force=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def promote(run: str | Path, name: str, baselines_dir: str | Path = "baselines", *, reports_dir: str | Path = "reports",
            force: bool = False) -> tuple[Path, Path]:
    """Copy a run's record and samples into ``baselines_dir/NAME.json`` and
    ``NAME.samples.parquet`` (samples first, record last, each atomically). ``run`` is a run
    folder, its ``report.json``, or a run id under ``reports_dir``."""
    names.check(name, "baseline name", where="--name: ")
    src = Path(run)
    if not src.exists() and not names.problem(str(run), "run id") and within(reports_dir, str(run)).is_dir():
        src = within(reports_dir, str(run))
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
        _run_gate(record_path, record_path, {}, alpha=0.05, roles=(), ignore=(), metrics=(), correction="holm",
                  n_samples=100, confidence=0.95, seed=0)
    except KdbenchError as e:
        raise KdbenchError(f"{record_path}: not promoted, the gate would refuse it as a baseline: {e}") from None
    out_dir = Path(baselines_dir)
    dest = within(out_dir, f"{name}.json")
    dest_samples = samples_path(dest)
    if dest.exists() and not force:
        raise KdbenchError(f"baseline {dest} already exists (pass --force to replace it)")
    record = {**record, "promoted": {"from": str(record_path), "name": name,
                                     "at": datetime.now(UTC).isoformat(timespec="seconds")}}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_samples.with_name(f".{dest_samples.name}.tmp")
    shutil.copyfile(samples_src, tmp)
    tmp.replace(dest_samples)
    write_record(dest, record)
    return dest, dest_samples
