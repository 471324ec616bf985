"""What every kind of Predictions shares: example ids, the alignment check, ``samples.parquet`` rows."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# the columns every samples.parquet row has (DESIGN.md's record contract); a family may add its own
SAMPLE_COLUMNS = ("task", "example_id", "role", "label", "pred", "probs", "correct")


@dataclass
class Predictions:
    task: str
    role: str
    example_ids: list[str]

    def aligned_with(self, other: Predictions) -> None:
        """Pairwise metrics need the same examples in the same order."""
        if self.example_ids != other.example_ids:
            raise ValueError(f"{self.task}: {self.role} and {other.role} predictions cover different examples")

    def to_frame(self) -> pd.DataFrame:
        """Rows of ``samples.parquet``: the columns of ``SAMPLE_COLUMNS`` (a family may add its own
        after them, e.g. the generated text)."""
        raise NotImplementedError

    def frame(self, label, pred, probs=None, correct=None, **extra) -> pd.DataFrame:
        """The ``samples.parquet`` rows of these predictions: ``probs`` empty and ``correct`` NA
        unless given (``correct``: per-example bools), then the family's ``extra`` columns."""
        n = len(self.example_ids)
        return pd.DataFrame({
            "task": self.task, "example_id": self.example_ids, "role": self.role, "label": label, "pred": pred,
            "probs": probs if probs is not None else [[] for _ in range(n)],
            "correct": pd.array([pd.NA] * n if correct is None else list(correct), dtype="boolean"), **extra})


def samples_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One ``samples.parquet`` table from every task's rows. Parquet columns have one type, so when
    families disagree (class ids next to generated answers, integer labels next to regression
    targets) ``pred`` and ``label`` become strings or floats for the whole table."""
    frame = pd.concat(frames, ignore_index=True)
    for column in ("label", "pred"):
        kinds = {_kind(f[column]) for f in frames if column in f and f[column].notna().any()}
        if "str" in kinds and len(kinds) > 1:
            frame[column] = frame[column].map(lambda v: None if pd.isna(v) else str(v)).astype("string")
        elif kinds == {"int", "float"}:
            frame[column] = frame[column].astype("Float64")
    return frame


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "str"
