"""The table printed at the end of a run."""
from __future__ import annotations

from kdbench.report.summary import fmt, fmt_ci, fmt_params, rows


def format_run(record: dict) -> str:
    header = ["task", "model", "metric", "score ± 95% CI", "ECE", "vs teacher", "prob. loy.", "params",
              "ms/ex b1", "ms/ex b32"]
    lines = [header]
    for r in rows(record):
        vs_teacher = "–" if r["agreement"] is None else f"{r['agreement_metric']} {r['agreement']:.3f}"
        lines.append([
            r["task"], r["role_label"], r["metric"] + (" %" if r["pct"] else ""),
            fmt_ci(r["value"], r["ci"], pct=r["pct"]), fmt(r["ece"], ".3f"),
            vs_teacher, fmt(r["probability_loyalty"], ".3f"), fmt_params(r["params"]),
            fmt(r["latency_ms_b1"], ".2f"), fmt(r["latency_ms_b32"], ".3f"),
        ])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
