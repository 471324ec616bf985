"""Static HTML leaderboard rebuilt from every run record under ``reports/``."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from kdbench.report.html import environment
from kdbench.report.record import find_runs
from kdbench.report.summary import fmt, fmt_params, rows


def build(reports_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/index.html``: per task, one row per (run, model), best score first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[dict]] = {}
    runs = find_runs(reports_dir)
    for run_dir, record in runs:
        href = os.path.relpath(run_dir / "report.html", out_dir)
        for r in rows(record):
            half = (r["ci"][1] - r["ci"][0]) / 2 * 100 if r["ci"] else None
            by_task.setdefault(r["task"], []).append({
                **r, "href": href,
                "value_pct": fmt(None if r["value"] is None else r["value"] * 100, ".1f"), "ci_half": fmt(half, ".1f"),
                "ece_s": fmt(r["ece"], ".3f"), "ll_s": fmt(r["label_loyalty"], ".3f"),
                "pl_s": fmt(r["probability_loyalty"], ".3f"), "params_s": fmt_params(r["params"]),
                "lat_s": fmt(r["latency_ms_b32"], ".3f"),
            })
    for task_rows in by_task.values():
        task_rows.sort(key=lambda r: -(r["value"] if r["value"] is not None else float("-inf")))
    html = environment().get_template("leaderboard.html").render(
        by_task=by_task, runs=len(runs), source=str(reports_dir),
        built=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    index = out_dir / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(html)
    os.replace(tmp, index)
    return index
