"""Every loss on real model outputs: the MiniLM-L6 teacher and a 2-of-6-layer student copied from it
([0, 5]), a few sentences. Where student and teacher compute the same thing the loss is 0."""
import copy

import pytest
import torch
import torch.nn.functional as F

from kdbench.config import DistillConfig
from kdbench.distill.losses import (
    LOSSES,
    HiddenStateMSE,
    attention_transfer,
    cosine_embedding,
    hidden_mse,
    margin_mse,
    minilm_relation,
    record_values,
)
from kdbench.distill.trainer import kd_objective
from kdbench.models.students import layer_selection

SENTENCES = ["a fine film", "dull and far too long", "the cast is wonderful", "what is a cat?", "cats are small felines",
             "stock markets fell today"]


@pytest.fixture(scope="module")
def models(teacher_classifier):
    teacher = copy.deepcopy(teacher_classifier).eval()
    teacher.config._attn_implementation = "eager"  # attention probabilities are returned by the eager kernel
    student = layer_selection(teacher, [0, 5]).eval()  # no dropout, so shared layers agree exactly; grads still flow
    return teacher, student


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenizer(SENTENCES, padding=True, return_tensors="pt")


def _run(model, batch, grad):
    with torch.set_grad_enabled(grad), record_values(model, layer=-1) as rec:
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    return out, rec["values"]


def _mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).float()
    return (hidden * m).sum(1) / m.sum(1)


def test_every_loss_on_real_outputs(models, batch):
    teacher, student = models
    t_out, t_values = _run(teacher, batch, grad=False)
    s_out, s_values = _run(student, batch, grad=True)
    mask = batch["attention_mask"]
    assert len(s_out.hidden_states) == 3 and len(t_out.attentions) == 6 and s_values.shape == t_values.shape

    losses = {}
    labels = torch.tensor([1, 0, 1, 0, 1, 0])
    for name in LOSSES.names(level="logits"):
        obj = kd_objective(DistillConfig(loss=name, temperature=2.0, alpha=1.0))
        losses[name] = obj(s_out.logits, labels, t_out.logits)
        assert obj(t_out.logits, labels, t_out.logits).item() == pytest.approx(0.0, abs=1e-6), name

    # hidden states: student layer 0 is teacher layer 0 (index 1 = after layer 0), exactly
    assert hidden_mse(s_out.hidden_states, t_out.hidden_states, {1: 1}, mask=mask).item() == pytest.approx(0, abs=1e-10)
    proj = HiddenStateMSE({1: 1, 2: 6}, 384, 384)
    losses["hidden_mse"] = proj(s_out.hidden_states, t_out.hidden_states, mask=mask)
    # attention: student layer 0 attends like teacher layer 0; layer 1 (teacher 5's weights) does not like teacher 5
    assert attention_transfer(s_out.attentions, t_out.attentions, {0: 0}, mask=mask).item() == pytest.approx(0, abs=1e-6)
    losses["attention_transfer"] = attention_transfer(s_out.attentions, t_out.attentions, {1: 5}, mask=mask)
    losses["attention_transfer_mse"] = attention_transfer(s_out.attentions, t_out.attentions, {1: 5}, "mse", mask=mask)
    losses["minilm_relation"] = minilm_relation(s_values, t_values, num_heads=12, mask=mask)
    e_s, e_t = _mean_pool(s_out.hidden_states[-1], mask), _mean_pool(t_out.hidden_states[-1], mask)
    losses["cosine_embedding"] = cosine_embedding(e_s, e_t)
    # ranking: query "what is a cat?", positive "cats are small felines", negative "stock markets fell today"
    sc = lambda e: F.cosine_similarity(e[3:4], e[4:], dim=-1)  # noqa: E731
    (s_pos, s_neg), (t_pos, t_neg) = sc(e_s), sc(e_t)
    assert t_pos > t_neg  # the teacher ranks the passage about cats first
    losses["margin_mse"] = margin_mse(s_pos[None], s_neg[None], t_pos[None], t_neg[None])

    for name, loss in losses.items():
        assert torch.isfinite(loss) and loss.item() > 0, name
    sum(losses.values()).backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert proj.projections[0].weight.grad is not None
