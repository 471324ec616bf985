"""The table printed at the end of a run."""
from __future__ import annotations

from kdbench.report.summary import fmt, fmt_ci, fmt_params, rows


def _short(name: str, m: dict | None, pct: bool) -> str:
    if m is None:
        return f"{name} –"
    return f"{name} {m['value'] * 100:.1f}" if pct else f"{name} {m['value']:.3f}"


def format_run(record: dict) -> str:
    header = ["task", "model", "metric", "score ± 95% CI", "also", "vs teacher", "params", "ms/ex b1", "ms/ex b32"]
    lines = [header]
    for r in rows(record):
        also = ", ".join(_short(*c) for c in r["columns"]) or "–"
        vs_teacher = ", ".join(_short(*c) for c in r["pair_columns"] if c[1] is not None) or "–"
        lines.append([
            r["task"], r["role_label"], r["metric"] + (" %" if r["pct"] else ""),
            fmt_ci(r["value"], r["ci"], pct=r["pct"]), also, vs_teacher, fmt_params(r["params"]),
            fmt(r["latency_ms_b1"], ".2f"), fmt(r["latency_ms_b32"], ".3f"),
        ])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) if i < 6 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
