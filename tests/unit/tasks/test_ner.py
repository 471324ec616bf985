"""NER family: spec loading, tag validation, sub-word alignment, and entity metrics checked against
seqeval on real model predictions over the real WNUT-17 slice."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from kdbench.config import EvalConfig
from kdbench.errors import KdbenchError
from kdbench.metrics import ner as ner_metrics
from kdbench.metrics import spec as metric_spec
from kdbench.tasks import get_task
from kdbench.tasks.base import LoadedModel, RunSettings
from tests.helpers import ROOT
from tests.helpers import ner as shared
from tests.helpers.ner import ROWS, TEACHER_ID

# fixtures shared with tests/integration/recipes/test_ner.py (pytest finds them as attributes of this module)
task, data, run_settings, untrained, preds = shared.task, shared.data, shared.run_settings, shared.untrained, shared.preds


WNUT = Path("leondz/wnut_17/wnut_17")


# spec loading and tags -------------------------------------------------------------------------
def test_builtin_specs_load(data_dir):
    wnut, conll = get_task("wnut_17"), get_task("conll2003")
    assert wnut.family == conll.family == "ner" and wnut.head == "token_classification"
    assert wnut.types == ["corporation", "creative-work", "group", "location", "person", "product"]
    assert conll.types == ["LOC", "MISC", "ORG", "PER"]
    assert conll.spec.dataset.id == "eriktks/conll2003" and conll.label_names[:3] == ["O", "B-PER", "I-PER"]


def test_string_tags_become_label_ids(data, task):
    raw = [json.loads(line) for line in (Path(data.split.source)).read_text().splitlines()[:ROWS]]
    assert data.ids == [r["id"] for r in raw]
    for r, ids in zip(raw, data.labels):
        assert [task.label_names[i] for i in ids] == r["ner_tags"]
    assert task.dataset_record(data)["entities"] == len(get_entities([r["ner_tags"] for r in raw]))


def _mirror_copy(tmp_path: Path, rows: list[dict], dataset: str = "local/wnut_ids") -> None:
    folder = tmp_path / "mirror" / dataset / "default"
    folder.mkdir(parents=True)
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _task_yaml(tmp_path: Path, name: str, dataset: str, **extra) -> Path:
    wnut = (ROOT / "kdbench/tasks/builtin/wnut_17.yaml").read_text()
    text = wnut.replace("name: wnut_17", f"name: {name}").replace("id: leondz/wnut_17", f"id: {dataset}")
    text = text.replace("config: wnut_17", "config: null")
    for key, value in extra.items():
        text = text.replace(key, value)
    folder = tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    return folder


def test_class_id_tags_give_the_same_labels(tmp_path, monkeypatch, data_dir, task, data):
    raw = [json.loads(line) for line in (data_dir / WNUT / "validation.jsonl").read_text().splitlines()[:40]]
    as_ids = [{**r, "ner_tags": [task.label_names.index(t) for t in r["ner_tags"]]} for r in raw]
    _mirror_copy(tmp_path, as_ids)
    folder = _task_yaml(tmp_path, "wnut_ids", "local/wnut_ids")
    monkeypatch.setenv("KDBENCH_DATA_DIR", str(tmp_path / "mirror"))
    ids_task = get_task("wnut_ids", [folder])
    loaded = ids_task.eval_data(None)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.labels, data.labels[:40]))


def test_unknown_tag_is_one_line_naming_task_split_example(tmp_path, monkeypatch, data_dir):
    raw = [json.loads(line) for line in (data_dir / WNUT / "validation.jsonl").read_text().splitlines()[:5]]
    raw[3]["ner_tags"][0] = "B-animal"
    _mirror_copy(tmp_path, raw, "local/bad")
    folder = _task_yaml(tmp_path, "bad_tags", "local/bad")
    monkeypatch.setenv("KDBENCH_DATA_DIR", str(tmp_path / "mirror"))
    with pytest.raises(KdbenchError) as err:
        get_task("bad_tags", [folder]).eval_data(None)
    message = str(err.value)
    assert "\n" not in message
    assert "task bad_tags" in message and "split validation" in message and f"example {raw[3]['id']}" in message
    assert "'B-animal'" in message


def test_out_of_range_class_id_is_an_error(tmp_path, monkeypatch, data_dir):
    raw = [json.loads(line) for line in (data_dir / WNUT / "validation.jsonl").read_text().splitlines()[:3]]
    rows = [{**r, "ner_tags": [0] * len(r["tokens"])} for r in raw]
    rows[1]["ner_tags"][2] = 13
    _mirror_copy(tmp_path, rows, "local/bad_ids")
    folder = _task_yaml(tmp_path, "bad_ids", "local/bad_ids")
    monkeypatch.setenv("KDBENCH_DATA_DIR", str(tmp_path / "mirror"))
    with pytest.raises(KdbenchError, match=r"task bad_ids: split validation, example 1: tag id 13 outside 0..12"):
        get_task("bad_ids", [folder]).eval_data(None)


@pytest.mark.parametrize("old, new, expected", [
    ("label_names: [O, ", "label_names: [", "needs the outside tag 'O'"),
    ("B-corporation, I-corporation", "B-corporation, X-corporation", "'X-corporation' is not an IOB2 tag"),
    ("B-product, I-product]", "I-product]", "'I-product' has no matching B- tag"),
    ("f1_person", "f1_persons", "f1_persons: no entity type 'persons' in label_names"),
    ("entity_f1_vs_teacher]", "kl_teacher_student]", "unknown ner pair metric 'kl_teacher_student'"),
])
def test_bad_specs_are_rejected_at_load(tmp_path, data_dir, old, new, expected):
    folder = _task_yaml(tmp_path, "broken", "leondz/wnut_17", **{old: new})
    with pytest.raises(KdbenchError, match=expected):
        get_task("broken", [folder])


# alignment ---------------------------------------------------------------------------------------
def test_labels_on_first_sub_token_only(untrained):
    from kdbench.backends.token_classifier import encode_words

    tok = untrained.tokenizer
    words = ["Empire", "Statebuildingxyz", "\ufe0f", "@paulwalk", "rocks"]
    labels = np.array([7, 8, 0, 9, 0])
    enc = encode_words(tok, [words], max_length=64)
    ids = enc.features[0]["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    # the variation selector becomes no sub-token at all: unseen, so it has no position
    assert enc.words[0].tolist() == [0, 1, 3, 4]
    assert enc.seen(0).tolist() == [True, True, False, True, True]
    for pos, w in zip(enc.positions[0], enc.words[0]):
        assert pieces[pos] == tok.tokenize(words[w])[0]
    targets = enc.token_labels(0, labels)
    assert len(tok.tokenize("Statebuildingxyz")) > 1  # a multi-piece word, so -100 must appear inside it
    expected = np.full(len(ids), -100)
    expected[enc.positions[0]] = labels[enc.words[0]]
    assert targets.tolist() == expected.tolist()
    assert targets[0] == targets[-1] == -100  # [CLS], [SEP]


def test_gather_index_follows_the_padding_side(untrained):
    import copy

    from kdbench.backends.batching import collate
    from kdbench.backends.token_classifier import encode_words

    sentences = [["a"], ["a", "longer", "sentence"], ["Statebuildingxyz", "x"]]
    for side in ("right", "left"):
        tok = copy.deepcopy(untrained.tokenizer)
        tok.padding_side = side
        enc = encode_words(tok, sentences, max_length=64)
        batch = collate(tok, enc.features)
        rows, cols = enc.gather_index([0, 1, 2], batch["input_ids"].shape[1], side)
        got = tok.convert_ids_to_tokens(batch["input_ids"][rows, cols].tolist())
        assert got == [tok.tokenize(w)[0] for s in sentences for w in s], side


def test_truncated_words_predict_o_and_their_entities_count_as_misses(task, data, untrained, preds):
    cut = type(task)(task.spec.model_copy(update={"max_length": 12}))  # the task's limit beats the suite's
    short = cut.predict(untrained, data, "teacher", RunSettings(eval=EvalConfig(bootstrap_samples=100)))
    assert sum((~s).sum() for s in short.seen) > 0.3 * preds.word_counts.sum()
    for p, s in zip(short.pred_tags, short.seen):
        assert all(t == "O" for t, seen in zip(p, s) if not seen)
    # gold entities past the cut are still in the denominator
    gold, pred = short.gold_tags, short.pred_tags
    scores = cut.score(short, RunSettings(eval=EvalConfig(bootstrap_samples=100)))
    assert scores["recall"]["value"] == recall_score(gold, pred)
    unseen = sum((~s).sum() for s in short.seen) / short.word_counts.sum()
    assert scores["unseen_word_rate"]["value"] == pytest.approx(unseen)


# metrics against seqeval --------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-a", "I-a", "B-b", "I-b", "B-a-b", "I-a-b"]), max_size=12))
def test_entities_match_seqeval_get_entities(tags):
    assert ner_metrics.entities(tags) == get_entities(tags)


def test_scores_equal_seqeval_on_real_predictions(task, preds, run_settings):
    gold, pred = preds.gold_tags, preds.pred_tags
    assert any(t != "O" for row in pred for t in row)
    scores = task.score(preds, run_settings)
    assert scores["f1"]["value"] == f1_score(gold, pred)
    assert scores["precision"]["value"] == precision_score(gold, pred)
    assert scores["recall"]["value"] == recall_score(gold, pred)
    assert scores["token_accuracy"]["value"] == accuracy_score(gold, pred)
    assert set(scores) == set(task.spec.metrics)
    for name, m in scores.items():
        lo, hi = m["ci"]
        assert lo <= m["value"] <= hi, name


def test_per_type_f1_equals_seqeval_classification_report(task, preds, run_settings):
    report = classification_report(preds.gold_tags, preds.pred_tags, output_dict=True, zero_division=0)
    scores = task.score(preds, run_settings)
    for kind in task.types:
        expected = report[kind]["f1-score"] if kind in report else 0.0
        assert scores[f"f1_{ner_metrics.entity_type_key(kind)}"]["value"] == expected, kind


def test_bootstrap_replicates_are_seqeval_on_resampled_sentences(task, preds):
    """The vectorised resampling recomputes exactly what seqeval gives on each resampled set."""
    gold, pred = preds.gold_tags, preds.pred_tags
    ctx = task.table(preds).context(n_samples=12, seed=5, options={})
    f1, precision = (metric_spec.kind("ner").metric(name).samples(ctx) for name in ("f1", "precision"))
    for b, idx in enumerate(ctx.index):
        g, p = [gold[i] for i in idx], [pred[i] for i in idx]
        assert f1[b] == pytest.approx(f1_score(g, p), abs=1e-12)
        assert precision[b] == pytest.approx(precision_score(g, p), abs=1e-12)


def test_metric_names_are_snake_case(task):
    assert ner_metrics.entity_type_key("creative-work") == "creative_work"
    assert ner_metrics.entity_type_key("PER") == "per"


# teacher-student ---------------------------------------------------------------------------------
def test_identical_predictions_are_fully_loyal(task, preds, run_settings):
    twin = type(preds)(preds.task, "student", preds.example_ids, preds.label_names, preds.probs, preds.seen, preds.labels)
    pair = task.score_pair(twin, preds, run_settings)
    assert set(pair) == set(task.spec.pair_metrics)
    for name in ("label_loyalty", "probability_loyalty", "entity_f1_vs_teacher"):
        assert pair[name]["value"] == pytest.approx(1.0) and pair[name]["ci"] == pytest.approx([1.0, 1.0]), name
    diff = task.compare(twin, preds, run_settings)
    assert diff["f1_difference"]["value"] == 0.0 and diff["f1_difference"]["ci"] == [0.0, 0.0]
    assert diff["f1_difference_p_value"]["value"] == 1.0


def test_pair_metrics_against_independent_computations(task, data, preds, run_settings):
    import torch

    from kdbench.models.loading import load_for_head, load_tokenizer

    torch.manual_seed(1)  # another untrained head: a different "student"
    other = load_for_head(TEACHER_ID, "token_classification", fresh_head=True, **task.head_config())
    student = task.predict(LoadedModel(other.eval(), load_tokenizer(TEACHER_ID), TEACHER_ID), data, "student", run_settings)
    pair = task.score_pair(student, preds, run_settings)
    t, s = np.concatenate(preds.probs), np.concatenate(student.probs)
    assert pair["label_loyalty"]["value"] == pytest.approx(np.mean(t.argmax(1) == s.argmax(1)), abs=1e-12)
    expected = np.mean([1 - jensenshannon(a, b, base=2) for a, b in zip(t, s)])
    assert pair["probability_loyalty"]["value"] == pytest.approx(expected, abs=1e-9)
    assert pair["entity_f1_vs_teacher"]["value"] == f1_score(preds.pred_tags, student.pred_tags)
    for name, m in pair.items():
        assert m["ci"][0] <= m["value"] <= m["ci"][1], name
    diff = task.compare(student, preds, run_settings)
    expected_diff = f1_score(student.gold_tags, student.pred_tags) - f1_score(preds.gold_tags, preds.pred_tags)
    assert diff["f1_difference"]["value"] == pytest.approx(expected_diff, abs=1e-12)
    lo, hi = diff["f1_difference"]["ci"]
    assert lo <= diff["f1_difference"]["value"] <= hi


def test_samples_frame(preds):
    frame = preds.to_frame()
    assert list(frame.columns) == ["task", "example_id", "role", "label", "pred", "probs", "correct"]
    row = frame.iloc[0]
    assert row["label"].split() == preds.gold_tags[0] and row["pred"].split() == preds.pred_tags[0]
    assert row["probs"] == []
    assert frame["correct"].tolist() == [p == g for p, g in zip(preds.pred_tags, preds.gold_tags)]


def test_hub_head_in_another_order_is_reordered(task):
    from transformers import BertConfig

    names = list(reversed(task.label_names))
    order = task.class_order(BertConfig(num_labels=13, id2label=dict(enumerate(names))))
    assert [names[j] for j in order] == task.label_names
    with pytest.raises(KdbenchError, match="model has 9 output classes, label_names has 13"):
        task.class_order(BertConfig(num_labels=9))
    with pytest.raises(KdbenchError, match="are not label_names"):
        task.class_order(BertConfig(num_labels=13, id2label={i: f"tag{i}" for i in range(13)}))


# training objective ------------------------------------------------------------------------------
def test_word_loss_is_kd_and_ce_over_first_sub_tokens_only(task, data, untrained):
    """The recipe's loss equals α·T²·KL(p_t ‖ q_s) + (1 − α)·CE computed by hand over exactly the
    words' first sub-tokens of a padded batch (no later sub-token, special token or padding)."""
    import torch
    import torch.nn.functional as F

    from kdbench.backends.batching import collate
    from kdbench.backends.token_classifier import encode_words
    from kdbench.config import DistillConfig
    from kdbench.distill.recipes.token_classification import word_loss
    from kdbench.distill.trainer import kd_objective

    tok = untrained.tokenizer
    enc = encode_words(tok, data.tokens[:6], 128)
    rng = np.random.default_rng(0)
    teacher = [rng.normal(size=(n, len(task.label_names))).astype(np.float32) for n in enc.n_words]
    cfg = DistillConfig(loss="forward_kl", temperature=2.0, alpha=0.7)
    loss_fn = word_loss(kd_objective(cfg), enc, data.labels[:6], tok.padding_side, teacher)
    idx = np.array([4, 1, 3])
    batch = collate(tok, [enc.features[i] for i in idx])
    with torch.no_grad():
        out = untrained.model(**batch)
        got = loss_fn(out, idx, batch).item()
    z_s, z_t, y = [], [], []
    for j, i in enumerate(idx):
        word_ids = tok(data.tokens[i], is_split_into_words=True, truncation=True, max_length=128).word_ids()
        first = [t for t, w in enumerate(word_ids) if w is not None and (t == 0 or word_ids[t - 1] != w)]
        words = [word_ids[t] for t in first]
        z_s.append(out.logits[j, first])
        z_t.append(torch.as_tensor(teacher[i][words]))
        y.append(torch.as_tensor(data.labels[i][words]))
    z_s, z_t, y = torch.cat(z_s).float(), torch.cat(z_t), torch.cat(y)
    kl = F.kl_div(F.log_softmax(z_s / 2, -1), F.log_softmax(z_t / 2, -1), log_target=True, reduction="batchmean")
    expected = 0.7 * 4 * kl + 0.3 * F.cross_entropy(z_s, y)
    assert got == pytest.approx(expected.item(), rel=1e-5)
