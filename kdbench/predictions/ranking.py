"""Rankings of a retriever: each query's top-k documents with their scores, plus its judgments."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from kdbench.predictions.base import Predictions

SHOWN = 10  # documents written to samples.parquet's ``pred`` column


@dataclass
class RankingPredictions(Predictions):
    """``example_ids`` are query ids; ``doc_ids[i]``/``scores[i]`` query i's ranking, best first (score
    decreasing, ties by document id decreasing, as trec_eval); ``qrels[i]`` its judgments (corpus id
    -> score, 0 = judged non-relevant), None when unknown. (samples.parquet also carries the per-query
    value of each metric of the task, one column each: :class:`kdbench.metrics.retrieval.RankingTable`.)"""

    kind: ClassVar[str] = "ranking"
    doc_ids: list[list[str]]
    scores: list[np.ndarray]
    qrels: list[dict[str, int]] | None = None

    def __post_init__(self) -> None:
        n = len(self.example_ids)
        if len(self.doc_ids) != n or len(self.scores) != n or (self.qrels is not None and len(self.qrels) != n):
            raise ValueError(f"{self.task}: rankings, scores and judgments must cover the {n} queries")
        for docs, scores in zip(self.doc_ids, self.scores):
            if len(docs) != len(scores):
                raise ValueError(f"{self.task}: a ranking has {len(docs)} documents and {len(scores)} scores")

    def relevant(self, i: int) -> list[str]:
        """Query i's relevant documents (judged ≥ 1), most relevant first, then by id."""
        judged = self.qrels[i] if self.qrels is not None else {}
        return [d for d, s in sorted(judged.items(), key=lambda kv: (-kv[1], kv[0])) if s >= 1]

    def to_frame(self) -> pd.DataFrame:
        """Rows of ``samples.parquet``: pred = the top-10 document ids and label = the relevant ones,
        space-joined (ids must not contain spaces; BEIR's do not); extra column ``scores`` (the top-10
        scores)."""
        return self.frame([" ".join(self.relevant(i)) for i in range(len(self.example_ids))] if self.qrels is not None
                          else None, [" ".join(docs[:SHOWN]) for docs in self.doc_ids],
                          scores=[np.asarray(s[:SHOWN], dtype=float).tolist() for s in self.scores])
