"""The causal-LM recipe: training texts and their loss masks, the token-level KD loss (checked
against hand computations and transformers' own shifted cross-entropy, padding-invariant), the
teacher-finetune guard, and a real tiny distillation of SmolLM2 on GSM8K answers."""

import pytest
import torch
import torch.nn.functional as F

from kdbench.config import DistillConfig
from kdbench.data import DatasetSpec, load_split
from kdbench.distill.recipes import run_recipe as run
from kdbench.distill.recipes.causal_lm import token_loss
from kdbench.distill.tokens import encode_pairs, right_pad
from kdbench.models.students import layer_selection
from kdbench.roles import BASELINE, STUDENT, TEACHER
from tests.helpers import causal_lm_recipe as shared
from tests.helpers.causal_lm_recipe import PAD, _suite

# fixtures shared with tests/unit/distill/recipes/test_causal_lm_recipe.py (pytest finds them as attributes of this module)
tasks, student, two_examples = shared.tasks, shared.student, shared.two_examples


# --- the recipe ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_taid_t_is_driven_through_token_level_training(lm, tok, two_examples):
    """TAID on a causal LM: the training loop moves t from its start to 1, one value per optimiser
    step, as for classifiers (the token loss registers TAID's driver with the loop)."""
    from kdbench.distill.trainer import train

    feats, masks = two_examples
    cfg = DistillConfig(loss="taid", loss_args={"t": 0.4}, temperature=1.0, alpha=1.0, epochs=4, batch_size=1,
                        lr=1e-4, warmup_ratio=0.0)
    loss_fn = token_loss(masks, lm, cfg, dtype="bf16")
    model = layer_selection(lm, [0, 29])
    stats = train(model, tok, feats, cfg, loss_fn, seed=0, collate_fn=right_pad(PAD))
    (taid,) = stats.step_hooks  # the state TAID's driver ended training in
    ts = taid["history"]
    assert len(ts) == stats.steps == 8
    assert 0.4 < ts[0] and all(a <= b for a, b in zip(ts, ts[1:])) and ts[-1] == 1.0


def _answer_log_probs(model, feats, masks) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per held-out example: (next-token log-probs at the scored positions, the scored tokens), fp32."""
    out = []
    for feat, mask in zip(feats, masks):
        ids = torch.tensor([feat["input_ids"]])
        keep = torch.tensor(mask[1:], dtype=torch.bool)
        with torch.no_grad():
            out.append((F.log_softmax(model(input_ids=ids).logits[0, :-1][keep], -1), ids[0, 1:][keep]))
    return out


def _kl_and_nll(teacher_lp, model, feats, masks) -> tuple[float, float]:
    """Mean KL(teacher ‖ model) and mean NLL of the model over all held-out scored tokens."""
    kls, nlls = [], []
    for (log_p, _), (log_q, target) in zip(teacher_lp, _answer_log_probs(model, feats, masks)):
        kls.append((log_p.exp() * (log_p - log_q)).sum(-1))
        nlls.append(-log_q.gather(1, target[:, None])[:, 0])
    return float(torch.cat(kls).mean()), float(torch.cat(nlls).mean())


@pytest.mark.slow
def test_tiny_distillation_moves_the_student_toward_the_teacher(tasks, lm, tok, tmp_path):
    """24 GSM8K train solutions, 96 tokens, 2 epochs of batch 4 (12 steps), a 4-of-30-layer student."""
    trained = run(tasks["gsm8k_text"], _suite(), tmp_path)
    assert set(trained.models) == {TEACHER, STUDENT, BASELINE}
    info = trained.info
    assert info[TEACHER]["finetuned"] is False and info[TEACHER]["params"] == 134_515_008
    expected = {"id": "models/gsm8k_text/student", "revision": None, "method": "kd", "loss": "forward_kl",
                "loss_args": {}, "temperature": 1.0, "t2_scaling": True, "alpha": 0.5, "builder": "layer_selection",
                "layer_map": [0, 10, 20, 29], "init_from": TEACHER, "train_steps": 12, "teacher": "online"}
    assert {k: info[STUDENT][k] for k in expected} == expected
    assert info[BASELINE]["method"] == "labels_only" and info[BASELINE]["layer_map"] == [0, 10, 20, 29]
    assert info[STUDENT]["params"] == 49152 * 576 + 576 + 4 * 3_540_096
    assert trained.train_dataset["rows"] == 24 and trained.train_dataset["split"] == "train"
    for role in (STUDENT, BASELINE):
        assert (tmp_path / "models" / "gsm8k_text" / role / "model.safetensors").is_file()
        assert trained.dirs[role] == str(tmp_path / "models" / "gsm8k_text" / role)

    loaded = load_split(DatasetSpec("openai/gsm8k", "main", "test"), rows=8)
    feats, masks = encode_pairs(tok, [("", a) for a in loaded.rows["answer"]], 128)
    teacher_lp = _answer_log_probs(lm, feats, masks)
    before = layer_selection(lm, [0, 10, 20, 29]).eval()
    kl_before, nll_before = _kl_and_nll(teacher_lp, before, feats, masks)
    kl_kd, nll_kd = _kl_and_nll(teacher_lp, trained.models[STUDENT].model, feats, masks)
    kl_base, nll_base = _kl_and_nll(teacher_lp, trained.models[BASELINE].model, feats, masks)
    print(f"held-out KL(teacher||.) before {kl_before:.3f} KD {kl_kd:.3f} baseline {kl_base:.3f}; "
          f"NLL before {nll_before:.3f} KD {nll_kd:.3f} baseline {nll_base:.3f}")
    # the KD student ends much closer to the teacher than it started, and the baseline learns too
    assert kl_kd < 0.5 * kl_before
    assert nll_base < 0.5 * nll_before
    assert nll_kd < 0.5 * nll_before
    assert info[BASELINE]["train_final_loss"] < nll_before
