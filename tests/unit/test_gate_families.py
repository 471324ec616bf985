"""The gate for every family, on run folders made from the pinned predictions of real runs (GLUE
classification and STS-B regression, WNUT-17 NER, DBpedia-Entity retrieval, GSM8K language modelling
and reasoning, lm-eval multiple choice and generation; tests/helpers/pinned_runs.py): a copy passes with every
metric gated or named as not gated, a degraded student fails on the metrics it degraded, and each
family's paired test is checked against an independent implementation on the very resamples the gate
uses (scikit-learn, scipy, seqeval, pytrec_eval, lm-eval's aggregations). No model is run."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import stats as st

from kdbench import gate
from kdbench.metrics.samples import recompute
from kdbench.metrics.spec import Resampling, kind, paired_test
from kdbench.metrics.stats import Resampled, adjust_p_values, paired_draws
from tests.helpers.pinned_runs import _degrade, write_run

RUNS = ["glue", "ner", "retrieval", "lm", "reasoning", "lm_eval"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("family-runs")
    return {run: (write_run(run, root / f"{run}-base"), write_run(run, root / f"{run}-again")) for run in RUNS}


@pytest.mark.parametrize("run", RUNS)
def test_a_rerun_passes_with_every_metric_gated_or_explained(folders, run):
    base, again = folders[run]
    result = gate.run_gate(base, again, n_samples=200)
    assert result.exit_code == 0 and result.checks
    assert all(c.delta == 0 and c.p_value == 1.0 and c.verdict == "unchanged" for c in result.checks)
    record = result.baseline.record
    gated = {(c.task, c.model, c.metric) for c in result.checks}
    for task, by_role in record["results"].items():
        blocks = list(by_role.items()) + list(record["pairs"].get(task, {}).items())
        for model, metrics in blocks:
            for name in metrics:
                assert (task, model, name) in gated or any(n.startswith(f"{task}/{model}/{name} (")
                                                           for n in result.not_gated), (task, model, name)
    assert recompute(result.baseline) == []


def _flip(p, rng, share):
    q = copy.copy(p)
    flip = rng.random(len(p.probs)) < share
    q.probs = np.where(flip[:, None], p.probs[:, ::-1], p.probs)
    return q


def _gold_tags(role, p):
    """The tiny pinned NER models tag everything O: a student that finds 70% of the sentences' entities
    (its word distributions one-hot on the gold tags there) is the better baseline to regress from."""
    if role != "student":
        return p
    q = copy.copy(p)
    keep = np.random.default_rng(0).random(len(p.probs)) < 0.7
    eye = np.eye(len(p.label_names))
    q.probs = [eye[y] if k else x for x, y, k in zip(p.probs, p.labels, keep)]
    return q


@pytest.mark.parametrize("run, failing, base_edit, cand_edit", [
    ("glue", {("cola", "accuracy"), ("mrpc", "accuracy"), ("mrpc", "f1"), ("stsb", "mse")}, None, _degrade),
    ("ner", {("wnut_17", "f1"), ("wnut_17", "recall"), ("wnut_17", "token_accuracy")}, _gold_tags, None),
    ("retrieval", {("dbpedia_entity_5k", "ndcg_at_10"), ("dbpedia_entity_5k", "mrr_at_10")}, None, _degrade),
    ("lm", {("gsm8k_text", "perplexity"), ("gsm8k_text", "bits_per_byte")}, None, _degrade),
])
def test_a_degraded_student_is_a_regression_on_what_it_degraded(folders, tmp_path, run, failing, base_edit, cand_edit):
    base = folders[run][0] if base_edit is None else write_run(run, tmp_path / "base", base_edit)
    worse = write_run(run, tmp_path / "worse", cand_edit)
    result = gate.run_gate(base, worse, n_samples=500)
    assert result.exit_code == 1
    regressions = {(c.task, c.metric) for c in result.regressions if c.model == "student"}
    assert failing <= regressions, result.markdown()
    assert all(c.model in ("student", "student|teacher") for c in result.regressions)  # the rest is unchanged


# --------------------------------------------------------------------------------------------------
# each family's paired test against an independent implementation, on the gate's own resamples
# --------------------------------------------------------------------------------------------------
def _tables(folders, tmp_path, run, task, model, edit=_degrade, base_edit=None):
    base = gate.load_side(folders[run][0] if base_edit is None else write_run(run, tmp_path / "base", base_edit),
                          "baseline")
    cand = gate.load_side(write_run(run, tmp_path / "cand", edit), "candidate")
    k = base.kind(task)
    b = gate.tables(base, task, model, k)
    ids = list(base.rows(task, model.split("|")[0]).index)
    return base, cand, b, gate.tables(cand, task, model, k, ids), ids


def _deltas(spec_kind, name, cand, base, n=60, seed=3):
    """The gate's resampled differences for a non-mean metric, with the draws it uses."""
    spec = kind(spec_kind).metric(name)
    how = Resampling(n, 0.95, seed, {"ece_bins": 15})
    draws = paired_draws(cand.n, n, seed)
    d = spec.samples(how.context(cand, draws)) - spec.samples(how.context(base, draws))
    test = paired_test(spec, cand, base, how)
    return d, draws, test


