"""Ranking metrics (trec_eval conventions, as BEIR reports them through pytrec_eval), vectorised in
numpy over a matrix of judged relevance.

Inputs. ``rel`` (n_queries, k): the graded relevance of the document at each rank of each query's
ranking (rank 1 first), 0 for an unjudged document or an empty slot of a ranking shorter than k.
``ideal`` (n_queries, k): each query's judged relevance values sorted in decreasing order, 0-padded
(the ideal ranking). ``n_relevant`` (n_queries,): how many judged documents have relevance > 0.
A document is *relevant* when its relevance is ≥ 1 (trec_eval's ``relevance_level`` 1: a qrel
score of 0 is judged non-relevant). Negative judgments count as 0.

Conventions (checked against pytrec_eval 0.5 / trec_eval 9 in tests/unit/tasks/test_retrieval.py):

* nDCG@k (``ndcg_cut_k``; Järvelin & Kekäläinen 2002, linear gain as trec_eval):
  DCG@k = Σ_{i=1..k} rel_i / log2(i + 1);  nDCG@k = DCG@k / IDCG@k, IDCG@k the DCG of ``ideal``
  (all judged documents of the query, retrieved or not); 0 when IDCG is 0.
* MRR@k (BEIR's ``mrr@k``; pytrec_eval's ``recip_rank`` of the ranking cut at k): 1 / (rank of
  the first relevant document within the top k), 0 when there is none.
* Recall@k (``recall_k``): |relevant ∩ top k| / n_relevant.
* MAP@k (``map_cut_k``): Σ_{i ≤ k, doc i relevant} P@i / n_relevant, P@i = |relevant ∩ top i| / i
  (divided by all relevant documents, not min(n_relevant, k), as trec_eval).

trec_eval orders a run by score, decreasing, and breaks ties by document id, decreasing; rankings
are built the same way (:func:`trec_order`) so the two agree on every tie.

Teacher–student (pair) metrics compare two rankings of the same queries:

* overlap@k: |T_k ∩ S_k| / |T_k|, T_k and S_k the teacher's and student's top-k document sets.
* teacher nDCG@k: nDCG@k of the student's ranking when the teacher's top-k documents are the only
  relevant ones, with graded gain k − r for the teacher's rank r = 0..k−1 (k for its first
  document, 1 for its k-th). It is 1 exactly when the student returns the teacher's top k in the
  teacher's order, and weighs disagreement at the head of the list most, where users look.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kdbench.errors import KdbenchError
from kdbench.metrics.spec import Kind, Table, kind, metric, register_kind
from kdbench.metrics.stats import ColumnContext


# --------------------------------------------------------------------------------------------------
# from ids to arrays
# --------------------------------------------------------------------------------------------------
def trec_order(doc_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-row permutation sorting a ranking as trec_eval does: score decreasing, ties by document
    id decreasing (string order). ``doc_ids``/``scores`` (n, k); returns (n, k) column indices."""
    doc_ids, scores = np.asarray(doc_ids), np.asarray(scores)
    if doc_ids.size == 0:
        return np.zeros(doc_ids.shape, dtype=np.int64)
    _, codes = np.unique(doc_ids, return_inverse=True)
    codes = codes.reshape(doc_ids.shape)
    # row-wise lexsort: the last key (score) sorts first; both negated for decreasing order
    return np.lexsort((-codes, -scores.astype(np.float64)), axis=-1)


def judged_relevance(ranked: Sequence[Sequence[str]], qrels: Sequence[Mapping[str, int]], k: int) -> np.ndarray:
    """(n, k) relevance of each ranked document from its query's judgments (0 unjudged or empty)."""
    rel = np.zeros((len(ranked), k), dtype=np.float64)
    for i, (docs, judged) in enumerate(zip(ranked, qrels)):
        row = [max(judged.get(d, 0), 0) for d in list(docs)[:k]]
        rel[i, : len(row)] = row
    return rel


