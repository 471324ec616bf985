"""Figures for reports, rendered by matplotlib to inline SVG (the HTML opens from disk alone)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"teacher": "#1f4e79", "student": "#c55a11", "baseline": "#7f7f7f"}


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog so it can sit inside HTML


def reliability_diagram(bins_by_role: dict[str, dict], title: str) -> str:
    """Accuracy against mean confidence per equal-width bin, one line per model; the diagonal is
    perfect calibration. Marker area follows the bin's share of examples."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1, label="perfect calibration")
    for role, bins in bins_by_role.items():
        filled = bins["count"] > 0
        share = bins["count"][filled] / bins["count"].sum()
        color = COLORS.get(role)
        ax.plot(bins["confidence"][filled], bins["accuracy"][filled], "-", color=color, lw=1.2, label=role)
        ax.scatter(bins["confidence"][filled], bins["accuracy"][filled], s=20 + 400 * share, color=color, alpha=0.6)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-label)", ylabel="accuracy", title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _svg(fig)


def score_vs_latency(points: list[dict], metric: str, title: str) -> str:
    """One point per model: ``{"label", "role", "latency", "value", "ci"}``; error bars are CIs."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for p in points:
        low, high = p["ci"] or (p["value"], p["value"])
        ax.errorbar(p["latency"], p["value"], yerr=[[p["value"] - low], [high - p["value"]]], fmt="o", capsize=4,
                    color=COLORS.get(p["role"]), label=p["label"])
    ax.set_xscale("log")
    ax.set(xlabel="latency per example at batch 32 (ms, log scale)", ylabel=metric, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _svg(fig)

