"""Static HTML leaderboards rebuilt from every run record under ``reports/``.

``out_dir/index.html`` lists the suites and the runs; ``suite-<name>.html`` has one sortable,
filterable table per suite (one row per model of each run), Pareto plots of each task's score
against latency and against parameters, and capacity-gap curves where records have them;
``runs/<run-id>.html`` shows one run. Plots are SVG files in ``plots/``. Everything opens from disk
with no server; every string from a record is escaped by jinja2's autoescape (and plots are loaded
through ``<img>``, which never runs scripts).

Rows are ranked only against comparable runs: per task, the reference is the task configuration and
evaluation-data hash most runs share (:mod:`kdbench.report.compare`); a score from any other
configuration is shown greyed with the reason, sorts last and stays out of the plots.
"""
from __future__ import annotations

import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

from kdbench import names
from kdbench.errors import KdbenchError, KdbenchWarning
from kdbench.fsio import within, write_atomic
from kdbench.report import compare, plots, ranking
from kdbench.report.html import environment
from kdbench.report.runs import scan
from kdbench.report.summary import (
    ROLE_LABELS,
    columns,
    fmt,
    fmt_ci,
    fmt_params,
    higher_is_better,
    main_score,
    percent,
    reference,
)

MANIFEST = ".kdbench-leaderboard.json"  # the files this leaderboard wrote (the only ones it replaces or removes)
LOCK = ".kdbench-leaderboard.lock"  # held while a build runs
LEGACY_MARK = "<title>kdbench leaderboards</title>"  # the index of a leaderboard built before manifests


def _value(metrics: dict | None, name: str) -> float | None:
    m = (metrics or {}).get(name)
    return None if m is None else m["value"]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _model_detail(model: dict) -> str:
    layers = model.get("layer_map")
    return f"layers {', '.join(map(str, layers))} of the teacher" if layers else ""


def _method(model: dict, role: str) -> str:
    method = model.get("method") or ("finetune" if role == "teacher" else "")
    if model.get("on_policy"):
        method += f" on-policy λ={model['on_policy']['fraction']:g}"
    return f"{method} ({model['loss']})" if model.get("loss") else method


def _draft_speedup(record: dict, role: str, tasks: list[str]) -> float | None:
    """Mean over ``tasks`` of ``role``'s speed-up as the teacher's draft (record section
    ``speculative``; the hf engine where measured, else vLLM's)."""
    values = []
    for task in tasks:
        engines = record.get("speculative", {}).get(task, {}).get("engines", {})
        engine = engines.get("hf") or next(iter(engines.values()), None)
        draft = (engine or {}).get("drafts", {}).get(role)
        if draft is not None and draft.get("speedup") is not None:
            values.append(draft["speedup"])
    return _mean(values)