def test_classifier_f1_mcc_and_mcnemar_against_scikit_learn_and_scipy(folders, tmp_path):
    from sklearn.metrics import f1_score, matthews_corrcoef

    _, _, base, cand, _ = _tables(folders, tmp_path, "glue", "mrpc", "student")
    for name, ref in (("f1", f1_score), ("mcc", matthews_corrcoef)):
        d, draws, test = _deltas("classifier", name, cand, base)
        want = [ref(cand.labels[i], cand.probs[i].argmax(1)) - ref(base.labels[i], base.probs[i].argmax(1))
                for i in draws]
        np.testing.assert_allclose(d, want, atol=1e-12)
        assert test.p_value == pytest.approx(min(1, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))
    right_c, right_b = cand.probs.argmax(1) == cand.labels, base.probs.argmax(1) == base.labels
    t = paired_test(kind("classifier").metric("accuracy"), cand, base, Resampling(200))
    b, c = int(np.sum(right_c & ~right_b)), int(np.sum(~right_c & right_b))
    assert t.test == f"exact McNemar (b={b}, c={c})"
    assert t.p_value == pytest.approx(st.binomtest(b, b + c, 0.5).pvalue)


def test_label_loyalty_mcnemar_and_probability_loyalty_against_scipy(folders, tmp_path):
    from scipy.spatial.distance import jensenshannon

    _, _, base, cand, _ = _tables(folders, tmp_path, "glue", "cola", "student|teacher")
    t = paired_test(kind("classifier_pair").metric("label_loyalty"), cand, base, Resampling(200))
    agree_c = cand.teacher.argmax(1) == cand.student.argmax(1)
    agree_b = base.teacher.argmax(1) == base.student.argmax(1)
    b, c = int(np.sum(agree_c & ~agree_b)), int(np.sum(~agree_c & agree_b))
    assert t.p_value == pytest.approx(st.binomtest(b, b + c, 0.5).pvalue)
    t = paired_test(kind("classifier_pair").metric("probability_loyalty"), cand, base, Resampling(200, seed=4))
    per = [1 - jensenshannon(x, y, base=2) for x, y in zip(cand.teacher, cand.student)]
    per_b = [1 - jensenshannon(x, y, base=2) for x, y in zip(base.teacher, base.student)]
    assert t.delta == pytest.approx(np.mean(per) - np.mean(per_b), abs=1e-9)
    d = np.subtract(per, per_b)
    idx = Resampled(len(d), n_samples=200, seed=4, order_key=d).index  # paired_bootstrap's draws
    want = d[idx].mean(axis=1)
    lo, hi = np.quantile(want, [0.025, 0.975])
    assert t.ci == pytest.approx([lo, hi], abs=1e-9)


def test_regression_pearson_and_spearman_against_scipy(folders, tmp_path):
    _, _, base, cand, _ = _tables(folders, tmp_path, "glue", "stsb", "student")
    for name, ref in (("pearson", st.pearsonr), ("spearman", st.spearmanr)):
        d, draws, _ = _deltas("regression", name, cand, base)
        want = [ref(cand.pred[i], cand.gold[i])[0] - ref(base.pred[i], base.gold[i])[0] for i in draws]
        np.testing.assert_allclose(d, want, atol=1e-10)


def test_ner_entity_f1_over_sentences_against_seqeval(folders, tmp_path):
    from seqeval.metrics import f1_score

    base_side, cand_side, base, cand, ids = _tables(folders, tmp_path, "ner", "wnut_17", "student", edit=None,
                                                    base_edit=_gold_tags)
    tags = {}
    for label, side in (("b", base_side), ("c", cand_side)):
        rows = side.rows("wnut_17", "student", ids)
        tags[label] = ([t.split(" ") for t in rows["label"]], [t.split(" ") for t in rows["pred"]])
    d, draws, test = _deltas("ner", "f1", cand, base)
    want = [f1_score([tags["c"][0][j] for j in i], [tags["c"][1][j] for j in i])
            - f1_score([tags["b"][0][j] for j in i], [tags["b"][1][j] for j in i]) for i in draws]
    np.testing.assert_allclose(d, want, atol=1e-12)
    assert test.test == "paired bootstrap over sentences" and np.mean(d < 0) > 0.99


