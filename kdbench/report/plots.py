"""Figures for reports, rendered by matplotlib to inline SVG (the HTML opens from disk alone)."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import matplotlib.ticker

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



def pareto_front(points: list[dict]) -> list[dict]:
    """Points no other point beats on both axes (lower ``x`` cost, higher ``y`` score), by ``x``."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p["x"], -p["y"])):
        if p["y"] > best:
            front.append(p)
            best = p["y"]
    return front


def pareto(points: list[dict], xlabel: str, ylabel: str, title: str) -> str:
    """Score against a cost, one point per model: ``{"label", "role", "x", "y", "ci"}``; error bars
    are the score's CI; the dashed line joins the Pareto front (no model is both cheaper and better)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    seen = set()
    for p in points:
        low, high = p.get("ci") or (p["y"], p["y"])
        role = p["role"] if p["role"] in COLORS else "other"
        ax.errorbar(p["x"], p["y"], yerr=[[max(p["y"] - low, 0)], [max(high - p["y"], 0)]], fmt="o", capsize=3,
                    color=COLORS.get(role, "#6a3d9a"), alpha=0.85, label=None if role in seen else role)
        seen.add(role)
        ax.annotate(p["label"], (p["x"], p["y"]), textcoords="offset points", xytext=(4, 4), fontsize=6, color="#444")
    front = pareto_front(points)
    if len(front) > 1:
        ax.step([p["x"] for p in front], [p["y"] for p in front], where="post", ls="--", color="#999", lw=1,
                label="Pareto front")
    if all(p["x"] > 0 for p in points) and max(p["x"] for p in points) > 3 * min(p["x"] for p in points):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(  # label 2× and 5× ticks only
            lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _svg(fig)


def capacity_gap(curves: list[dict], metric: str, title: str, png: Path | None = None) -> str:
    """Student score against teacher size, one line per curve (a student) ``{"label", "points":
    [{"teacher", "teacher_params", "value", "ci", "teacher_value"}], "best_teacher"}``; teachers' own
    scores dashed; the best teacher circled (a curve without the key: its highest point; null: no
    teacher helps, nothing circled). ``png``: also write the figure there (a sweep folder keeps both formats)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for i, curve in enumerate(curves):
        pts = sorted(curve["points"], key=lambda p: p["teacher_params"])
        x = [p["teacher_params"] for p in pts]
        y = [p["value"] for p in pts]
        err = [[max(v - (p.get("ci") or (v, v))[0], 0) for v, p in zip(y, pts)],
               [max((p.get("ci") or (v, v))[1] - v, 0) for v, p in zip(y, pts)]]
        color = f"C{i % 10}"
        ax.errorbar(x, y, yerr=err, fmt="-o", capsize=3, color=color, label=f"student — {curve['label']}")
        tv = [(p["teacher_params"], p["teacher_value"]) for p in pts if p.get("teacher_value") is not None]
        if tv:
            ax.plot(*zip(*tv), ls="--", marker="s", ms=4, color=color, alpha=0.5, label=f"teachers — {curve['label']}")
        if "best_teacher" not in curve:
            best = max(pts, key=lambda p: p["value"])
        else:
            best = next((p for p in pts if p["teacher"] == curve["best_teacher"]), None)
        if best is not None:
            ax.scatter([best["teacher_params"]], [best["value"]], s=160, facecolors="none", edgecolors=color, lw=1.5)
    ax.set_xscale("log")
    _parameter_axis(ax.xaxis, [p["teacher_params"] for c in curves for p in c["points"]])
    ax.set(xlabel="teacher parameters (log scale)", ylabel=metric, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    if png is not None:
        fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    return _svg(fig)


def _parameter_axis(axis, counts) -> None:
    """Short labels (``20M``) on a log axis of parameter counts: every minor tick on a narrow range
    (a truncated family), else only the 2× and 5× ones, so the labels do not run into each other."""
    narrow = max(counts) < 3 * min(counts)
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e6:g}M"))
    axis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v / 1e6:g}M" if narrow or f"{v:e}"[0] in "25" else ""))


def capacity_law(fit: dict, title: str, png: Path | None = None) -> str:
    """The optimal teacher size against the student size (log-log), one point per student a teacher
    helps, with the least-squares line and the constant-ratio line of ``fit``
    (:func:`kdbench.sweeps.capacity_law.fit_law`); its limits, if any, under the title."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    pts = fit["points"]
    if pts:
        x = np.array([p["student_params"] for p in pts], dtype=np.float64)
        ax.scatter(x, [p["teacher_params"] for p in pts], color="C0", zorder=3, label="optimal teacher")
        span = np.geomspace(x.min() / 1.2, x.max() * 1.2, 20)
        if "slope" in fit:
            ax.plot(span, np.exp(fit["intercept"]) * span ** fit["slope"], color="C0",
                    label=f"fit: T* ∝ S^{fit['slope']:.2f}")
        ax.plot(span, fit["ratio"] * span, ls="--", color="C1", label=f"T* = {fit['ratio']:.2f}·S")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _parameter_axis(ax.xaxis, x)
        _parameter_axis(ax.yaxis, [p["teacher_params"] for p in pts])
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no student with a best teacher", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="student parameters (log scale)", ylabel="optimal teacher parameters (log scale)")
    ax.set_title(title + ("" if fit["enough_data"] else "\n(too little data to show a law)"), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if png is not None:
        fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    return _svg(fig)


# the pair metric(s) a training curve shows next to the task's headline: the loyalty to the teacher
CURVE_PAIR_METRICS = ("kl_teacher_student", "acceptance_rate", "probability_loyalty", "label_loyalty",
                      "answer_agreement", "entity_f1_vs_teacher", "regression_loyalty", "overlap_at_10")


def training_curves(curve: dict, headline: str, title: str) -> str:
    """The task's headline metric and up to two pair metrics against the teacher (``CURVE_PAIR_METRICS``
    order) against the optimiser step, one line per trained role, from a record's ``curves`` entry
    ``{"roles": {role: [{"step", "metrics": {...}, "pairs": {...}}]}}``. Perplexity and KL use a
    log scale (an untrained pruned student starts orders of magnitude away)."""
    roles = curve["roles"]
    first = next(iter(roles.values()))
    pairs = [m for m in CURVE_PAIR_METRICS if m in first[0].get("pairs", {})][:2]
    panels = [("metrics", headline)] + [("pairs", m) for m in pairs]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.4), squeeze=False)
    for ax, (kind, name) in zip(axes[0], panels):
        for role, points in roles.items():
            pts = [(p["step"], p[kind][name]) for p in points if name in p.get(kind, {})]
            if pts:
                ax.plot(*zip(*pts), "-o", ms=3, color=COLORS.get(role), label=role)
        if name in ("perplexity", "kl_teacher_student") and all(
                p[kind][name] > 0 for points in roles.values() for p in points if name in p.get(kind, {})):
            ax.set_yscale("log")
        ax.set(xlabel="optimiser step", ylabel=name if kind == "metrics" else f"{name} vs teacher")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _svg(fig)
