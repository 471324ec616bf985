"""On-policy and mixed KD (kdbench.distill.on_policy): which micro-batches are on-policy, the prompts,
the student's samples as a training batch (prompt kept, only the sampled tokens scored, seeded, the
training RNG untouched), the loss on them (α · KD with the teacher online, checked by hand), λ = 0
equal to off-policy KD bit for bit, and a resumed on-policy training equal to an uninterrupted one.
Real SmolLM2-135M-Instruct teacher, a 2-layer selection of it as the student, GSM8K prompts."""
import pytest
import torch

from kdbench.config import DistillConfig
from kdbench.distill.on_policy import prompts_of
from kdbench.distill.recipes.causal_lm import right_pad, token_loss
from kdbench.distill.trainer import train
from kdbench.models.students import layer_selection
from tests.helpers import on_policy as shared
from tests.helpers.on_policy import PAD, _sampler

# fixtures shared with tests/unit/distill/test_on_policy.py (pytest finds them as attributes of this module)
reasoning = shared.reasoning


# --- training ----------------------------------------------------------------------------------------
def _train(lm, tok, feats, masks, on_policy, *, steps=4, checkpoint_dir=None, loss_wrapper=None):
    student = layer_selection(lm, [0, 29])
    cfg = DistillConfig(loss="generalized_jsd", loss_args={"beta": 0.5}, temperature=1.0, alpha=0.5,
                        batch_size=2, epochs=steps * 2 / len(feats), lr=1e-4, checkpoint_every=2)
    fn = token_loss(masks, lm, cfg, dtype="fp32")
    stats = train(student, tok, feats, cfg, loss_wrapper(fn) if loss_wrapper else fn, seed=3, dtype="fp32",
                  collate_fn=right_pad(PAD), batch_fn=on_policy, checkpoint_dir=checkpoint_dir)
    return student, stats


@pytest.mark.slow
def test_fraction_zero_is_off_policy_kd_bit_for_bit(lm, tok, reasoning):
    feats, masks = reasoning
    off, _ = _train(lm, tok, feats, masks, None, steps=2)
    zero, _ = _train(lm, tok, feats, masks, _sampler(prompts_of(feats, masks, 32), fraction=0.0), steps=2)
    for (name, a), (_, b) in zip(off.state_dict().items(), zero.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_a_resumed_on_policy_training_ends_on_the_same_weights(lm, tok, reasoning, tmp_path):
    """λ = 0.5 over 4 steps (micro-batches 1 and 3 sampled), checkpoints every 2 steps: interrupted
    during step 3 and resumed, it samples the same tokens and ends on the same weights."""
    feats, masks = reasoning
    prompts = prompts_of(feats, masks, 32)
    whole_sampler = _sampler(prompts, fraction=0.5)
    whole, stats = _train(lm, tok, feats, masks, whole_sampler, checkpoint_dir=tmp_path / "whole")
    assert stats.steps == 4 and whole_sampler.batches == 2

    class Interrupted(Exception):
        pass

    def stop_at_third_batch(fn):
        calls = []

        def wrapped(outputs, idx, batch):
            calls.append(1)
            if len(calls) == 3:  # step 3, after the checkpoint of step 2
                raise Interrupted
            return fn(outputs, idx, batch)
        return wrapped

    with pytest.raises(Interrupted):
        _train(lm, tok, feats, masks, _sampler(prompts, fraction=0.5), checkpoint_dir=tmp_path / "cut",
               loss_wrapper=stop_at_third_batch)
    resumed_sampler = _sampler(prompts, fraction=0.5)
    resumed, stats = _train(lm, tok, feats, masks, resumed_sampler, checkpoint_dir=tmp_path / "cut")
    assert stats.resumed_from_step == 2
    assert resumed_sampler.state_dict() == whole_sampler.state_dict()  # counts restored from the checkpoint
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
