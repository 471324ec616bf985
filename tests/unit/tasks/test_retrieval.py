"""Retrieval family: BEIR loading, bi-encoder embeddings, exact search, ranking metrics (checked
against pytrec_eval on real rankings of the real models), teacher–student metrics, the embedding
KD recipe. Real models, the local DBpedia-Entity 5k mirror, small corpus slices."""
from __future__ import annotations

import json

import numpy as np
import pytest
import pytrec_eval  # pytrec-eval-terrier (dev dependency): trec_eval 9 as a Python module
import torch
import torch.nn.functional as F

from kdbench.backends.embeddings import HFEmbedder, search
from kdbench.config import EvalConfig
from kdbench.data.beir import load_beir
from kdbench.errors import KdbenchError
from kdbench.metrics import retrieval as rm
from kdbench.predictions.ranking import RankingPredictions
from kdbench.tasks.base import RunSettings
from kdbench.tasks.registry import get_task, load_spec
from tests.helpers import retrieval as shared
from tests.helpers.retrieval import CORPUS_ROWS, DATASET, STUDENT_ID, TEACHER_ID, small_task

# fixtures shared with tests/integration/recipes/test_retrieval.py (pytest finds them as attributes of this module)
task, models = shared.task, shared.models


SETTINGS = RunSettings(dtype="bf16", max_length=64, seed=0, eval=EvalConfig(bootstrap_samples=1000))


@pytest.fixture(scope="module")
def rankings(task, models):
    """Real rankings of the 300-document slice by both models (bf16, as the pipeline runs them)."""
    data = task.eval_data(None)
    return {role: task.predict(m, data, role, SETTINGS) for role, m in models.items()}


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def test_beir_mirror_loads_corpus_queries_and_judgments(data_dir):
    data = load_beir(DATASET, "test")
    assert len(data.doc_ids) == 5000 and len(set(data.doc_ids)) == 5000
    # 50 queries: 40 with judgments (all have a relevant document), 10 without any
    assert len(data.query_ids) == 40 and len(data.unjudged_queries) == 10
    assert not set(data.query_ids) & {q for q, _ in data.unjudged_queries}
    raw = [json.loads(line) for line in (data_dir / DATASET / "qrels" / "test.jsonl").open()]
    assert sum(len(j) for j in data.qrels.values()) == len(raw) == 3709
    first = raw[0]
    assert data.qrels[first["query-id"]][first["corpus-id"]] == first["score"]
    assert {s for j in data.qrels.values() for s in j.values()} == {0, 1, 2}
    record = data.record()
    assert record["rows"] == 40 and record["corpus_docs"] == 5000 and record["queries_without_judgments"] == 10
    assert record["sha256"] == load_beir(DATASET, "test").sha256()  # deterministic


def test_beir_slices_drop_judgments_of_missing_documents(data_dir):
    full, small = load_beir(DATASET), load_beir(DATASET, corpus_rows=CORPUS_ROWS)
    assert small.doc_ids == full.doc_ids[:CORPUS_ROWS]
    kept = set(small.doc_ids)
    assert all(d in kept for j in small.qrels.values() for d in j)
    assert all(any(s >= 1 for s in j.values()) for j in small.qrels.values())
    assert len(small.query_ids) == 23 and small.record()["queries_without_relevant_documents"] == 17
    assert small.sha256() != full.sha256()
    assert load_beir(DATASET, query_rows=5).query_ids == full.query_ids[:5]


