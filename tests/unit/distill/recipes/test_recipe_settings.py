"""What a recipe does with the suite's settings: ``distill.seed`` is the student's and baseline's own
seed in every recipe (the one skeleton draws the student's initialisation and trains it from it, no
head's recipe builds or trains its student another way; the NER head, which ignored it before, draws
its fresh head from it), and a setting a recipe cannot honour is one line, never silently replaced."""
import pytest
import torch

from kdbench.config import load_suite
from kdbench.distill.recipes import Recipe, recipe
from kdbench.errors import KdbenchError
from kdbench.registry import RECIPES
from kdbench.tasks import get_task

STUDENT_ID = "sentence-transformers/paraphrase-MiniLM-L3-v2"


def test_every_recipe_builds_and_trains_its_student_through_the_skeleton():
    for name, cls in RECIPES.items():
        assert issubclass(cls, Recipe), name
        for step in ("run", "init_student", "train", "save"):
            assert getattr(cls, step) is getattr(Recipe, step), f"{name} overrides Recipe.{step}"


def test_the_ner_students_fresh_head_is_drawn_from_distill_seed(tmp_path, data_dir):
    task = get_task("wnut_17")

    def head(seed: int, suite_seed: int = 0) -> torch.Tensor:
        suite = load_suite("ner", [f"seed={suite_seed}", f"student.model={STUDENT_ID}", "student.builder=pretrained",
                                   f"distill.seed={seed}"])
        r = recipe(task)(task, suite, tmp_path)
        assert r.seed == seed
        student, made = r.init_student()
        assert made["builder"] == "pretrained" and made["init_from"] == STUDENT_ID
        return student.model.classifier.weight.detach().clone()

    first = head(1)
    assert torch.equal(first, head(1, suite_seed=5))  # the suite's seed (slice, teacher) does not move it
    assert not torch.equal(first, head(2))
    assert not any(tmp_path.iterdir())  # nothing written before training


@pytest.mark.parametrize("setting, message", [
    ("distill.loss=forward_kl", r"distill.loss: loss 'forward_kl' works on logits; this head is distilled with: logit_mse"),
    ("distill.sequence_level=true", r"distill.sequence_level is for causal_lm tasks; this recipe cannot honour it"),
])
def test_regression_refuses_what_it_cannot_honour_instead_of_swapping_it(setting, message):
    """STS-B (one-output regression) used to train logit MSE whatever distill.loss said."""
    task = get_task("stsb")
    suite = load_suite("glue", ["tasks=[stsb]", setting])
    with pytest.raises(KdbenchError, match=r"suite glue, task stsb \(regression head\): " + message):
        recipe(task).check(task, suite)
    recipe(task).check(task, load_suite("glue", ["tasks=[stsb]"]))  # null: the head's own loss, logit_mse


def test_a_top_k_cache_with_sequence_level_kd_is_refused():
    """Sequence-level KD trains on the teacher's answers: a top-k cache would be built and never read."""
    task = get_task("gsm8k_text")
    suite = load_suite("lm", ["distill.sequence_level=true", "distill.loss=null", "distill.teacher_topk=8"])
    with pytest.raises(KdbenchError, match=r"suite lm, task gsm8k_text: distill.teacher_topk caches the teacher's "
                                           r"token distributions, which sequence-level KD does not use"):
        recipe(task).check(task, suite)
