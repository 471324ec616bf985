"""Done-when of issue 5: every loss runs on every head where it applies, from a suite config, on
real models and data slices — a few training steps through the head's recipe each, checking the
loss is finite, the student's weights moved, and what the run record says. Pairs that do not
apply are a one-line KdbenchError before any training."""
from __future__ import annotations

import pytest

from kdbench.config import SuiteConfig
from kdbench.distill.recipes import run_recipe
from kdbench.errors import KdbenchError
from kdbench.models.students import build_student
from kdbench.registry import LOSSES
from tests.helpers import losses_on_heads as shared
from tests.helpers.losses_on_heads import TASKS, applicable, get_task, suite_for

# fixtures shared with tests/integration/recipes/test_losses_on_heads.py (pytest finds them as attributes of this module)
workdir = shared.workdir


@pytest.mark.parametrize("head, distill, pattern", [
    ("embedding", {"loss": "forward_kl"}, r"\(embedding head\): distill.loss: loss 'forward_kl' works on logits; this head is distilled with: "
                                       r"cosine_embedding"),
    ("classification", {"loss": "cosine_embedding"}, r"sst2 \(classification head\): distill.loss: loss 'cosine_embedding'"),
    ("token_classification", {"loss": "margin_mse"}, r"wnut_17 \(token_classification head\): distill.loss: loss 'margin_mse' works on ranking"),
    ("causal_lm", {"loss": "cosine_embedding"}, r"gsm8k_text \(causal_lm head\): distill.loss: loss 'cosine_embedding'"),
])
def test_a_loss_on_a_head_it_does_not_apply_to_is_one_line(head, distill, pattern, workdir):
    with pytest.raises(KdbenchError, match=pattern) as e:
        run_recipe(get_task(TASKS[head]), suite_for(head, distill), workdir / "refused")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("feature, pattern", [
    ({"loss": "cosine_embedding"}, r"loss 'cosine_embedding' is not a feature-level loss \(embedding-level, set it as "
                                   r"distill.loss\); distill.features takes: hidden_mse, attention_transfer"),
    ({"loss": "attention_transfer", "args": {"kind": "l1"}}, r"'kind' must be one of kl, mse, got 'l1'"),
    ({"loss": "minilm_relation", "layer_map": [[1, 5]]}, r"minilm_relation works on the last layer only"),
    ({"loss": "hidden_mse", "weight": 0}, r"greater than 0"),
])
def test_bad_feature_terms_are_one_line_config_errors(feature, pattern):
    import json

    from kdbench.config import load_suite

    with pytest.raises(KdbenchError, match=pattern) as e:
        load_suite("quickstart", [f"distill.features=[{json.dumps(feature)}]"])
    assert "\n" not in str(e.value) and "distill.features" in str(e.value)


def test_uniform_rules_are_selectable_from_the_config(teacher_classifier):
    for rule, expected in (("tinybert", [2, 5]), ("distilbert", [0, 3])):
        spec = SuiteConfig.model_validate({"name": "x", "tasks": ["sst2"], "student": {
            "builder": "layer_selection", "layer_rule": rule, "num_layers": 2}}).student
        student, made = build_student(teacher_classifier, spec, 0)
        assert made["layer_map"] == expected and made["layer_rule"] == rule
        assert student.config.kdbench_layer_map == expected


def test_every_head_has_a_loss_and_logit_losses_are_all_covered():
    pairs = applicable()
    assert {h for h, _ in pairs} == set(TASKS)
    for loss in LOSSES.names(level="logits"):
        assert {("classification", loss), ("token_classification", loss), ("causal_lm", loss)} <= set(pairs)
    assert ("regression", "logit_mse") in pairs and ("regression", "forward_kl") not in pairs
