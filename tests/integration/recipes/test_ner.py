"""NER family: spec loading, tag validation, sub-word alignment, and entity metrics checked against
seqeval on real model predictions over the real WNUT-17 slice."""
from __future__ import annotations

import pytest
from seqeval.metrics import accuracy_score, f1_score

from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings
from tests.helpers import ROOT
from tests.helpers import ner as shared

# fixtures shared with tests/unit/tasks/test_ner.py (pytest finds them as attributes of this module)
task, data, run_settings, untrained, preds = shared.task, shared.data, shared.run_settings, shared.untrained, shared.preds


@pytest.mark.slow
def test_recipe_trains_teacher_student_baseline_on_a_tiny_slice(tmp_path, monkeypatch, data_dir):
    """The token-classification recipe end to end on 160 WNUT sentences: the teacher is fine-tuned
    and cached (with its word-level train logits), KD student and baseline start from the same
    layer-selected copy and end different, saved students load back and predict the same."""
    import torch

    from kdbench.config import load_suite
    from kdbench.distill.recipes import run_recipe
    from kdbench.models import cache

    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    suite_file = tmp_path / "tiny.yaml"
    suite_file.write_text((ROOT / "suites/ner.yaml").read_text())
    suite = load_suite(str(suite_file), ["data.train_rows=160", "data.eval_rows=60", "teacher.finetune.epochs=1",
                                         "distill.epochs=1", "eval.bootstrap_samples=200"])
    task = get_task("wnut_17")
    trained = run_recipe(task, suite, tmp_path / "run")
    assert set(trained.models) == {"teacher", "student", "baseline"}
    teacher = trained.info["teacher"]
    assert teacher["finetuned"] and not teacher["reused_from_cache"] and not teacher["train_logits_reused"]
    assert cache.is_cached(teacher["cache_key"])
    assert len(list((tmp_path / "cache" / "teacher_logits").glob("*.safetensors"))) == 1  # in the teacher cache
    assert trained.info["student"]["method"] == "kd" and trained.info["baseline"]["method"] == "labels_only"
    assert trained.info["student"]["layer_map"] == suite.student.layers
    assert trained.train_dataset["rows"] == 160 and trained.train_dataset["words"] > 0
    s_state = trained.models["student"].model.state_dict()
    b_state = trained.models["baseline"].model.state_dict()
    assert not torch.equal(s_state["classifier.weight"], b_state["classifier.weight"])
    assert trained.models["student"].model.config.num_hidden_layers == len(suite.student.layers)

    settings = RunSettings.of(suite)
    data = task.eval_data(60)
    preds = {role: task.predict(m, data, role, settings) for role, m in trained.models.items()}
    reloaded = task.predict(task.load_model(trained.dirs["student"]), data, "student", settings)
    assert reloaded.pred_tags == preds["student"].pred_tags
    for role, p in preds.items():
        scores = task.score(p, settings)
        assert scores["f1"]["value"] == f1_score(p.gold_tags, p.pred_tags), role
        assert scores["token_accuracy"]["value"] == accuracy_score(p.gold_tags, p.pred_tags), role
    pair = task.score_pair(preds["student"], preds["teacher"], settings)
    assert 0 < pair["probability_loyalty"]["value"] <= 1
    assert task.compare(preds["student"], preds["baseline"], settings)["f1_difference"]["ci"] is not None

    # from scratch again (empty cache, the global generator elsewhere): the same teacher and student
    torch.rand(1000)
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache2"))
    again = run_recipe(task, suite.model_copy(update={"baseline": False}), tmp_path / "run2")
    assert not again.info["teacher"]["reused_from_cache"]
    for role in ("teacher", "student"):
        first, second = trained.models[role].model.state_dict(), again.models[role].model.state_dict()
        assert all(torch.equal(first[k], second[k]) for k in first), role
