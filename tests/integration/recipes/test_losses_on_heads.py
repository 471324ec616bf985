"""Done-when of issue 5: every loss runs on every head where it applies, from a suite config, on
real models and data slices — a few training steps through the head's recipe each, checking the
loss is finite, the student's weights moved, and what the run record says. Pairs that do not
apply are a one-line KdbenchError before any training."""
from __future__ import annotations

import math

import pytest
import torch

from kdbench.config import SuiteConfig
from kdbench.distill.recipes import run_recipe
from kdbench.errors import KdbenchError
from kdbench.models.students import build_student, layer_stack
from kdbench.roles import STUDENT, TEACHER
from tests.helpers import losses_on_heads as shared
from tests.helpers.losses_on_heads import FEATURES, applicable, get_task, suite_for

# fixtures shared with tests/unit/distill/losses/test_losses_on_heads.py (pytest finds them as attributes of this module)
workdir = shared.workdir


def train_head(head: str, suite: SuiteConfig, workdir) -> tuple[dict, dict]:
    """Run the head's recipe; return the student's record entry and the trained models."""
    torch.set_num_threads(1)
    trained = run_recipe(get_task(suite.tasks[0]), suite, workdir / suite.name)
    info = trained.info[STUDENT]
    loss = info["train_final_loss"]  # every recipe writes the same entry
    assert loss is not None and math.isfinite(loss), info
    assert weights_moved(trained.models[STUDENT].model, trained.models[TEACHER].model, suite)
    assert info["params"] == info["student_params"] < info["teacher_params"]
    return info, trained.models


def weights_moved(student, teacher, suite: SuiteConfig) -> bool:
    """Whether training changed the student: against the teacher layers it was copied from
    (layer selection), or against its random initialisation rebuilt from the seed (config)."""
    if suite.student.builder == "config":
        initial = build_student(teacher, suite.student, suite.seed)[0].state_dict()
    else:
        prefix, t_state, initial = layer_stack(student)[0] + ".", teacher.state_dict(), {}
        for key in student.state_dict():
            source = key
            if key.startswith(prefix):
                index, rest = key[len(prefix):].split(".", 1)
                source = f"{prefix}{student.config.kdbench_layer_map[int(index)]}.{rest}"
            initial[key] = t_state[source]
    trained = student.state_dict()
    return any(not torch.equal(v, trained[k]) for k, v in initial.items())


def distill_for(head: str, loss: str) -> dict:
    base = {"embedding": "cosine_embedding", "regression": "logit_mse"}.get(head, "forward_kl")
    if loss in FEATURES:
        return {"loss": base, "features": [{"loss": loss, "weight": 1.0}]}
    if loss == "sequence_level":
        return {"sequence_level": True, "sequence_max_new_tokens": 8}
    if loss == "margin_mse":
        return {"loss": loss, "loss_args": {"negatives": 3}}
    return {"loss": loss}


@pytest.mark.slow
@pytest.mark.parametrize("head, loss", applicable(), ids=lambda x: x)
def test_loss_trains_on_head(head, loss, workdir):
    # sequence-level KD answers GSM8K questions (chat prompts of ~100 tokens); the rest trains on text
    seq = loss == "sequence_level"
    suite = suite_for(head, distill_for(head, loss), task="gsm8k" if seq else None,
                      max_length=128 if seq else 32, rows=8 if seq else None)
    info, _ = train_head(head, suite, workdir)
    assert info["method"] == "kd"
    if loss in FEATURES:
        (term,) = info["features"]
        assert term["loss"] == loss and info["teacher_features"] == "online"
        if loss == "hidden_mse":  # default map: embeddings, then the student's layer selection
            assert term["layer_map"] == ([(0, 0), (1, 1), (2, 30)] if head == "causal_lm" else [(0, 0), (1, 1), (2, 6)])
        elif loss == "attention_transfer":
            assert term["layer_map"] == ([(0, 0), (1, 29)] if head == "causal_lm" else [(0, 0), (1, 5)])
    elif loss == "sequence_level":
        assert info["kd_level"] == "sequence" and info["scored_tokens"] > 0
    elif loss == "margin_mse":
        assert info["loss"] == "margin_mse"
    else:
        assert info["loss"] == loss