def ideal_relevance(qrels: Sequence[Mapping[str, int]], k: int) -> np.ndarray:
    """(n, k) judged relevance values of each query in decreasing order, 0-padded (the ideal ranking)."""
    ideal = np.zeros((len(qrels), k), dtype=np.float64)
    for i, judged in enumerate(qrels):
        values = sorted((max(v, 0) for v in judged.values()), reverse=True)[:k]
        ideal[i, : len(values)] = values
    return ideal


def relevant_counts(qrels: Sequence[Mapping[str, int]]) -> np.ndarray:
    return np.array([sum(1 for v in judged.values() if v >= 1) for judged in qrels], dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# per-query metrics (each returns (n_queries,) values; the metric is their mean)
# --------------------------------------------------------------------------------------------------
def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # 1 / log2(i + 1), i = 1..k


def dcg_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """DCG@k = Σ_{i=1..k} rel_i / log2(i + 1) (linear gain)."""
    rel = np.asarray(rel, dtype=np.float64)[:, :k]
    return rel @ _discounts(rel.shape[1])


def ndcg_at_k(rel: np.ndarray, ideal: np.ndarray, k: int) -> np.ndarray:
    """nDCG@k = DCG@k(rel) / DCG@k(ideal); 0 where the ideal DCG is 0."""
    dcg, idcg = dcg_at_k(rel, k), dcg_at_k(ideal, k)
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def mrr_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """1 / rank of the first relevant (≥ 1) document in the top k; 0 when there is none."""
    hit = np.asarray(rel)[:, :k] >= 1
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), 1.0 / (first + 1.0), 0.0)


