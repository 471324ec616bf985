"""Load one split of a dataset the way a user's code would, with ``datasets``: your own files (a
CSV / JSON Lines / Parquet file or a folder, always local), or a hub dataset, from a local mirror
laid out as ``<hub-id>/<config>/<split>.jsonl|.parquet`` when ``KDBENCH_DATA_DIR`` is set and holds
that id (an air-gapped cluster uses the same code path), else from the hub at its pinned revision.
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
    id: str | None  # a hub id; None for local data (``path``)
    config: str | None
    split: str  # a split name, or datasets' slice syntax ("train[:80%]")
    revision: str | None = None  # hub datasets: commit, tag or branch
    path: str | None = None  # your own file or folder
    data_files: dict | None = None  # path is a folder: split -> file name(s) or glob(s)

    def where(self) -> str:
        """How errors name this split: the file or folder and split, or hub id/config/split."""
        if self.path is not None:
            return f"{self.path}, split {self.split!r}"
        return f"{self.id}/{self.config or 'default'}/{self.split}" + (f"@{self.revision}" if self.revision else "")


@dataclass
class LoadedSplit:
    spec: DatasetSpec
    rows: datasets.Dataset
    source: str  # the local file or folder, the mirror file, or "hub"

    @property
    def where(self) -> str:
        return self.spec.where() + (f" ({self.source})" if self.spec.path is None and self.source != "hub" else "")

    def reference(self) -> dict:
        """The run record's dataset fields: id (the path for local data), config, split, content hash,
        source, and the pinned revision of a hub dataset."""
        s = self.spec
        ref = {"id": s.id if s.path is None else s.path, "config": s.config, "split": s.split,
               "sha256": self.sha256(), "source": self.source}
        if s.revision is not None:
            ref["revision"] = s.revision
        if s.data_files is not None:
            ref["data_files"] = s.data_files
        return ref

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


def mirror_holds(dataset_id: str) -> bool:
    """Whether ``KDBENCH_DATA_DIR`` is set and has a folder for this hub id (it serves only those)."""
    root = mirror_dir()
    return root is not None and (root / dataset_id).is_dir()


# your own files: the datasets builder of each extension
_BUILDERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def _load_local(spec: DatasetSpec) -> datasets.Dataset:
    """A split of your own file (its one split is ``train``, datasets' convention) or folder."""
    path = Path(spec.path)
    if path.is_file():
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise KdbenchError(f"dataset {path}: cannot tell the format from '{path.suffix}' "
                               f"(known: {', '.join(_BUILDERS)}; or name a folder)")
        if path.stat().st_size == 0:
            raise KdbenchError(f"dataset {path}: empty file")
        source = {"path": builder, "data_files": str(path), **({"sep": "\t"} if path.suffix.lower() == ".tsv" else {})}
    elif path.is_dir():
        source = {"path": str(path), "name": spec.config, "data_files": spec.data_files}
    else:
        raise KdbenchError(f"dataset {path}: no such file or folder")
    try:
        splits = datasets.load_dataset(**source)
    except ValueError as e:  # a file with a header and no rows
        if "corresponds to no data" in str(e):
            raise KdbenchError(f"dataset {spec.where()}: no rows") from None
        raise
    name = spec.split.split("[", 1)[0]  # "train[:80%]": a slice of train, datasets' split syntax
    if name not in splits:
        hint = "; one file is one split, 'train': take parts of it as train[:80%] and train[80%:]" if path.is_file() else ""
        raise KdbenchError(f"dataset {spec.where()}: no such split (found: {', '.join(splits)}{hint})")
    if len(splits[name]) == 0:
        raise KdbenchError(f"dataset {spec.where()}: no rows")
    return splits[name] if name == spec.split else datasets.load_dataset(**source, split=spec.split)


def load_split(spec: DatasetSpec, rows: int | None = None, shuffle_seed: int | None = None) -> LoadedSplit:
    """Load ``spec``; optionally shuffle with ``shuffle_seed`` and keep the first ``rows``."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # "Generating split" bars on first load: kdbench shows its own progress
    try:
        if spec.path is not None:  # your own data: always local, whatever the mirror holds
            ds, source = _load_local(spec), spec.path
        elif mirror_holds(spec.id):
            path = _mirror_file(mirror_dir(), spec)
            ds = datasets.load_dataset(_EXTENSIONS[path.suffix], data_files={spec.split: str(path)}, split=spec.split)
            source = str(path)
        else:
            ds = datasets.load_dataset(spec.id, spec.config, split=spec.split, revision=spec.revision)
            source = "hub"
    except KdbenchError:
        raise
    except Exception as e:  # datasets raises many types for missing/unreachable data (StopIteration on an empty file)
        held = (f" (not in {MIRROR_ENV}={mirror_dir()})"
                if spec.path is None and mirror_dir() is not None and not mirror_holds(spec.id) else "")
        lines = str(e).strip().splitlines()
        detail = f"{type(e).__name__}: {lines[0]}" if lines else f"{type(e).__name__}; is the file empty?"
        raise KdbenchError(f"dataset {spec.where()}{held}: cannot load ({detail})") from None
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    if len(ds) == 0:
        raise KdbenchError(f"dataset {spec.where()}: no rows in {source}")
    if shuffle_seed is not None:
        ds = ds.shuffle(seed=shuffle_seed)
    if rows is not None and rows < len(ds):
        ds = ds.select(range(rows))
    return LoadedSplit(spec=spec, rows=ds, source=source)