class _Board:
    def __init__(self, runs: list[tuple[Path, dict]], out_dir: Path):
        self.runs = runs
        self.out_dir = out_dir
        self.files: dict[str, str] = {}  # relative path -> content, the index last
        records = [r for _, r in runs]
        self.refs = compare.reference_keys(records)
        self.ref_records = compare.reference_records(records)
        self.samples = ranking.Samples()

    def note(self, record: dict, task: str) -> str:
        """'' when ``record`` is comparable with the reference on ``task``, else why not."""
        if compare.key(record, task) == self.refs[task]:
            return ""
        return (compare.reason(self.ref_records[task], record, task, ("reference", "this run"))
                or f"{task}: not the reference configuration")

    def report_href(self, run_dir: Path, from_dir: Path) -> str | None:
        report = run_dir / "report.html"
        return os.path.relpath(report, from_dir) if report.exists() else None

    # one suite ----------------------------------------------------------------------------------
    def suite_view(self, suite: str, runs: list[tuple[Path, dict]]) -> dict:
        tasks = list(dict.fromkeys(t for _, r in runs for t in r["results"]))
        head = {task: main_score(self.ref_records[task], task) for task in tasks}
        rows, notes, collapsed = [], [], {}
        points = {t: [] for t in tasks}
        # latency compares only on the reference run's hardware (compare.efficiency_comparable)
        ref_hardware = compare.reference_hardware([r for _, r in runs])
        for run_dir, record in runs:  # oldest first: a rerun's newest copy stands for all of them
            teacher = record["models"].get("teacher", {}).get("id", "")
            ref = reference(record)
            task_notes = {t: self.note(record, t) for t in record["results"]}
            notes += [f"{record['run_id']}: {n}" for n in task_notes.values() if n]
            roles = list(dict.fromkeys(role for t in record["results"].values() for role in t))
            eff_all = record.get("efficiency", {})
            hardware = compare.hardware(record)
            for role in roles:
                key = ranking.rerun_key(record, role)
                previous = collapsed.pop(key, None)
                model = record["models"].get(role, {})
                eff = eff_all.get(role, {})
                cells, agree, of_teacher = [], [], []
                for task in tasks:
                    metrics = record["results"].get(task, {}).get(role)
                    m = (metrics or {}).get(head[task])
                    if m is None:
                        cells.append({"text": "–", "v": "", "note": "", "value": None})
                        continue
                    note = task_notes[task]
                    cells.append({"text": fmt_ci(m["value"], m["ci"], pct=percent(record, task, head[task])),
                                  "v": "" if note else repr(m["value"]), "note": note,
                                  "value": None if note else m["value"]})
                    if note:
                        continue
                    _, pair_cols = columns(record, task)
                    pair = record["pairs"].get(task, {}).get(f"{role}|{ref}", {})
                    if pair_cols and pair_cols[0] in pair:
                        agree.append(pair[pair_cols[0]]["value"])
                    t_main = record["results"][task].get(ref, {}).get(head[task])
                    of_teacher.append(ranking.percent_of_teacher(
                        m["value"], t_main and t_main["value"], higher_is_better(record, task, head[task])))
                    label = f"{record['run_id'][-6:]} {ROLE_LABELS.get(role, role)}"
                    base = {"label": label, "role": role, "y": m["value"], "ci": m["ci"]}
                    if previous is not None:  # an identical rerun: plotted once
                        continue
                    if eff.get("latency_ms_b32") is not None:
                        points[task].append({**base, "x": eff["latency_ms_b32"], "cost": "latency",
                                             "hardware": hardware})
                    if model.get("params") is not None:
                        points[task].append({**base, "x": model["params"] / 1e6, "cost": "params"})
                agree_v, teacher_v = _mean(agree), _mean(of_teacher)
                spec_v = _draft_speedup(record, role, [t for t in record["results"] if not task_notes[t]])
                runs_of = [*(previous["reruns"] if previous else []), record["run_id"]]
                collapsed[key] = {
                    "run_id": record["run_id"], "href": f"runs/{record['run_id']}.html", "created": record["created"],
                    "reruns": runs_of, "run_dir": run_dir, "record": record,
                    "role": role, "role_label": ROLE_LABELS.get(role, role), "model": model.get("id", ""),
                    "detail": _model_detail(model), "teacher": teacher, "method": _method(model, role),
                    "params": model.get("params"), "params_s": fmt_params(model.get("params")), "cells": cells,
                    "agree": agree_v, "agree_s": fmt(agree_v, ".3f"),
                    "of_teacher": teacher_v, "of_teacher_s": fmt(teacher_v, ".1f"),
                    "lat1": eff.get("latency_ms_b1"), "lat1_s": fmt(eff.get("latency_ms_b1"), ".2f"),
                    "lat32": eff.get("latency_ms_b32"), "lat32_s": fmt(eff.get("latency_ms_b32"), ".3f"),
                    "spec": spec_v, "spec_s": "–" if spec_v is None else f"{spec_v:.2f}×",
                    "hardware": hardware, "lat_note": "" if hardware == ref_hardware else
                    f"measured on {hardware}, the reference run on {ref_hardware}: latency is compared on one hardware only",
                }
        rows = list(collapsed.values())
        self.rank(rows, tasks, head)
        name = suite
        figures = []
        for task in tasks:
            for cost, xlabel in (("latency", "latency per example at batch 32 (ms)"), ("params", "parameters (millions)")):
                pts = [p for p in points[task] if p["cost"] == cost]
                # one latency plot per hardware: a CPU and a GPU never share a latency axis
                groups = list(dict.fromkeys(p.get("hardware") for p in pts))
                for hw in groups:
                    part = [p for p in pts if p.get("hardware") == hw]
                    on = f" on {hw}" if len(groups) > 1 else ""
                    svg = plots.pareto(part, xlabel, head[task], f"{task}: {head[task]} vs {cost}{on}")
                    stem = f"{name}-{task}-{cost}" + (f"-{names.slug(hw)}" if on else "")
                    figures.append({"task": task, "file": self.write_plot(f"{stem}.svg", svg),
                                    "alt": f"{task}: {head[task]} against {cost}{on}, Pareto front dashed"})
            curves = [{"label": r["run_id"][-6:] + " " + c.get("student", ""), "metric": r["capacity_gap"][task]["metric"], **c}
                      for _, r in runs if task in r.get("capacity_gap", {}) and not self.note(r, task)
                      for c in capacity_curves(r["capacity_gap"][task])]
            if curves:
                svg = plots.capacity_gap(curves, curves[0]["metric"], f"{task}: capacity gap")
                figures.append({"task": task, "file": self.write_plot(f"{name}-{task}-capacity-gap.svg", svg),
                                "alt": f"{task}: student score against teacher size"})
        task_info = []
        for task in tasks:
            ref_rec = self.ref_records[task]
            d = ref_rec["datasets"].get(task, {})
            task_info.append({"name": task, "metric": head[task], "dataset": d, "sha": (d.get("sha256") or "")[:12],
                              "config_hash": self.refs[task].config_hash[:12]})
        return {"suite": suite, "file": f"suite-{name}.html", "tasks": task_info, "rows": rows, "figures": figures,
                "notes": list(dict.fromkeys(notes)), "runs": len(runs),
                "latest": max(r["created"] for _, r in runs), "roles": sorted({r["role"] for r in rows})}

    def rank(self, rows: list[dict], tasks: list[str], head: dict[str, str]) -> None:
        """Per task, significance tiers on the main score among the comparable rows; rows ordered
        by their mean tier over the suite's tasks (ties: the first task's score, best first)."""
        per_task = []
        for j, task in enumerate(tasks):
            entries = [{"run_dir": r["run_dir"], "record": r["record"], "role": r["role"],
                        "value": r["cells"][j]["value"]} for r in rows]
            per_task.append(ranking.tiers(entries, task, head[task], self.samples))
        for i, r in enumerate(rows):
            found = [t[i] for t in per_task if t.get(i) is not None]
            r["tier"] = sum(found) / len(found) if found else None
            r["tier_s"] = fmt(r["tier"], "g")
            r["tiers"] = ", ".join(f"{task} tier {t[i]}" for task, t in zip(tasks, per_task) if t.get(i) is not None)
            r.pop("record")
        first = tasks[0] if tasks else None

        def order(r):
            value = r["cells"][0]["value"] if r["cells"] else None
            sign = -1 if first is None or higher_is_better(self.ref_records[first], first, head[first]) else 1
            return (r["tier"] is None, r["tier"] or 0, value is None, sign * (value or 0))

        rows.sort(key=order)

    def write_plot(self, name: str, svg: str) -> str:
        self.write(f"plots/{name}", svg)
        return f"plots/{name}"

    def write(self, rel: str, text: str) -> None:
        """Stage ``out_dir/rel`` (written by ``_commit`` once every page is rendered)."""
        self.files[rel] = text

    # one run ------------------------------------------------------------------------------------
    def run_view(self, run_dir: Path, record: dict) -> dict:
        tasks = []
        for task, by_role in record["results"].items():
            names = list(dict.fromkeys(m for ms in by_role.values() for m in ms))
            pairs = record["pairs"].get(task, {})
            pair_names = list(dict.fromkeys(m for ms in pairs.values() for m in ms))
            cap = record.get("capacity_gap", {}).get(task)
            cap_file = None
            if cap:
                svg = plots.capacity_gap([{"label": c.get("student", ""), **c} for c in capacity_curves(cap)], cap["metric"],
                                         f"{task}: capacity gap")
                cap_file = "../" + self.write_plot(f"run-{record['run_id']}-{task}-capacity-gap.svg", svg)
            tasks.append({
                "name": task, "dataset": record["datasets"].get(task, {}), "note": self.note(record, task),
                "key": compare.key(record, task), "roles": list(by_role), "metrics": names,
                "cells": {role: {n: _cell(ms.get(n)) for n in names} for role, ms in by_role.items()},
                "pairs": list(pairs), "pair_names": pair_names,
                "pair_cells": {p: {n: _cell(ms.get(n)) for n in pair_names} for p, ms in pairs.items()},
                "capacity": cap, "capacity_curves": capacity_curves(cap) if cap else [], "capacity_file": cap_file,
            })
        return {"record": record, "tasks": tasks, "report_href": self.report_href(run_dir, self.out_dir / "runs"),
                "config": json.dumps(record.get("config"), indent=2),
                "environment": json.dumps(record.get("environment"), indent=2),
                "durations": json.dumps(record.get("durations"), indent=2)}


