"""The HTML report of one run: readable on its own, figures inline."""
from __future__ import annotations

import json
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from kdbench.metrics.calibration import reliability_bins
from kdbench.report import plots
from kdbench.report.summary import fmt, fmt_ci, fmt_params, rows

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment() -> jinja2.Environment:
    # autoescape: model ids and suite names are user input and must render as text
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                              lstrip_blocks=True)


def _task_view(record: dict, task: str, samples: pd.DataFrame) -> dict:
    cfg = record["config"]
    spec = cfg.get("task_specs", {}).get(task, {})
    metrics = spec.get("metrics") or list(next(iter(record["results"][task].values())))
    pair_metrics = spec.get("pair_metrics") or []
    view_rows = []
    points = []
    for r in (r for r in rows(record) if r["task"] == task):
        res = record["results"][task][r["role"]]
        pair = record["pairs"].get(task, {}).get(f"{r['role']}|teacher", {})
        view_rows.append({
            **r,
            "metric_cells": [fmt_ci(res[m]["value"], res[m]["ci"], pct=m == "accuracy") if m in res else "–" for m in metrics],
            "pair_cells": [fmt_ci(pair[m]["value"], pair[m]["ci"], pct=False) if m in pair else "–" for m in pair_metrics],
            "params": fmt_params(r["params"]), "lat1": fmt(r["latency_ms_b1"], ".2f"),
            "lat32": fmt(r["latency_ms_b32"], ".3f"), "tput": fmt(r["throughput_eps"], ".0f"),
        })
        if r["latency_ms_b32"] is not None and r["value"] is not None:
            points.append({"label": r["role_label"], "role": r["role"], "latency": r["latency_ms_b32"],
                           "value": r["value"], "ci": r["ci"]})
    bins = {}
    for role, part in samples[samples["task"] == task].groupby("role", sort=False):
        if part["label"].isna().all():
            continue
        probs = np.array(part["probs"].tolist(), dtype=np.float64)
        bins[role] = reliability_bins(probs, part["label"].to_numpy(dtype=np.int64), cfg["eval"]["ece_bins"])
    headline = view_rows[0]["metric"] if view_rows else "score"
    return {
        "name": task, "dataset": record["datasets"][task], "metrics": metrics, "pair_metrics": pair_metrics,
        "rows": view_rows,
        "reliability_svg": plots.reliability_diagram(bins, f"Reliability — {task}") if bins else "",
        "latency_svg": plots.score_vs_latency(points, headline, f"{headline} vs latency — {task}") if points else "",
    }


def render_run(record: dict, samples: pd.DataFrame) -> str:
    details = {k: record.get(k) for k in ("config", "environment", "durations", "datasets", "efficiency")}
    ev = record["config"]["eval"]
    return environment().get_template("run.html").render(
        record=record, tasks=[_task_view(record, t, samples) for t in record["results"]],
        details=json.dumps(details, indent=2), confidence=ev["confidence"], bootstrap=ev["bootstrap_samples"],
        ece_bins=ev["ece_bins"],
    )