def test_retrieval_per_query_values_against_pytrec_eval(folders, tmp_path):
    import pytrec_eval

    from tests.helpers.pinned_runs import load

    pinned = load("retrieval")["dbpedia_entity_5k"]["predictions"]
    _, _, base, cand, ids = _tables(folders, tmp_path, "retrieval", "dbpedia_entity_5k", "student")
    for table, edit in ((base, lambda d: d), (cand, lambda d: list(reversed(d)))):
        f = pinned["student"]["fields"]
        qrels = {q: dict(j) for q, j in zip(f["example_ids"], f["qrels"])}
        run = {q: {d: float(len(docs) - r) for r, d in enumerate(edit(docs))}
               for q, docs in zip(f["example_ids"], f["doc_ids"])}
        ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
        np.testing.assert_allclose(table.values["ndcg_at_10"], [ref[q]["ndcg_cut_10"] for q in ids], atol=1e-9)
    t = paired_test(kind("ranking").metric("ndcg_at_10"), cand, base, Resampling(300))
    assert t.test == "paired bootstrap over queries" and t.ci[1] < 0


def test_language_modelling_ratios_over_documents_against_lm_eval(folders, tmp_path):
    from lm_eval.api.metrics import bits_per_byte, weighted_mean, weighted_perplexity

    _, _, base, cand, _ = _tables(folders, tmp_path / "own", "lm", "gsm8k_text", "student")
    for name, ref, den in (("perplexity", weighted_perplexity, "tokens"), ("bits_per_byte", bits_per_byte, "bytes")):
        d, draws, _ = _deltas("lm", name, cand, base, n=40)

        def agg(t, i, ref=ref, den=den):
            return ref(list(zip(-t.nll[i], getattr(t, den)[i])))

        np.testing.assert_allclose(d, [agg(cand, i) - agg(base, i) for i in draws], rtol=1e-10)
    _, _, base, cand, _ = _tables(folders, tmp_path / "pair", "lm", "gsm8k_text", "student|teacher",
                                  edit=lambda role, p: p)
    d, draws, _ = _deltas("lm_pair", "acceptance_rate", cand, base, n=40)
    assert np.all(d == 0)  # the same predictions: no difference on any resample
    keep = base.tokens > 0
    want = weighted_mean(list(zip(base.sums["acceptance_rate"][keep], base.tokens[keep])))
    assert kind("lm_pair").metric("acceptance_rate").value(Resampling(10).context(base)) == pytest.approx(want)


def test_exact_match_of_reasoning_and_lm_eval_is_mcnemar(folders, tmp_path):
    flip = lambda role, p: _flip(p, np.random.default_rng(1), 0.5) if p.kind == "lm_eval_choice" and role == "student" \
        else p  # noqa: E731
    for run, task, name in (("reasoning", "gsm8k", "exact_match"), ("lm_eval", "lm_eval_sst2", "acc"),
                            ("lm_eval", "lm_eval_gsm8k", "exact_match")):
        base_side, _, base, cand, _ = _tables(folders, tmp_path / task, run, task, "student", edit=flip)
        spec = kind(base_side.kind(task)).metric(name)
        t = paired_test(spec, cand, base, Resampling(200))
        assert t.test.startswith("exact McNemar"), (task, t.test)
        b, c = t.mcnemar["b"], t.mcnemar["c"]
        assert t.p_value == (1.0 if b + c == 0 else pytest.approx(st.binomtest(b, b + c, 0.5).pvalue))


