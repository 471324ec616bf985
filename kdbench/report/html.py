"""The HTML report of one run: readable on its own, figures inline."""
from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pandas as pd

from kdbench.metrics.calibration import reliability_bins
from kdbench.metrics.classification import labels_from_samples, probs_from_samples
from kdbench.metrics.samples import options
from kdbench.metrics.stats import format_p
from kdbench.report import plots
from kdbench.report.summary import fmt, fmt_ci, fmt_metric, fmt_params, percent, rows

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment() -> jinja2.Environment:
    # autoescape: model ids and suite names are user input and must render as text
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["p"] = lambda p, n_samples, test="": format_p(p, n_samples, test, name="")  # a table cell
    return env


def _cell(metric: dict | None) -> str:
    if metric is None:
        return "–"
    ci = metric["ci"]
    return f"{metric['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _kd_vs_baseline(record: dict, task: str, pair: dict) -> str:
    """One sentence on what KD bought: the family's ``*_difference`` with its CI and its test
    (exact McNemar for classifiers, a paired-bootstrap p-value otherwise)."""
    name = next((k for k in pair if k.endswith("_difference")), None)
    if name is None or not pair[name].get("ci"):
        return ""
    metric = name.removesuffix("_difference")
    diff = pair[name]
    p = pair.get("mcnemar_p_value") or pair.get(f"{name}_p_value") or pair.get(f"{metric}_p_value")
    points = percent(record, task, metric)
    scale, unit, spec = (100.0, " points", "+.1f") if points else (1.0, "", "+.3f")
    lo, hi = diff["ci"]
    text = (f"KD student − baseline {metric} = {format(diff['value'] * scale, spec)}{unit} "
            f"(95% CI {format(lo * scale, spec)} to {format(hi * scale, spec)})")
    if p:
        test = "exact McNemar" if "mcnemar_p_value" in pair else "paired bootstrap"
        verdict = "significant" if p["value"] < 0.05 else "not significant"
        n_samples = int(options(record, task).get("bootstrap_samples", 1000))
        text += f"; {test} {format_p(p['value'], n_samples, test)} ({verdict} at 0.05)"
    return text + "."


def _task_view(record: dict, task: str, samples: pd.DataFrame) -> dict:
    cfg = record["config"]
    results, pairs = record["results"][task], record["pairs"].get(task, {})
    roles = list(results)
    view_rows, points = [], []
    header = []
    for r in (r for r in rows(record) if r["task"] == task):
        # the main score, then the kind's report columns (kdbench.metrics.spec.Kind.columns)
        header = [r["metric"], *(n for n, _, _ in r["columns"]), *(n if n.endswith("_vs_teacher") else f"{n} vs teacher" for n, _, _ in r["pair_columns"])]
        headline_cells = [fmt_ci(r["value"], r["ci"], pct=r["pct"])]
        headline_cells += [fmt_metric(m, pct) for _, m, pct in [*r["columns"], *r["pair_columns"]]]
        view_rows.append({**r, "headline_cells": headline_cells, "params_s": fmt_params(r["params"]),
                          "lat1": fmt(r["latency_ms_b1"], ".2f"), "lat32": fmt(r["latency_ms_b32"], ".3f"),
                          "tput": fmt(r["throughput_eps"], ".0f")})
        if r["latency_ms_b32"] is not None and r["value"] is not None:
            points.append({"label": r["role_label"], "role": r["role"], "latency": r["latency_ms_b32"],
                           "value": r["value"], "ci": r["ci"]})
    all_metrics = [(name, [_cell(results[role].get(name)) for role in roles])
                   for name in dict.fromkeys(m for role in roles for m in results[role])]
    # loyalty to every reference: the teacher, or each teacher of an ensemble and the ensemble
    for ref in dict.fromkeys(key.split("|")[1] for key in pairs if not key.endswith("|baseline")):
        all_metrics += [(f"{name} vs {ref}", [_cell(pairs.get(f"{role}|{ref}", {}).get(name)) for role in roles])
                        for name in dict.fromkeys(m for key, ms in pairs.items() if key.endswith(f"|{ref}") for m in ms)]
    bins = {}
    for role, part in samples[samples["task"] == task].groupby("role", sort=False):
        if part["label"].isna().all() or not len(part["probs"].iloc[0]):  # not a classifier
            continue
        where = f"{task}/{role}"
        bins[role] = reliability_bins(probs_from_samples(part, where), labels_from_samples(part, where),
                                      cfg["eval"]["ece_bins"])
    headline = view_rows[0]["metric"] if view_rows else "score"
    spec = record.get("speculative", {}).get(task)
    curve = record.get("curves", {}).get(task)
    # the headline as the curves have it (the task's first metric)
    curve_metric = curve and next(iter(next(iter(curve["roles"].values()))[0]["metrics"]), headline)
    return {
        "name": task, "dataset": record["datasets"][task], "headline": headline, "header": header, "rows": view_rows,
        "roles": roles, "all_metrics": all_metrics,
        "kd_vs_baseline": _kd_vs_baseline(record, task, pairs.get("student|baseline", {})),
        "reliability_svg": plots.reliability_diagram(bins, f"Reliability — {task}") if bins else "",
        "latency_svg": plots.score_vs_latency(points, headline, f"{headline} vs latency — {task}") if points else "",
        "speculative": spec and {**spec, "rows_view": _speculative_rows(spec)},
        "curves": curve and {**curve, "svg": plots.training_curves(curve, curve_metric, f"Training curves — {task}")},
    }


def _speculative_rows(spec: dict) -> list[dict]:
    """One row per (engine, draft) of the record's ``speculative`` entry of a task."""
    out = []
    for engine, measured in spec["engines"].items():
        alone = measured["target_alone"]
        for role, d in measured["drafts"].items():
            out.append({"engine": engine, "draft": role, "alone": fmt(alone["tokens_per_s"], ".2f"),
                        "with": fmt(d["tokens_per_s"], ".2f"), "speedup": fmt(d["speedup"], ".2f"),
                        "per_call": fmt(d["tokens_per_target_call"], ".2f"),
                        "accepted": fmt(d["accepted_tokens_per_step"], ".2f"),
                        "identical": f"{d['identical_rows']}/{d['rows']}", "lossless": d["identical_outputs"]})
    return out


def render_run(record: dict, samples: pd.DataFrame) -> str:
    details = {k: record.get(k) for k in ("config", "environment", "durations", "datasets", "efficiency")}
    ev = record["config"]["eval"]
    return environment().get_template("run.html").render(
        record=record, tasks=[_task_view(record, t, samples) for t in record["results"]],
        details=json.dumps(details, indent=2), confidence=ev["confidence"], bootstrap=ev["bootstrap_samples"],
        ece_bins=ev["ece_bins"],
    )
