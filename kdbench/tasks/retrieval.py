"""Retrieval with bi-encoders on BEIR-format corpora (family ``retrieval``, head ``embedding``).

Queries and documents are embedded by the same model (mean pooling, L2 normalisation: cosine
similarity, :mod:`kdbench.backends.embeddings`), every query is searched exactly against the whole
corpus, and the top ``top_k`` documents are scored against the judgments with trec_eval's
conventions (:mod:`kdbench.metrics.retrieval`). Only queries with a relevant judgment are evaluated
(:mod:`kdbench.data.beir`). A document whose id equals the query's id is never retrieved (BEIR's
``ignore_identical_ids``, for corpora such as Quora or ArguAna where queries are also documents).
"""
from __future__ import annotations

import string

import numpy as np
from pydantic import Field

from kdbench.backends.embeddings import HFEmbedder, search
from kdbench.data.beir import BeirData, load_beir
from kdbench.metrics import retrieval as rm
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.predictions.ranking import RankingPredictions
from kdbench.registry import FAMILIES
from kdbench.tasks.base import DatasetRef, LoadedModel, RunSettings, Task, TaskSpecBase, unknown_metric


class BeirRef(DatasetRef):
    train_split: str | None = Field(None, description="unused: retrieval students are distilled on corpus text")
    eval_split: str = Field("test", description="the qrels split")


class RetrievalSpec(TaskSpecBase):
    dataset: BeirRef
    doc_template: str = Field("{title} {text}", description="a document's text from its {title} and {text}")
    top_k: int = Field(100, gt=0, description="documents retrieved per query")
    query_max_length: int | None = Field(None, gt=0, description="token limit for queries; the suite's when null")
    corpus_rows: int | None = Field(None, gt=0, description="first N documents only (smoke tests); all when null")


@FAMILIES.register("retrieval", head="embedding", kind="ranking")
class RetrievalTask(Task):
    Spec = RetrievalSpec

    def __init__(self, spec: RetrievalSpec):
        super().__init__(spec)
        self._data: dict[int | None, BeirData] = {}

    @classmethod
    def check_spec(cls, spec: RetrievalSpec) -> tuple[tuple, str] | None:
        if spec.dataset.path is not None:
            return ("dataset", "path"), "retrieval reads a BEIR layout (corpus, queries, qrels) by hub id: dataset.id"
        problem = unknown_metric(spec)
        if problem:
            return problem
        fields = {f for _, f, _, _ in string.Formatter().parse(spec.doc_template) if f is not None}
        if not fields <= {"title", "text"}:
            return ("doc_template",), f"only {{title}} and {{text}} can appear, not {sorted(fields - {'title', 'text'})}"
        return None

    # data ---------------------------------------------------------------------------------------
    def eval_data(self, rows: int | None) -> BeirData:
        """The corpus (``corpus_rows`` or all) and the first ``rows`` evaluated queries (all when None)."""
        if rows not in self._data:
            d = self.spec.dataset
            self._data[rows] = load_beir(d.id, d.eval_split, corpus_rows=self.spec.corpus_rows, query_rows=rows)
        return self._data[rows]

    def dataset_record(self, data: BeirData) -> dict:
        return data.record()

    def train_data(self, rows: int | None, seed: int) -> BeirData:
        """The corpus: retrieval students are distilled on its text (the recipe takes its slice)."""
        return self.eval_data(None)

    def inputs(self, data: BeirData) -> tuple[list[str], list[str]]:
        """What a bi-encoder reads that carries no judgment: the documents and the queries without one."""
        return self.documents(data), [text for _, text in data.unjudged_queries]

    def documents(self, data: BeirData) -> list[str]:
        return [self.spec.doc_template.format(title=t, text=x).strip() for t, x in zip(data.titles, data.texts)]

    def doc_max_length(self, settings: RunSettings) -> int:
        return self.max_length(settings)

    def query_max_length(self, settings: RunSettings) -> int:
        return self.spec.query_max_length or settings.max_length

    def token_limits(self, settings: RunSettings) -> dict[str, int]:
        queries = "the task's query_max_length" if self.spec.query_max_length else "max_length (queries)"
        return {**super().token_limits(settings), queries: self.query_max_length(settings)}

    # models and predictions ----------------------------------------------------------------------
    def load_model(self, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
        return LoadedModel(load_for_head(model_id, self.head, revision, device).eval(), load_tokenizer(model_id, revision), model_id)

    def predict(self, model: LoadedModel, data: BeirData, role: str, settings: RunSettings) -> RankingPredictions:
        embedder = HFEmbedder(model.model, model.tokenizer, settings.dtype, batch_size=settings.eval.batch_size)
        q = embedder.embed(data.queries, desc=f"queries {self.name} [{role}]", max_length=self.query_max_length(settings))
        d = embedder.embed(self.documents(data), desc=f"corpus {self.name} [{role}]", max_length=self.doc_max_length(settings))
        position = {doc: i for i, doc in enumerate(data.doc_ids)}
        exclude = np.array([position.get(qid, -1) for qid in data.query_ids], dtype=np.int64)
        idx, scores = search(q, d, self.spec.top_k, exclude=exclude)
        ids = np.asarray(data.doc_ids, dtype=object)[idx]
        order = rm.trec_order(ids.astype(str), scores)
        ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
        return RankingPredictions(self.name, role, list(data.query_ids), doc_ids=[list(r) for r in ids],
                                  scores=list(scores), qrels=[data.qrels[qid] for qid in data.query_ids])

    def efficiency_inputs(self, data: BeirData) -> tuple[list[str], list[str] | None]:
        """The first 256 documents: encoding the corpus is what a bi-encoder spends its time on."""
        return self.documents(data)[:256], None
