"""BEIR-format retrieval datasets (Thakur et al. 2021): a corpus, queries and relevance judgments.

From the local mirror (``KDBENCH_DATA_DIR``), laid out as the hub's configs are named:

    <id>/corpus/corpus.jsonl     _id, title, text
    <id>/queries/queries.jsonl   _id, text
    <id>/qrels/<split>.jsonl     query-id, corpus-id, score

or from the hub when no mirror is set: ``<id>`` configs ``corpus`` and ``queries`` (BeIR/scifact...)
and the judgments in the sibling dataset ``<id>-qrels`` (BeIR/scifact-qrels), split ``<split>``.

Evaluated queries: those with at least one judgment of score ≥ 1 on a document of the corpus
used. BEIR evaluates the queries that appear in the qrels; a query whose judgments are all 0 has
no relevant document, so recall, nDCG and MRR are undefined for it (trec_eval would score it 0);
it is left out, and counted in the dataset record. Queries without judgments are never evaluated;
their text is available for unsupervised training (:attr:`BeirData.unjudged_queries`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from kdbench.data.loading import DatasetSpec, LoadedSplit, load_split, mirror_dir, mirror_holds
from kdbench.errors import KdbenchError

_COLUMNS = {
    "corpus": ("_id", "title", "text"),
    "queries": ("_id", "text"),
    "qrels": ("query-id", "corpus-id", "score"),
}


@dataclass
class BeirData:
    id: str
    split: str  # the qrels split
    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    query_ids: list[str]  # evaluated queries, in the queries file's order
    queries: list[str]
    qrels: dict[str, dict[str, int]]  # evaluated query id -> corpus id -> score (0 = judged non-relevant)
    unjudged_queries: list[tuple[str, str]]  # (id, text) of queries with no judgment at all
    source: str  # the mirror folder, or "hub"
    skipped_queries: int = 0  # judged, but no judgment ≥ 1 on this corpus (see the module docstring)

    def sha256(self) -> str:
        """Content hash of exactly what is used: the corpus (id, title, text), the evaluated queries
        (id, text) and their judgments, as canonical JSON lines."""
        h = hashlib.sha256()
        for part in (
            ({"_id": i, "title": t, "text": x} for i, t, x in zip(self.doc_ids, self.titles, self.texts)),
            ({"_id": i, "text": q} for i, q in zip(self.query_ids, self.queries)),
            ({"query-id": q, "corpus-id": d, "score": s} for q in self.query_ids for d, s in sorted(self.qrels[q].items())),
        ):
            for row in part:
                h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
                h.update(b"\n")
            h.update(b"\x00")  # section separator
        return h.hexdigest()

    def record(self) -> dict:
        """The run record's ``datasets`` entry: rows = evaluated queries."""
        return {
            "id": self.id, "config": None, "split": self.split, "rows": len(self.query_ids),
            "sha256": self.sha256(), "source": self.source, "corpus_docs": len(self.doc_ids),
            "judgments": sum(len(j) for j in self.qrels.values()),
            "queries_without_relevant_documents": self.skipped_queries,
            "queries_without_judgments": len(self.unjudged_queries),
        }


def _part(dataset_id: str, kind: str, split: str) -> LoadedSplit:
    if kind == "qrels":
        spec = DatasetSpec(dataset_id, "qrels", split) if mirror_holds(dataset_id) else DatasetSpec(f"{dataset_id}-qrels", None, split)
    else:
        spec = DatasetSpec(dataset_id, kind, kind)
    loaded = load_split(spec)
    missing = [c for c in _COLUMNS[kind] if c not in loaded.rows.column_names]
    if missing:
        raise KdbenchError(
            f"BEIR dataset {dataset_id}: {kind} ({loaded.source}) has no column {missing[0]!r} "
            f"(columns: {', '.join(loaded.rows.column_names)}; expected {', '.join(_COLUMNS[kind])})"
        )
    return loaded


def _unique(ids: list[str], dataset_id: str, kind: str) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise KdbenchError(f"BEIR dataset {dataset_id}: {kind} repeats the id {dup!r}")


def load_beir(dataset_id: str, split: str = "test", *, corpus_rows: int | None = None,
              query_rows: int | None = None) -> BeirData:
    """Load a BEIR dataset. ``corpus_rows`` keeps the first N documents (judgments of the others
    are dropped: a smaller, easier corpus, for smoke tests); ``query_rows`` keeps the first N
    evaluated queries."""
    corpus = _part(dataset_id, "corpus", split).rows
    queries = _part(dataset_id, "queries", split).rows
    qrels_part = _part(dataset_id, "qrels", split)
    if corpus_rows is not None and corpus_rows < len(corpus):
        corpus = corpus.select(range(corpus_rows))
    doc_ids = [str(x) for x in corpus["_id"]]
    _unique(doc_ids, dataset_id, "corpus")
    query_ids = [str(x) for x in queries["_id"]]
    _unique(query_ids, dataset_id, "queries")

    in_corpus = set(doc_ids)
    judged: dict[str, dict[str, int]] = {}
    seen_queries: set[str] = set()
    for q, d, s in zip(qrels_part.rows["query-id"], qrels_part.rows["corpus-id"], qrels_part.rows["score"]):
        q, d = str(q), str(d)
        seen_queries.add(q)
        if d in in_corpus:
            judged.setdefault(q, {})[d] = int(s)
    known = set(query_ids)
    unknown = sorted(seen_queries - known)
    if unknown:
        raise KdbenchError(f"BEIR dataset {dataset_id}: qrels/{split} judges query {unknown[0]!r}, which is not in the queries")

    evaluated = [i for i, q in enumerate(query_ids) if any(s >= 1 for s in judged.get(q, {}).values())]
    skipped = sum(1 for q in query_ids if q in seen_queries) - len(evaluated)
    if query_rows is not None:
        evaluated = evaluated[:query_rows]
    if not evaluated:
        raise KdbenchError(f"BEIR dataset {dataset_id}: no query has a relevant judgment in qrels/{split} on this corpus")
    texts = [str(x) for x in queries["text"]]
    return BeirData(
        id=dataset_id, split=split, doc_ids=doc_ids,
        titles=[str(t or "") for t in corpus["title"]], texts=[str(t or "") for t in corpus["text"]],
        query_ids=[query_ids[i] for i in evaluated], queries=[texts[i] for i in evaluated],
        qrels={query_ids[i]: judged[query_ids[i]] for i in evaluated},
        unjudged_queries=[(q, t) for q, t in zip(query_ids, texts) if q not in seen_queries],
        source=str(mirror_dir() / dataset_id) if mirror_holds(dataset_id) else "hub", skipped_queries=skipped,
    )