def _mirror(root, corpus=None, queries=None, qrels=None):
    base = root / "BeIR" / "toy"
    for kind, rows, name in (("corpus", corpus, "corpus"), ("queries", queries, "queries"), ("qrels", qrels, "test")):
        if rows is not None:
            (base / kind).mkdir(parents=True, exist_ok=True)
            (base / kind / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


DOCS = [{"_id": "d1", "title": "A", "text": "alpha"}, {"_id": "d2", "title": "B", "text": "beta"}]
QUERIES = [{"_id": "q1", "text": "alpha?"}]
QRELS = [{"query-id": "q1", "corpus-id": "d1", "score": 1}]


@pytest.mark.parametrize("layout, message", [
    (dict(corpus=DOCS, queries=QUERIES), "no folder"),  # qrels missing
    (dict(corpus=[{"_id": "d1", "text": "alpha"}], queries=QUERIES, qrels=QRELS), "has no column 'title'"),
    (dict(corpus=DOCS, queries=QUERIES, qrels=[{"query-id": "q9", "corpus-id": "d1", "score": 1}]), "query 'q9'"),
    (dict(corpus=DOCS + DOCS[:1], queries=QUERIES, qrels=QRELS), "repeats the id 'd1'"),
    (dict(corpus=DOCS, queries=QUERIES, qrels=[{"query-id": "q1", "corpus-id": "d1", "score": 0}]), "no query has a relevant"),
])
def test_beir_bad_layout_is_one_clear_error(tmp_path, monkeypatch, layout, message):
    _mirror(tmp_path, **layout)
    monkeypatch.setenv("KDBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(KdbenchError, match=message) as err:
        load_beir("BeIR/toy", "test")
    assert "BeIR/toy" in str(err.value) and "\n" not in str(err.value)


def test_retrieval_spec_checks(tmp_path, data_dir):
    good = (get_task("dbpedia_entity_5k").spec.model_dump(mode="json"))
    for change, message in ((dict(metrics=["ndcg_at_10", "precision_at_5"]), "unknown ranking metric 'precision_at_5'"),
                            (dict(top_k=50), "recall_at_100: needs the top 100"),
                            (dict(pair_metrics=["rbo"]), "unknown ranking pair metric 'rbo'"),
                            (dict(doc_template="{title}: {body}"), "only {title} and {text}")):
        path = tmp_path / "t.yaml"
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(KdbenchError, match=message):
            load_spec(path)
    path = tmp_path / "ok.yaml"
    path.write_text(json.dumps(good))
    assert load_spec(path).name == "dbpedia_entity_5k"
    assert get_task("beir_scifact").spec.dataset.id == "BeIR/scifact"  # hub-only task: its spec loads


# ---------------------------------------------------------------------------------------------
# embeddings and search
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_id", [TEACHER_ID, STUDENT_ID])
def test_embeddings_match_sentence_transformers_definition(task, models, model_id):
    """Mean pooling over the attention mask + L2 normalisation, computed by hand with plain
    transformers in fp32 on one padded batch: our fp32 embeddings (length-sorted batches of 4, other
    padding) agree to 1e-5 per coordinate; bf16 ones to cosine ≥ 0.99."""
    role = "teacher" if model_id == TEACHER_ID else "student"
    m = models[role]
    data = task.eval_data(None)
    texts = task.documents(data)[:12] + data.queries[:4]
    enc = m.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = m.model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), p=2, dim=1).numpy()

    fp32 = HFEmbedder(m.model, m.tokenizer, "fp32", max_length=128, batch_size=4).embed(texts)
    np.testing.assert_allclose(fp32, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-6)
    bf16 = HFEmbedder(m.model, m.tokenizer, "bf16", max_length=128, batch_size=4).embed(texts)
    assert np.min(np.sum(bf16 * expected, axis=1)) > 0.99