# --------------------------------------------------------------------------------------------------
# multiple comparisons, tolerances, selection, notes
# --------------------------------------------------------------------------------------------------
def test_holm_and_bonferroni_adjustments():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, 1·0.04, made monotone
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_p_values(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust_p_values(p, "none") == p
    rng = np.random.default_rng(0)
    for _ in range(50):  # Holm by its definition: reject H_(i) iff p_(j) ≤ α/(m − j + 1) for all j ≤ i
        q = rng.random(8) ** 3
        adj, alpha = np.array(adjust_p_values(q, "holm")), 0.05
        order = np.argsort(q)
        ok = np.cumprod(q[order] <= alpha / (8 - np.arange(8))).astype(bool)
        assert set(order[ok]) == set(np.flatnonzero(adj <= alpha))
        assert np.all(adj >= q) and np.all(adj <= np.minimum(1, 8 * q) + 1e-15)


def test_correction_decides_borderline_verdicts(folders, tmp_path):
    slightly = lambda role, p: _flip(p, np.random.default_rng(5), 0.12) if role == "student" and p.kind == "classifier" \
        else p  # noqa: E731
    worse = write_run("glue", tmp_path / "slightly", slightly)
    raw = gate.run_gate(folders["glue"][0], worse, correction="none", n_samples=300)
    holm = gate.run_gate(folders["glue"][0], worse, n_samples=300)
    bonf = gate.run_gate(folders["glue"][0], worse, correction="bonferroni", n_samples=300)
    assert len(raw.regressions) >= len(holm.regressions) >= len(bonf.regressions)
    assert all(c.p_corrected >= c.p_value for c in holm.checks)
    assert "p (holm)" in holm.markdown() and "Holm-corrected p < 0.05" in holm.markdown()


def test_metrics_selection_and_relative_tolerance(folders, tmp_path):
    better, worse = write_run("ner", tmp_path / "better", _gold_tags), folders["ner"][1]
    only = gate.run_gate(better, worse, metrics=["f1*"], n_samples=200)
    assert {c.metric for c in only.checks} == {"f1"} | {m for m in only.baseline.record["results"]["wnut_17"]["student"]
                                                       if m.startswith("f1_")}
    assert any("(not in --metrics)" in n for n in only.not_gated)
    with pytest.raises(gate.KdbenchError, match="--metrics bleu: matches no metric"):
        gate.run_gate(better, worse, metrics=["bleu"])
    f1 = next(c for c in only.checks if (c.model, c.metric) == ("student", "f1"))
    loose = gate.parse_tolerances([f"f1={abs(f1.delta) / f1.baseline * 100 + 1:.3f}%"])
    relaxed = gate.run_gate(better, worse, loose, metrics=["f1"], n_samples=200)
    assert {c.verdict for c in relaxed.checks if c.model == "student"} == {"worse, within tolerance"}
    assert str(loose["f1"]).endswith("%")


def test_efficiency_is_gated_with_a_relative_tolerance_on_the_same_device_only(tmp_path):
    eff = {"teacher": {"params": 1, "latency_ms_b1": 4.0, "latency_ms_b32": 0.50, "throughput_eps": 100.0,
                       "peak_rss_mb": 500.0}}
    slower = copy.deepcopy(eff)
    slower["teacher"]["latency_ms_b32"] = 0.60
    base = write_run("reasoning", tmp_path / "base", extra={"efficiency": eff, "efficiency_task": "gsm8k"})
    cand = write_run("reasoning", tmp_path / "cand", extra={"efficiency": slower, "efficiency_task": "gsm8k"})
    result = gate.run_gate(base, cand, gate.parse_tolerances(["latency_ms_b32=+15%"]), n_samples=100)
    (check,) = [c for c in result.checks if c.task == "efficiency"]
    assert (check.metric, check.verdict, check.p_value) == ("latency_ms_b32", "regression", None)
    assert result.exit_code == 1 and "relative tolerance" in result.markdown()
    ok = gate.run_gate(base, cand, gate.parse_tolerances(["latency_ms_b32=25%"]), n_samples=100)
    assert ok.exit_code == 0
    assert any(n.startswith("efficiency/latency_ms_b1 (timing is gated only with") for n in ok.not_gated)
    gpu = write_run("reasoning", tmp_path / "gpu", extra={"efficiency": slower, "efficiency_task": "gsm8k",
                                                            "environment": {"device": "cuda:0", "device_type": "cuda",
                                                                            "gpu_name": "NVIDIA H200"}})
    across = gate.run_gate(base, gpu, gate.parse_tolerances(["latency_ms_b32=+15%"]), n_samples=100)
    assert across.exit_code == 0 and not [c for c in across.checks if c.task == "efficiency"]
    assert any(n.startswith("efficiency figures (baseline on cpu, candidate on cuda: NVIDIA H200") for n in across.not_gated)
    for bad in ("latency_ms_b32=0.1", "accuracy=-1%", "f1=abc"):
        with pytest.raises(gate.KdbenchError):
            gate.run_gate(base, cand, gate.parse_tolerances([bad]))


def test_different_trainer_revisions_are_said_plainly(tmp_path):
    base = write_run("reasoning", tmp_path / "base", extra={"trainer_revision": "aaaa"})
    cand = write_run("reasoning", tmp_path / "cand", extra={"trainer_revision": "bbbb"})
    text = gate.run_gate(base, cand, n_samples=100).markdown()
    assert "trainer revision `aaaa`" in text and "`bbbb`" in text and "make baselines" in text
