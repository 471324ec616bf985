"""Reading many run records at once: the folder scan the leaderboard uses and
:func:`load_runs`, the pandas view of a reports folder."""
from __future__ import annotations

import warnings
from pathlib import Path

from kdbench.errors import KdbenchError, KdbenchWarning
from kdbench.report import compare
from kdbench.report.record import RECORD_FILE, read_record


class ComparabilityWarning(UserWarning):
    """Some runs in a folder are not comparable with the others on a task."""


def scan(reports_dir: Path) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
    """``(runs, skipped)``: every finished run under ``reports_dir`` as ``(run folder, record)``,
    oldest first, and every ``report.json`` that could not be used as ``(path, one-line reason)``.
    Staging folders (names starting with a dot) are not runs yet and are ignored."""
    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        raise KdbenchError(f"reports folder {reports_dir} does not exist")
    runs, skipped = [], []
    for path in sorted(reports_dir.glob(f"[!.]*/{RECORD_FILE}")):
        try:
            runs.append((path.parent, read_record(path)))
        except KdbenchError as e:
            skipped.append((path, str(e)))
    runs.sort(key=lambda r: r[1]["created"])
    return runs, skipped


COLUMNS = [
    "run_id", "suite", "created", "task", "role", "kind", "metric", "value", "ci_low", "ci_high",
    "model", "teacher", "method", "params", "data_id", "data_split", "data_rows", "data_sha256", "task_config_hash",
    "comparable", "comparability_note", "kdbench_version", "git_hash", "run_dir",
]


def _method(model: dict, role: str) -> str:
    method = model.get("method") or ("finetune" if role == "teacher" else "")
    loss = model.get("loss")
    return f"{method} ({loss})" if loss else method


def load_runs(reports_dir: str | Path, *, strict: bool = False):
    """Every run record under ``reports_dir`` as a pandas DataFrame, one row per
    (run, task, role, metric).

    ``kind`` is ``"result"`` for a model's own metrics (``role`` is the model's role) and ``"pair"``
    for a pair metric (``role`` is the pair key, e.g. ``student|teacher``). ``comparable`` says
    whether the row's run is comparable on that task with the reference (the task configuration and
    evaluation-data hash most runs share; ties go to the newest run), and ``comparability_note``
    says why not. When any row is not comparable a :class:`ComparabilityWarning` is issued too, and
    ``frame.attrs["comparability"]`` lists the notes. Unreadable records are skipped with a warning
    (listed in ``frame.attrs["skipped"]``), or raise :class:`KdbenchError` with ``strict=True``.
    """
    import pandas as pd

    runs, skipped = scan(Path(reports_dir))
    if skipped and strict:
        raise KdbenchError(skipped[0][1])
    for path, why in skipped:
        warnings.warn(f"skipped {path}: {why}", KdbenchWarning, stacklevel=2)
    records = [r for _, r in runs]
    refs = compare.reference_keys(records)
    ref_records = compare.reference_records(records)
    out, notes = [], []
    for run_dir, record in runs:
        teacher = record["models"].get("teacher", {}).get("id")
        for task in record["results"]:
            k = compare.key(record, task)
            ok = k == refs[task]
            note = "" if ok else (compare.reason(ref_records[task], record, task, ("reference", "this"))
                                  or f"{task}: not the reference configuration")
            if note:
                notes.append(f"{record['run_id']}: {note}")
            d = record["datasets"].get(task, {})
            base = {"run_id": record["run_id"], "suite": record["suite"], "created": record["created"], "task": task,
                    "teacher": teacher, "data_id": d.get("id"), "data_split": d.get("split"), "data_rows": d.get("rows"),
                    "data_sha256": d.get("sha256"), "task_config_hash": k.config_hash, "comparable": ok,
                    "comparability_note": note, "kdbench_version": record["kdbench_version"],
                    "git_hash": record.get("git_hash"), "run_dir": str(run_dir)}
            blocks = [("result", role, metrics) for role, metrics in record["results"][task].items()]
            blocks += [("pair", pair, metrics) for pair, metrics in record["pairs"].get(task, {}).items()]
            for kind, role, metrics in blocks:
                model = record["models"].get(role.split("|")[0], {})
                for metric, m in metrics.items():
                    ci = m.get("ci") or (None, None)
                    out.append({**base, "role": role, "kind": kind, "metric": metric, "value": m["value"],
                                "ci_low": ci[0], "ci_high": ci[1], "model": model.get("id"),
                                "method": _method(model, role.split("|")[0]), "params": model.get("params")})
    frame = pd.DataFrame(out, columns=COLUMNS)
    frame["created"] = pd.to_datetime(frame["created"], utc=True)
    frame["params"] = frame["params"].astype("Int64")
    frame["data_rows"] = frame["data_rows"].astype("Int64")
    frame["comparable"] = frame["comparable"].astype(bool)
    frame.attrs["comparability"] = list(dict.fromkeys(notes))
    frame.attrs["skipped"] = [f"{p}: {why}" for p, why in skipped]
    if notes:
        warnings.warn("runs not comparable with the reference: " + "; ".join(frame.attrs["comparability"]),
                      ComparabilityWarning, stacklevel=2)
    return frame