def test_search_is_exact_across_blocks_and_excludes_identical_ids():
    rng = np.random.default_rng(0)
    q, d = rng.standard_normal((7, 16)).astype(np.float32), rng.standard_normal((130, 16)).astype(np.float32)
    exclude = np.array([-1, 5, 129, -1, 0, 64, 63])
    idx, scores = search(q, d, 20, exclude=exclude, query_block=3, doc_block=50)
    full = q @ d.T
    full[np.arange(7)[exclude >= 0], exclude[exclude >= 0]] = -np.inf
    want = np.argsort(-full, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(scores, np.take_along_axis(full, want, axis=1), rtol=1e-6)
    assert not any(e in row for e, row in zip(exclude, idx) if e >= 0)
    idx, _ = search(q[:2], d[:10], 100, exclude=np.array([3, -1]))  # k shrinks so an excluded doc never fills a slot
    assert idx.shape == (2, 9) and 3 not in idx[0]


# ---------------------------------------------------------------------------------------------
# metrics against pytrec_eval on real rankings
# ---------------------------------------------------------------------------------------------
MEASURES = {"ndcg_cut.10,100", "recall.10,100", "map_cut.100"}
PYTREC_NAMES = {"ndcg_at_10": "ndcg_cut_10", "ndcg_at_100": "ndcg_cut_100", "recall_at_10": "recall_10",
                "recall_at_100": "recall_100", "map_at_100": "map_cut_100"}


def _pytrec(qrels: dict, preds: RankingPredictions, cut: int | None = None, measures=MEASURES) -> dict:
    run = {q: {d: float(s) for d, s in list(zip(docs, scores))[:cut]}
           for q, docs, scores in zip(preds.example_ids, preds.doc_ids, preds.scores)}
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_metrics_match_pytrec_eval_on_real_rankings(task, rankings, role):
    preds = rankings[role]
    qrels = dict(zip(preds.example_ids, preds.qrels))
    assert len(preds.example_ids) == 23 and all(len(d) == 100 for d in preds.doc_ids)
    ref = _pytrec(qrels, preds)
    for ours, theirs in PYTREC_NAMES.items():
        np.testing.assert_allclose(rm.per_query("ranking", ours, preds.doc_ids, preds.qrels), [ref[q][theirs] for q in preds.example_ids],
                                   atol=1e-9, rtol=0, err_msg=ours)
    # MRR@10 = trec_eval's reciprocal rank of the ranking cut at 10 (BEIR's mrr@10)
    ref10 = _pytrec(qrels, preds, cut=10, measures={"recip_rank"})
    np.testing.assert_allclose(rm.per_query("ranking", "mrr_at_10", preds.doc_ids, preds.qrels), [ref10[q]["recip_rank"] for q in preds.example_ids],
                               atol=1e-9, rtol=0)
    # the ranking is the one trec_eval builds from the scores: score decreasing, ties by id decreasing
    for docs, scores in zip(preds.doc_ids, preds.scores):
        by_id = sorted(zip(docs, scores), key=lambda x: x[0], reverse=True)
        assert list(docs) == [d for d, _ in sorted(by_id, key=lambda x: -x[1])]  # stable sort
    # the metrics are not trivially 0 or 1 on this slice
    assert 0.2 < rm.per_query("ranking", "ndcg_at_10", preds.doc_ids, preds.qrels).mean() < 0.95


def test_ties_follow_trec_eval(rankings, task):
    """Scores rounded to 2 decimals create many ties; after :func:`trec_order` every metric still
    equals pytrec_eval's, which sorts ties by document id, decreasing."""
    preds = rankings["teacher"]
    ids = np.array(preds.doc_ids, dtype=object).astype(str)
    rounded = np.round(np.array(preds.scores, dtype=np.float64), 2)
    rng = np.random.default_rng(1)
    shuffled = np.stack([rng.permutation(ids.shape[1]) for _ in range(len(ids))])  # any input order
    ids, rounded = np.take_along_axis(ids, shuffled, 1), np.take_along_axis(rounded, shuffled, 1)
    order = rm.trec_order(ids, rounded)
    tied = RankingPredictions(task.name, "teacher", preds.example_ids,
                              doc_ids=[list(r) for r in np.take_along_axis(ids, order, 1)],
                              scores=list(np.take_along_axis(rounded, order, 1)), qrels=preds.qrels)
    assert sum(len(s) - len(set(s)) for s in tied.scores) > 500  # many ties
    ref = _pytrec(dict(zip(preds.example_ids, preds.qrels)), tied)
    for ours, theirs in PYTREC_NAMES.items():
        np.testing.assert_allclose(rm.per_query("ranking", ours, tied.doc_ids, tied.qrels), [ref[q][theirs] for q in preds.example_ids], atol=1e-9)


def test_teacher_ndcg_matches_pytrec_eval_with_teacher_pseudo_judgments(rankings, task):
    """teacher_ndcg_at_10 = trec_eval's ndcg_cut_10 of the student's run when the teacher's top 10
    are judged with gains 10..1."""
    s, t = rankings["student"], rankings["teacher"]
    pseudo = {q: {d: 10 - r for r, d in enumerate(docs[:10])} for q, docs in zip(t.example_ids, t.doc_ids)}
    ref = _pytrec(pseudo, s, measures={"ndcg_cut.10"})
    ours = rm.per_query("ranking_pair", "teacher_ndcg_at_10", s.doc_ids, t.doc_ids)
    np.testing.assert_allclose(ours, [ref[q]["ndcg_cut_10"] for q in s.example_ids], atol=1e-9)
    overlap = rm.per_query("ranking_pair", "overlap_at_10", s.doc_ids, t.doc_ids)
    np.testing.assert_allclose(overlap, [len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(s.doc_ids, t.doc_ids)])
    assert 0 < overlap.mean() < 1


def test_scores_pairs_and_comparison(task, rankings):
    t, s = rankings["teacher"], rankings["student"]
    scores = task.score(t, SETTINGS)
    assert set(scores) == set(task.spec.metrics)
    for name, m in scores.items():
        assert m["ci"][0] <= m["value"] <= m["ci"][1], name
    for name in ("ndcg_at_10", "mrr_at_10", "map_at_100"):  # (recall@100 is 1 on 300 documents)
        assert scores[name]["ci"][0] < scores[name]["ci"][1], name  # 23 queries: a real interval
    same = task.score_pair(t, t, SETTINGS)
    assert same["overlap_at_10"] == {"value": 1.0, "ci": [1.0, 1.0]}
    assert same["teacher_ndcg_at_10"]["value"] == pytest.approx(1.0, abs=1e-12)
    pair = task.score_pair(s, t, SETTINGS)
    assert pair["overlap_at_10"]["ci"][0] <= pair["overlap_at_10"]["value"] <= pair["overlap_at_10"]["ci"][1]
    diff = task.compare(t, s, SETTINGS)["ndcg_at_10_difference"]
    want = rm.per_query("ranking", "ndcg_at_10", t.doc_ids, t.qrels).mean() - rm.per_query("ranking", "ndcg_at_10", s.doc_ids, s.qrels).mean()
    assert diff["value"] == pytest.approx(want, abs=1e-12) and diff["ci"][0] <= diff["value"] <= diff["ci"][1]
    assert task.compare(t, t, SETTINGS)["ndcg_at_10_p_value"]["value"] == 1.0


def test_samples_frame(rankings, task):
    preds = rankings["teacher"]
    frame = task.evaluate(preds, SETTINGS)[1]
    assert list(frame.columns)[:7] == ["task", "example_id", "role", "label", "pred", "probs", "correct"]
    row = frame.iloc[0]
    assert row["example_id"] == preds.example_ids[0] and row["pred"].split() == preds.doc_ids[0][:10]
    relevant = {d for d, v in preds.qrels[0].items() if v >= 1}
    assert set(row["label"].split()) == relevant and row["probs"] == [] and frame["correct"].isna().all()
    assert row["scores"] == pytest.approx(list(preds.scores[0][:10]))
    for name in task.spec.metrics:  # per-query values: the metric is their mean
        want = rm.per_query("ranking", name, preds.doc_ids, preds.qrels).mean()
        assert name in frame and frame[name].mean() == pytest.approx(want)


def test_embedding_recipe_rejects_a_logit_loss(tmp_path, data_dir):
    from kdbench.config import load_suite
    from kdbench.distill.recipes import run_recipe as run

    with pytest.raises(KdbenchError, match="distill.loss: loss .forward_kl. works on logits; .*cosine_embedding"):
        run(small_task(), load_suite("retrieval", ["distill.loss=forward_kl"]), tmp_path)