def capacity_curves(entry: dict) -> list[dict]:
    """A record's ``capacity_gap`` task entry as curves, one per student: its ``curves`` (a grid), or
    the entry itself (one student)."""
    return entry.get("curves") or [entry]


def _cell(m: dict | None) -> str:
    if m is None:
        return "–"
    ci = m.get("ci")
    return f"{m['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _manifest(out_dir: Path) -> tuple[set[str], bool]:
    """``(files this leaderboard wrote last time, adopting)``. ``adopting``: a folder built by a
    kdbench from before manifests (its index says so): its pages may be replaced, none deleted."""
    path = out_dir / MANIFEST
    if path.is_file():
        try:
            files = json.loads(path.read_text())["files"]
            return {f for f in files if isinstance(f, str)}, False
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise KdbenchError(f"leaderboard {out_dir}: {path} cannot be read; remove it to rebuild the folder") from None
    index = out_dir / "index.html"
    try:
        legacy = index.is_file() and LEGACY_MARK in index.read_text(errors="replace")
    except OSError:
        legacy = False
    return set(), legacy


def check_output(out_dir: Path) -> None:
    """Fail now, before a run's work, if ``out_dir`` cannot take a leaderboard (someone else's
    ``index.html`` is there)."""
    out_dir = Path(out_dir)
    owned, adopting = _manifest(out_dir)
    index = out_dir / "index.html"
    if index.exists() and "index.html" not in owned and not adopting:
        raise KdbenchError(f"leaderboard folder {out_dir}: {index} was not written by kdbench; "
                           "choose another folder (--leaderboard-dir / -o)")


