"""Training curves (eval.during_training, kdbench.distill.curves): points before the first step,
every N steps and after the last, the trained weights unchanged by them, their state checkpointed,
and `kdbench train-and-eval` writing them to the record and drawing them in the run report (with an
on-policy student and the metrics on generated text on the way)."""
import pytest
import torch

from kdbench.config import DistillConfig, load_suite
from kdbench.distill import curves
from kdbench.distill.recipes.causal_lm import encode_pairs, right_pad, token_loss
from kdbench.distill.trainer import train
from kdbench.errors import KdbenchError
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.models.students import layer_selection
from tests.helpers import SMOLLM


class _Evaluator:
    """Records which steps it was asked about; 'scores' the model by a weight's norm."""

    every = 2

    def __init__(self):
        self.calls = []

    def __call__(self, role, model, tokenizer, teacher):
        assert not model.training  # scored in eval mode
        torch.rand(3)  # randomness inside must not reach training
        self.calls.append(role)
        return {"metrics": {"norm": float(model.model.norm.weight.detach().norm())}}


def _train(steps, curve=None, checkpoint_dir=None):
    tok = load_tokenizer(SMOLLM)
    lm = load_for_head(SMOLLM, "causal_lm")
    feats, masks = encode_pairs(tok, [("", "Natalia sold 48 clips in April."), ("", "She sold half as many in May.")], 32)
    student = layer_selection(lm, [0, 29])
    if curve == "make":
        evaluator = _Evaluator()
        with curves.scope(evaluator):
            curve = curves.for_role("student", student, tok, None)
    cfg = DistillConfig(batch_size=1, epochs=steps / 2, lr=1e-3, checkpoint_every=2)
    train(student, tok, feats, cfg, token_loss(masks), seed=0, dtype="fp32", collate_fn=right_pad(2),
          step_hooks=[curve], checkpoint_dir=checkpoint_dir)
    return student, curve


def test_points_at_the_start_every_n_steps_and_the_end_without_changing_the_weights():
    assert curves.for_role("student", None, None, None) is None  # outside a scope: no curve
    plain, _ = _train(5)
    scored, curve = _train(5, "make")
    assert [p["step"] for p in curve.points] == [0, 2, 4, 5]
    assert curve.points[0]["metrics"]["norm"] != curve.points[-1]["metrics"]["norm"]  # it scored the model in training
    # ... and the model trained exactly as without the curve (its RNG draws and eval mode stay inside)
    for (name, a), (_, b) in zip(plain.state_dict().items(), scored.state_dict().items()):
        assert torch.equal(a, b), name
    assert curve.state_dict() == {"step": 5, "points": curve.points}
    resumed = curves.TrainingCurve(2, lambda: pytest.fail("a resumed curve must not rescore step 0"), scored)
    resumed.start(5)
    resumed.load_state_dict(curve.state_dict())
    resumed.before_training()
    assert resumed.points == curve.points


def test_bad_during_training_values_are_one_line_errors():
    for values, key in ((["eval.during_training.every=0"], "every"),
                        (["eval.during_training.every=2", "eval.during_training.rows=-1"], "rows")):
        with pytest.raises(KdbenchError, match=f"eval.during_training.{key}"):
            load_suite("lm", values)
    with pytest.raises(KdbenchError, match="eval.during_training.every"):  # rows alone: every is required
        load_suite("lm", ["eval.during_training.rows=8"])
