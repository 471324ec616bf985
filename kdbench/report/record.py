"""The run record (``report.json``): schema_version 1 as in DESIGN.md, validated against the JSON
Schema shipped with the package on write and on read."""
from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import jsonschema

from kdbench.errors import KdbenchError
from kdbench.fsio import write_atomic
from kdbench.predictions.base import SAMPLE_COLUMNS

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.json"
RECORD_FILE = "report.json"
SAMPLES_FILE = "samples.parquet"


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _non_finite(node, path="") -> str | None:
    """JSON cannot carry NaN/inf faithfully; a metric that is not a number is an error, not a pass."""
    if isinstance(node, float) and not math.isfinite(node):
        return path or "(root)"
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, f"{path}.{k}" if path else str(k))
        if found:
            return found
    return None


def validate_record(record: dict, where: str = "run record") -> dict:
    bad = _non_finite({k: record.get(k) for k in ("results", "pairs", "efficiency", "capacity_gap")})
    if bad:
        raise KdbenchError(f"{where}: {bad} is not a finite number")
    try:
        jsonschema.validate(record, schema())
    except jsonschema.ValidationError as e:
        at = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise KdbenchError(f"{where}: schema violation at {at}: {e.message}") from None
    return record


def dumps(record: dict) -> str:
    return json.dumps(validate_record(record), indent=2, sort_keys=False, allow_nan=False)


def write_record(path: Path, record: dict) -> Path:
    """Validate ``record`` against the schema and write it atomically (a run folder or a file path)."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    return write_atomic(path, dumps(record))


def samples_path(record_path: Path) -> Path:
    """Where a record's per-example samples live: ``samples.parquet`` beside a ``report.json``, and
    ``NAME.samples.parquet`` beside any other ``NAME.json`` (a promoted baseline)."""
    record_path = Path(record_path)
    if record_path.is_dir():
        return record_path / SAMPLES_FILE
    if record_path.name == RECORD_FILE:
        return record_path.parent / SAMPLES_FILE
    return record_path.with_name(record_path.name.removesuffix(".json") + ".samples.parquet")


def read_samples(path: Path, where: str | None = None):
    """``samples.parquet`` as a pandas DataFrame; a missing file or column is a one-line error."""
    import pandas as pd
    import pyarrow

    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise KdbenchError(f"{where}: missing samples (no file {path})")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as e:
        raise KdbenchError(f"{where}: samples file {path} cannot be read ({str(e).splitlines()[0]})") from None
    missing = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise KdbenchError(f"{where}: samples file {path} has no column {missing[0]!r}")
    return frame


def read_record(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise KdbenchError(f"{path}: no such run record") from None
    except json.JSONDecodeError as e:
        raise KdbenchError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KdbenchError(f"{path}: cannot be read ({e.__class__.__name__})") from None
    if not isinstance(record, dict):
        raise KdbenchError(f"{path}: not a run record (a JSON {type(record).__name__}, not an object)")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise KdbenchError(f"{path}: schema_version {record.get('schema_version')!r}, this kdbench reads {SCHEMA_VERSION}")
    return validate_record(record, str(path))


def find_runs(reports_dir: Path) -> list[tuple[Path, dict]]:
    """Every finished run under ``reports_dir`` (staging folders start with a dot and are skipped),
    oldest first."""
    runs = [(p.parent, read_record(p)) for p in sorted(Path(reports_dir).glob(f"[!.]*/{RECORD_FILE}"))]
    return sorted(runs, key=lambda r: r[1]["created"])