def build(reports_dir: Path, out_dir: Path) -> Path:
    """Rebuild the leaderboard from every run under ``reports_dir`` into ``out_dir``; returns the
    index page. Records that cannot be read are skipped with a warning and listed on the index.

    The build holds a lock on ``out_dir`` from the scan of ``reports_dir`` to the last file, so
    runs finishing at the same time each leave a whole, consistent site (the last build sees every
    finished run). Each file is written atomically, the index last. ``out_dir/.kdbench-leaderboard.json``
    lists the files the leaderboard wrote: only those are replaced, and those of runs that are gone
    removed; anything else in the folder is left alone."""
    from filelock import FileLock

    reports_dir, out_dir = Path(reports_dir), Path(out_dir)
    if not reports_dir.is_dir():
        raise KdbenchError(f"reports folder {reports_dir} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(out_dir / LOCK):
        runs, skipped = scan(reports_dir)
        for path, why in skipped:
            warnings.warn(f"skipped {path}: {why}", KdbenchWarning, stacklevel=2)
        board = _Board(runs, out_dir)
        _render(board, runs, skipped, reports_dir)
        _commit(out_dir, board.files)
    return out_dir / "index.html"


def _commit(out_dir: Path, files: dict[str, str]) -> None:
    """Write the rendered ``files`` into ``out_dir`` and remove the files of the last build that
    are not among them. A file there that the manifest does not list is someone else's: refused
    before anything is written. The manifest always lists at least what is on disk of ours (it
    claims the new files before they are written), so a kill at any point leaves no orphan."""
    owned, adopting = _manifest(out_dir)
    paths = {rel: within(out_dir, rel) for rel in files}
    foreign = [p for rel, p in paths.items() if rel not in owned and p.exists() and not adopting]
    if foreign:
        raise KdbenchError(f"leaderboard {out_dir}: {foreign[0]} was not written by kdbench (not in {MANIFEST}); "
                           "it is kept: move it, or build the leaderboard in another folder (-o)")

    def manifest(rels) -> None:
        write_atomic(out_dir / MANIFEST, json.dumps({"files": sorted(rels)}, indent=1))

    manifest(owned | set(files))
    for rel, text in files.items():
        write_atomic(paths[rel], text)
    for rel in sorted(owned - set(files)):  # pages and plots of runs that are gone
        within(out_dir, rel).unlink(missing_ok=True)
    manifest(files)


def _render(board: _Board, runs: list[tuple[Path, dict]], skipped: list, reports_dir: Path) -> None:
    env = environment()
    built = datetime.now(UTC).isoformat(timespec="seconds")
    by_suite: dict[str, list] = {}
    for run_dir, record in runs:
        by_suite.setdefault(record["suite"], []).append((run_dir, record))
    suites = [board.suite_view(s, r) for s, r in sorted(by_suite.items())]
    for view in suites:
        board.write(view["file"], env.get_template("suite.html").render(**view, built=built))
    run_rows = []
    for run_dir, record in runs:
        board.write(f"runs/{record['run_id']}.html", env.get_template("leaderboard_run.html").render(
            **board.run_view(run_dir, record), built=built, suite_file=f"../suite-{record['suite']}.html"))
        student = record["models"].get("student", {})
        notes = [n for n in (board.note(record, t) for t in record["results"]) if n]
        run_rows.append({"run_id": record["run_id"], "suite": record["suite"], "created": record["created"],
                         "teacher": record["models"].get("teacher", {}).get("id", ""),
                         "student": _model_detail(student) or student.get("id", ""), "notes": notes,
                         "suite_file": f"suite-{record['suite']}.html"})
    run_rows.reverse()  # newest first
    board.write("index.html", env.get_template("leaderboard.html").render(
        suites=suites, runs=run_rows, skipped=[(str(p), why) for p, why in skipped], source=str(reports_dir),
        built=built))


def comparability_notes(reports_dir: Path) -> list[str]:
    """One line per (run, task) that is not comparable with the reference — for the CLI to print."""
    runs, _ = scan(Path(reports_dir))
    board = _Board(runs, Path("."))
    return [f"{r['run_id']}: {n}" for _, r in runs for n in (board.note(r, t) for t in r["results"]) if n]
