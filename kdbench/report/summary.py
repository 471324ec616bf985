"""The rows every view of a run shows (terminal table, HTML report, leaderboard): one per
(task, role) with the task's main score and its kind's report columns (the metric registry says
which, and how each is shown), derived from the run record alone."""
from __future__ import annotations

from kdbench.metrics import spec as metric_spec
from kdbench.metrics.samples import record_kind

ROLE_LABELS = {"teacher": "teacher", "student": "KD student", "baseline": "baseline (no KD)"}


def metric_of(record: dict, task: str, name: str, pair: bool = False) -> metric_spec.MetricSpec | None:
    """The spec of a metric of ``task`` in ``record`` (a pair metric with ``pair``), or None when the
    record's kind does not know it."""
    kind_name = record_kind(record, task) or _lm_eval_kind(record, task)
    if kind_name is None:
        return None
    k = metric_spec.kind(kind_name)
    if pair:
        if k.pair is None:
            return None
        k = metric_spec.kind(k.pair)
    return k.find(name)


def _lm_eval_kind(record: dict, task: str) -> str | None:
    # an lm-eval record without kinds: multiple choice reports kdbench's classifier metrics
    if record["config"].get("task_specs", {}).get(task, {}).get("family") != "lm_eval":
        return None
    names = {m for ms in record["results"][task].values() for m in ms}
    return "lm_eval_choice" if names & set(metric_spec.kind("classifier").names()) else "lm_eval_generation"


def main_score(record: dict, task: str) -> str:
    """The task's headline: its spec's ``main_score`` (records before it: the first metric)."""
    spec = record["config"].get("task_specs", {}).get(task, {})
    if spec.get("main_score"):
        return spec["main_score"]
    return next(iter(next(iter(record["results"][task].values()))))


def percent(record: dict, task: str, name: str, pair: bool = False) -> bool:
    spec = metric_of(record, task, name, pair)
    return bool(spec and spec.percent)


def higher_is_better(record: dict, task: str, name: str) -> bool:
    spec = metric_of(record, task, name)
    return spec is None or spec.higher_is_better is not False


def columns(record: dict, task: str) -> tuple[list[str], list[str]]:
    """The report columns of ``task`` beside its main score: its kind's own and pair columns that the
    record has (ECE, Brier, NLL and loyalty for a classifier; precision, recall... for NER)."""
    kind_name = record_kind(record, task) or _lm_eval_kind(record, task)
    if kind_name is None:
        return [], []
    k = metric_spec.kind(kind_name)
    own = {m for ms in record["results"][task].values() for m in ms}
    pairs = {m for ms in record["pairs"].get(task, {}).values() for m in ms}
    main = main_score(record, task)
    pair_columns = metric_spec.kind(k.pair).columns if k.pair else ()
    return [c for c in k.columns if c in own and c != main], [c for c in pair_columns if c in pairs]


def reference(record: dict) -> str:
    """The role loyalty is measured against: the teacher, or a multi-teacher run's ensemble."""
    models = record.get("models", {})
    return "ensemble" if "ensemble" in models and "teacher" not in models else "teacher"


def rows(record: dict) -> list[dict]:
    out = []
    ref = reference(record)
    for task, by_role in record["results"].items():
        pair = record["pairs"].get(task, {})
        name = main_score(record, task)
        own_cols, pair_cols = columns(record, task)
        for role, metrics in by_role.items():
            main = metrics.get(name)
            loyalty = pair.get(f"{role}|{ref}", {})
            agree_name = pair_cols[0] if pair_cols and pair_cols[0] in loyalty else None
            eff = record["efficiency"].get(role, {}) if task == record.get("efficiency_task") else {}
            model = record["models"].get(role, {})
            out.append({
                "run_id": record["run_id"], "suite": record["suite"], "task": task, "role": role,
                "role_label": ROLE_LABELS.get(role, role), "model": model.get("id", ""),
                "method": model.get("method", "finetune" if role == "teacher" else ""),
                "metric": name, "value": main["value"] if main else None, "ci": main["ci"] if main else None,
                "pct": percent(record, task, name),
                "columns": [(c, metrics.get(c), percent(record, task, c)) for c in own_cols],
                "pair_columns": [(c, loyalty.get(c), percent(record, task, c, pair=True)) for c in pair_cols],
                "agreement_metric": agree_name, "agreement": loyalty[agree_name]["value"] if agree_name else None,
                "params": model.get("params"),
                "latency_ms_b1": eff.get("latency_ms_b1"), "latency_ms_b32": eff.get("latency_ms_b32"),
                "throughput_eps": eff.get("throughput_eps"),
            })
    return out


def fmt(value, spec: str = ".4f", missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def fmt_ci(value, ci, pct: bool = True) -> str:
    """``86.4 ± 2.3`` (percent, half-width of the CI) or ``0.864 ± 0.023``."""
    if value is None:
        return "–"
    scale, spec = (100.0, ".1f") if pct else (1.0, ".3f")
    if not ci:
        return format(value * scale, spec)
    half = (ci[1] - ci[0]) / 2 * scale
    return f"{format(value * scale, spec)} ± {format(half, spec)}"


def fmt_metric(m: dict | None, pct: bool) -> str:
    return "–" if m is None else fmt_ci(m["value"], m["ci"], pct=pct)


def fmt_params(n) -> str:
    return "–" if n is None else f"{n / 1e6:.1f}M"