def recall_at_k(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """|relevant ∩ top k| / n_relevant; 0 where n_relevant is 0."""
    found = (np.asarray(rel)[:, :k] >= 1).sum(axis=1).astype(np.float64)
    return np.divide(found, n_relevant, out=np.zeros_like(found), where=n_relevant > 0)


def map_at_k(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Σ_{i ≤ k, doc i relevant} P@i / n_relevant, P@i = (relevant in top i) / i; 0 where n_relevant is 0."""
    hit = (np.asarray(rel)[:, :k] >= 1).astype(np.float64)
    precision = np.cumsum(hit, axis=1) / np.arange(1, hit.shape[1] + 1)
    total = (precision * hit).sum(axis=1)
    return np.divide(total, n_relevant, out=np.zeros_like(total), where=n_relevant > 0)


# --------------------------------------------------------------------------------------------------
# teacher–student
# --------------------------------------------------------------------------------------------------
def _codes(*arrays: Sequence[Sequence[str]], k: int) -> list[np.ndarray]:
    """Rankings cut at k as integer codes in one shared vocabulary, -1 (or -2) padding empty slots so
    padding never matches across the two rankings."""
    vocab: dict[str, int] = {}
    out = []
    for pad, ranked in zip((-1, -2), arrays):
        codes = np.full((len(ranked), k), pad, dtype=np.int64)
        for i, docs in enumerate(ranked):
            row = [vocab.setdefault(d, len(vocab)) for d in list(docs)[:k]]
            codes[i, : len(row)] = row
        out.append(codes)
    return out


def overlap_at_k(student: Sequence[Sequence[str]], teacher: Sequence[Sequence[str]], k: int) -> np.ndarray:
    """|T_k ∩ S_k| / |T_k| per query (1 when the teacher returned nothing)."""
    s, t = _codes(student, teacher, k=k)
    common = (t[:, :, None] == s[:, None, :]).any(axis=2) & (t >= 0)
    size = (t >= 0).sum(axis=1)
    return np.divide(common.sum(axis=1), size, out=np.ones(len(t)), where=size > 0)


def teacher_ndcg_at_k(student: Sequence[Sequence[str]], teacher: Sequence[Sequence[str]], k: int) -> np.ndarray:
    """nDCG@k of the student's ranking against the teacher's top k as graded pseudo-relevance
    (gain k − r at the teacher's rank r = 0..k−1)."""
    s, t = _codes(student, teacher, k=k)
    gains = np.where(t >= 0, k - np.arange(k, dtype=np.float64), 0.0)  # (n, k), aligned with t
    match = s[:, :, None] == t[:, None, :]  # (n, student rank, teacher rank)
    rel = (match * gains[:, None, :]).sum(axis=2)
    ideal = -np.sort(-gains, axis=1)
    return ndcg_at_k(rel, ideal, k)


# --------------------------------------------------------------------------------------------------
# tables: per-query values of each metric the task reports (samples.parquet keeps them, one column each)
# --------------------------------------------------------------------------------------------------
PER_QUERY: dict[str, Callable] = {}  # metric template -> per-query values (rankings, judgments | teacher rankings, k)


def per_query(kind_name: str, name: str, ranked: Sequence[Sequence[str]], other) -> np.ndarray:
    """Per-query values of metric ``name`` (e.g. ``ndcg_at_10``) of rankings against judgments
    (kind ``ranking``) or of student against teacher rankings (``ranking_pair``)."""
    spec = kind(kind_name).metric(name)
    return PER_QUERY[spec.template](ranked, other, int(spec.fields["k"]))


@dataclass
class _QueryTable(Table):
    values: dict[str, np.ndarray]  # metric -> per-query values

    @property
    def n(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    def has(self, metric: str) -> bool:
        return metric in self.values

    def columns(self) -> dict[str, np.ndarray]:
        return dict(self.values)

    @classmethod
    def _from_columns(cls, rows, names: Sequence[str], where: str):
        values = {}
        for name in names:
            if rows is None or name not in rows.columns or rows[name].isna().any():
                raise KdbenchError(f"{where}: the samples have no per-query column {name!r}")
            values[name] = np.asarray(rows[name], dtype=np.float64)
        return cls(values)

    def context(self, *, n_samples, seed, options, draws=None) -> ColumnContext:
        return ColumnContext(self.values, self.n, n_samples=n_samples, seed=seed, draws=draws)


class RankingTable(_QueryTable):
    kind = "ranking"

    @classmethod
    def of(cls, preds, task_spec: dict) -> RankingTable:
        if preds.qrels is None:
            raise KdbenchError(f"task {preds.task}: {preds.role} predictions carry no judgments")
        return cls({name: per_query(cls.kind, name, preds.doc_ids, preds.qrels) for name in task_spec["metrics"]})

    @classmethod
    def from_samples(cls, rows, task_spec: dict, where: str) -> RankingTable:
        return cls._from_columns(rows, task_spec["metrics"], where)


class RankingPairTable(_QueryTable):
    kind = "ranking_pair"

    @classmethod
    def of(cls, student, teacher, task_spec: dict) -> RankingPairTable:
        return cls({name: per_query(cls.kind, name, student.doc_ids, teacher.doc_ids)
                    for name in task_spec["pair_metrics"]})

    @classmethod
    def from_samples(cls, student_rows, teacher_rows, pair_rows, task_spec: dict, where: str) -> RankingPairTable:
        return cls._from_columns(pair_rows, task_spec["pair_metrics"], where)


register_kind(Kind("ranking", "query", "ranked document ids and graded judgments", table=RankingTable,
                   pair="ranking_pair", compare="ndcg_at_10", compare_p_name="ndcg_at_10_p_value",
                   columns=("mrr_at_10", "recall_at_100")))
register_kind(Kind("ranking_pair", "query", "teacher and student rankings", table=RankingPairTable,
                   columns=("overlap_at_10", "teacher_ndcg_at_10")))


# --------------------------------------------------------------------------------------------------
# metrics: means of per-query values
# --------------------------------------------------------------------------------------------------
def _cutoff(fields: dict, task_spec: dict) -> str | None:
    k = fields["k"]
    if not k.isdigit() or int(k) < 1:
        return f"the cutoff {k!r} is not a positive whole number"
    if int(k) > task_spec.get("top_k", int(k)):
        return f"needs the top {k} documents but top_k is {task_spec['top_k']}"
    return None


def ranking_metric(template: str, kind_name: str, *, per_unit: str, reference: str = "—"):
    """Register the decorated ``per_query(rankings, judgments | teacher rankings, k) -> (queries,)``
    under ``template`` (``<name>_at_{k}``): the table computes it from Predictions, samples.parquet
    keeps its values, the metric is their mean (its docstring's first paragraph the formula)."""
    def register(per_query_fn):
        def values(ctx, k):
            return ctx.columns[template.replace("{k}", k)]

        values.__doc__ = per_query_fn.__doc__
        metric(template, kind_name, higher_is_better=True, per_unit=per_unit, reference=reference, check=_cutoff)(values)
        PER_QUERY[template] = per_query_fn
        return per_query_fn
    return register


JUDGED = "the query's ranking against its judgments"


@ranking_metric("ndcg_at_{k}", "ranking", per_unit=f"nDCG@k of {JUDGED}",
                reference="Järvelin & Kekäläinen 2002; trec_eval ndcg_cut (linear gain)")
def _ndcg(ranked, qrels, k: int) -> np.ndarray:
    """Mean over queries of DCG@k / IDCG@k, DCG@k = Σ_{i ≤ k} rel_i / log2(i + 1) with graded relevance (0 for an
    unjudged document) and IDCG@k the DCG of all the query's judgments sorted; 0 when IDCG is 0."""
    return ndcg_at_k(judged_relevance(ranked, qrels, k), ideal_relevance(qrels, k), k)


@ranking_metric("mrr_at_{k}", "ranking", per_unit=f"1 / rank of the first relevant document, {JUDGED}",
                reference="BEIR's mrr@k; trec_eval recip_rank cut at k")
def _mrr(ranked, qrels, k: int) -> np.ndarray:
    """Mean over queries of 1 / (rank of the first relevant document, relevance ≥ 1, within the top k); 0 without one."""
    return mrr_at_k(judged_relevance(ranked, qrels, k), k)


@ranking_metric("recall_at_{k}", "ranking", per_unit=f"recall@k of {JUDGED}", reference="trec_eval recall_k")
def _recall(ranked, qrels, k: int) -> np.ndarray:
    """Mean over queries of |relevant ∩ top k| / #relevant (relevance ≥ 1)."""
    return recall_at_k(judged_relevance(ranked, qrels, k), relevant_counts(qrels), k)


@ranking_metric("map_at_{k}", "ranking", per_unit=f"AP@k of {JUDGED}", reference="trec_eval map_cut")
def _map(ranked, qrels, k: int) -> np.ndarray:
    """Mean over queries of Σ_{i ≤ k, doc i relevant} P@i / #relevant (all relevant documents, as trec_eval)."""
    return map_at_k(judged_relevance(ranked, qrels, k), relevant_counts(qrels), k)


@ranking_metric("overlap_at_{k}", "ranking_pair", per_unit="|T_k ∩ S_k| / |T_k| of the query's two top-k sets")
def _overlap(student, teacher, k: int) -> np.ndarray:
    """Mean over queries of |T_k ∩ S_k| / |T_k|, the teacher's and the student's top-k document sets (1 when the
    teacher returned nothing)."""
    return overlap_at_k(student, teacher, k)


@ranking_metric("teacher_ndcg_at_{k}", "ranking_pair",
                per_unit="nDCG@k of the student's ranking, the teacher's top k as graded relevance")
def _teacher_ndcg(student, teacher, k: int) -> np.ndarray:
    """Mean over queries of the nDCG@k of the student's ranking when the teacher's top k are the only relevant
    documents, gain k − r at the teacher's rank r = 0..k−1: 1 exactly when the student returns the teacher's top k in
    its order."""
    return teacher_ndcg_at_k(student, teacher, k)