@pytest.mark.slow
def test_margin_mse_records_its_pseudo_labels(workdir):
    suite = suite_for("embedding", {"loss": "margin_mse", "loss_args": {"negatives": 2}})
    trained = run_recipe(get_task("dbpedia_entity_5k"), suite, workdir / "margin")
    record = trained.train_dataset
    assert record["queries"] == 10 and record["documents"] == 32 and record["negatives_per_query"] == 2
    assert "pseudo-label" in record["positives"] and record["labels"] is False


@pytest.mark.slow
@pytest.mark.parametrize("head, overrides", [
    ("classification", {"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 1024, "num_attention_heads": 4}),
    ("causal_lm", {"num_hidden_layers": 2, "hidden_size": 192, "intermediate_size": 512, "num_attention_heads": 3,
                   "num_key_value_heads": 1}),
])
def test_config_builder_students_train_with_a_learned_projection(head, overrides, workdir):
    """A narrower, shallower random-init student; hidden_mse learns its width projection."""
    suite = suite_for(head, {"loss": "forward_kl", "features": [{"loss": "hidden_mse", "weight": 0.5}]},
                      student={"builder": "config", "config": overrides})
    info, models = train_head(head, suite, workdir)
    student = models[STUDENT].model
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == overrides["hidden_size"]
    assert info["builder"] == "config" and info["config_overrides"] == overrides and info["init"] == "random"
    assert info["params"] < info["teacher_params"] / 2
    # TinyBERT's uniform rule pairs the 2 student layers with the teacher's (embeddings first)
    top = 30 if head == "causal_lm" else 6
    assert info["features"][0]["layer_map"] == [(0, 0), (1, top // 2), (2, top)]
    assert type(student).__module__.startswith("transformers.")  # saved as a plain transformers model
    # the run record schema takes the entry (builder, overrides, layer map of the features, counts)
    import copy
    import json

    from kdbench.report.record import validate_record
    from tests.helpers.record import RECORD

    record = copy.deepcopy(RECORD)
    record["models"]["student"] = json.loads(json.dumps(info))
    validate_record(record)


@pytest.mark.slow
def test_projection_is_trained_with_the_student(teacher_classifier, tokenizer):
    from kdbench.config import TrainConfig
    from kdbench.distill.recipes.features import FeatureKD
    from kdbench.distill.trainer import train

    suite = suite_for("classification", {"features": [{"loss": "hidden_mse"}]},
                      student={"builder": "config", "config": {"num_hidden_layers": 1, "hidden_size": 128,
                                                              "intermediate_size": 256, "num_attention_heads": 2}})
    student, _ = build_student(teacher_classifier, suite.student, 0)
    fkd = FeatureKD(list(suite.distill.features), teacher_classifier, "fp32", "test")
    model, loss_fn, _ = fkd.wrap(student, lambda outputs, idx, batch: outputs.logits.sum() * 0.0)
    before = {n: p.detach().clone() for n, p in model.projections.named_parameters()}
    features = [dict(tokenizer(t)) for t in ["a fine film", "dull and long", "not bad at all", "worst ever"]]
    seen = []

    def recording(outputs, idx, batch):
        loss = loss_fn(outputs, idx, batch)
        seen.append(loss.item())
        return loss

    # one batch of all four sentences, five steps: the same inputs each step, so the loss must fall
    cfg = TrainConfig(epochs=5, batch_size=4, lr=1e-2, warmup_ratio=0.0)
    stats = train(model, tokenizer, features, cfg, recording, dtype="fp32")
    assert math.isfinite(stats.final_loss) and before and len(seen) == 5
    assert seen[-1] < seen[0]
    assert all(not torch.equal(p, before[n]) for n, p in model.projections.named_parameters())


@pytest.mark.slow
def test_attention_transfer_needs_matching_heads(workdir):
    suite = suite_for("classification", {"features": [{"loss": "attention_transfer"}]},
                      student={"builder": "config", "config": {"num_hidden_layers": 1, "num_attention_heads": 4}})
    with pytest.raises(KdbenchError, match=r"attention_transfer: the student has 4 attention heads and the teacher 12"):
        run_recipe(get_task("sst2"), suite, workdir / "heads")
