"""Load one split of a dataset the way a user's code would: ``datasets`` from the hub, or from a
local mirror laid out as ``<hub-id>/<config>/<split>.jsonl|.parquet`` when ``KDBENCH_DATA_DIR`` is
set (an air-gapped cluster uses the same code path).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from kdbench.errors import KdbenchError

MIRROR_ENV = "KDBENCH_DATA_DIR"
_EXTENSIONS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    config: str | None
    split: str


@dataclass
class LoadedSplit:
    spec: DatasetSpec
    rows: datasets.Dataset
    source: str  # the mirror file, or "hub"

    def sha256(self) -> str:
        """Content hash of exactly the rows used (canonical JSON lines), so a slice is identified by
        what it contains whichever way it was loaded."""
        h = hashlib.sha256()
        for row in self.rows:
            h.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
            h.update(b"\n")
        return h.hexdigest()


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value) if value else None


def _mirror_file(root: Path, spec: DatasetSpec) -> Path:
    folder = root / spec.id / (spec.config or "default")
    for ext in _EXTENSIONS:
        candidate = folder / f"{spec.split}{ext}"
        if candidate.is_file():
            return candidate
    if not folder.is_dir():
        raise KdbenchError(
            f"dataset {spec.id} (config {spec.config or 'default'}): no folder {folder} in {MIRROR_ENV}={root}"
        )
    present = sorted({f.stem for f in folder.iterdir() if f.suffix in _EXTENSIONS})
    raise KdbenchError(
        f"dataset {spec.id} (config {spec.config or 'default'}): no split '{spec.split}' in {folder} "
        f"(found: {', '.join(present) or 'nothing'})"
    )


def _where(spec: DatasetSpec) -> str:
    return f"{spec.id}/{spec.config or 'default'}/{spec.split}"


def load_split(spec: DatasetSpec, rows: int | None = None, shuffle_seed: int | None = None) -> LoadedSplit:
    """Load ``spec``; optionally shuffle with ``shuffle_seed`` and keep the first ``rows``."""
    root = mirror_dir()
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # "Generating split" bars on first load: kdbench shows its own progress
    try:
        if root is not None:
            path = _mirror_file(root, spec)
            ds = datasets.load_dataset(_EXTENSIONS[path.suffix], data_files={spec.split: str(path)}, split=spec.split)
            source = str(path)
        else:
            ds = datasets.load_dataset(spec.id, spec.config, split=spec.split)
            source = "hub"
    except KdbenchError:
        raise
    except Exception as e:  # datasets raises many types for missing/unreachable data (StopIteration on an empty file)
        lines = str(e).strip().splitlines()
        detail = f"{type(e).__name__}: {lines[0]}" if lines else f"{type(e).__name__}; is the file empty?"
        raise KdbenchError(f"dataset {_where(spec)}: cannot load ({detail})") from None
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    if len(ds) == 0:
        raise KdbenchError(f"dataset {_where(spec)}: no rows in {source}")
    if shuffle_seed is not None:
        ds = ds.shuffle(seed=shuffle_seed)
    if rows is not None and rows < len(ds):
        ds = ds.select(range(rows))
    return LoadedSplit(spec=spec, rows=ds, source=source)
