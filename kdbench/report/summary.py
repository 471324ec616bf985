"""The rows every view of a run shows (terminal table, HTML report, leaderboard): one per
(task, role) with the headline metrics, derived from the run record alone."""
from __future__ import annotations

ROLE_LABELS = {"teacher": "teacher", "student": "KD student", "baseline": "baseline (no KD)"}
# fractions shown as percentages; everything else (perplexity, MSE, correlations...) as is
PERCENT_METRICS = {"accuracy", "exact_match", "label_loyalty", "f1", "selective_accuracy_10", "token_accuracy",
                   "precision", "recall", "answer_agreement", "top1_agreement", "acc", "acc_norm"}


def headline(metrics: dict) -> tuple[str, dict | None]:
    """The task's main metric: the first one its spec lists (accuracy for SST-2, MCC for CoLA,
    entity F1 for NER, nDCG@10 for retrieval, exact match for GSM8K, perplexity for LM)."""
    name = next(iter(metrics))
    return name, metrics.get(name)


def agreement(pair: dict) -> tuple[str | None, float | None]:
    """The pair's main teacher–student metric: label loyalty when present, else the first."""
    if not pair:
        return None, None
    name = "label_loyalty" if "label_loyalty" in pair else next(iter(pair))
    return name, pair[name]["value"]


def reference(record: dict) -> str:
    """The role loyalty is measured against: the teacher, or a multi-teacher run's ensemble."""
    models = record.get("models", {})
    return "ensemble" if "ensemble" in models and "teacher" not in models else "teacher"


def rows(record: dict) -> list[dict]:
    out = []
    ref = reference(record)
    for task, by_role in record["results"].items():
        pair = record["pairs"].get(task, {})
        for role, metrics in by_role.items():
            name, main = headline(metrics)
            loyalty = pair.get(f"{role}|{ref}", {})
            agree_name, agree = agreement(loyalty)
            eff = record["efficiency"].get(role, {}) if task == record.get("efficiency_task") else {}
            model = record["models"].get(role, {})
            out.append({
                "run_id": record["run_id"], "suite": record["suite"], "task": task, "role": role,
                "role_label": ROLE_LABELS.get(role, role), "model": model.get("id", ""),
                "method": model.get("method", "finetune" if role == "teacher" else ""),
                "metric": name, "value": main["value"] if main else None, "ci": main["ci"] if main else None,
                "ece": metrics.get("ece", {}).get("value"),
                "pct": name in PERCENT_METRICS,
                "agreement_metric": agree_name, "agreement": agree,
                "label_loyalty": loyalty.get("label_loyalty", {}).get("value"),
                "probability_loyalty": loyalty.get("probability_loyalty", {}).get("value"),
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


def fmt_params(n) -> str:
    return "–" if n is None else f"{n / 1e6:.1f}M"
