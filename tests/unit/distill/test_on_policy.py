"""On-policy and mixed KD (kdbench.distill.on_policy): which micro-batches are on-policy, the prompts,
the student's samples as a training batch (prompt kept, only the sampled tokens scored, seeded, the
training RNG untouched), the loss on them (α · KD with the teacher online, checked by hand), λ = 0
equal to off-policy KD bit for bit, and a resumed on-policy training equal to an uninterrupted one.
Real SmolLM2-135M-Instruct teacher, a 2-layer selection of it as the student, GSM8K prompts."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdbench.config import DistillConfig, load_suite
from kdbench.distill.on_policy import is_on_policy, prompts_of, sampling_seed
from kdbench.distill.recipes.causal_lm import encode_pairs, right_pad, token_loss
from kdbench.errors import KdbenchError
from kdbench.models.students import layer_selection
from tests.helpers import on_policy as shared
from tests.helpers.on_policy import EOS, PAD, _sampler

# fixtures shared with tests/integration/recipes/test_on_policy.py (pytest finds them as attributes of this module)
reasoning = shared.reasoning


# --- the schedule and the prompts ------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1 / 3, 1.0])
def test_exactly_a_fraction_of_micro_batches_is_on_policy(fraction):
    for m in (1, 7, 24, 100):
        picked = [is_on_policy(i, fraction) for i in range(m)]
        assert sum(picked) == int(np.floor(m * fraction + 1e-9))
    if fraction == 0.5:  # spread evenly: every other micro-batch
        assert [is_on_policy(i, 0.5) for i in range(6)] == [False, True] * 3


def test_prompts_are_the_chat_prompt_or_the_start_of_a_plain_text(tok, reasoning):
    feats, masks = reasoning
    prompts = prompts_of(feats, masks, prompt_tokens=5)
    for p, f, m in zip(prompts, feats, masks):
        assert p == f["input_ids"][: m.index(1)]  # everything before the solution
        assert tok.decode(p).endswith("<|im_start|>assistant\n")
    texts, text_masks = encode_pairs(tok, [("", "Natalia sold 48 clips in April and half as many in May.")], 64)
    assert prompts_of(texts, text_masks, prompt_tokens=5) == [texts[0]["input_ids"][:6]]  # start token + 5


# --- the sampled batch ----------------------------------------------------------------------------
def test_an_on_policy_batch_is_the_prompt_and_the_students_sample(lm, tok, reasoning):
    feats, masks = reasoning
    student = layer_selection(lm, [0, 29]).eval()
    prompts = prompts_of(feats, masks, 32)
    sampler = _sampler(prompts)
    batch = right_pad(PAD)([feats[i] for i in (0, 1)])
    rng_before = torch.get_rng_state()
    out = sampler(student, np.array([0, 1]), batch, micro=0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # sampling never moves the training RNG
    assert set(out) == {"input_ids", "attention_mask", "loss_mask"}
    for row, i in enumerate((0, 1)):
        n = int(out["attention_mask"][row].sum())
        ids, scored = out["input_ids"][row, :n].tolist(), out["loss_mask"][row, :n].tolist()
        assert ids[: len(prompts[i])] == prompts[i] and not any(scored[: len(prompts[i])])
        sample = ids[len(prompts[i]):]
        assert 1 <= len(sample) <= 12 and all(scored[len(prompts[i]):])
        assert EOS not in sample[:-1]  # cut after the first end of turn
        assert not out["loss_mask"][row, n:].any()
    # seeded by (seed, process, micro-batch): the same micro-batch samples the same tokens again
    again = sampler(student, np.array([0, 1]), batch, micro=0)
    assert torch.equal(again["input_ids"], out["input_ids"])
    other = sampler(student, np.array([0, 1]), batch, micro=1)  # λ = 1: every micro-batch, its own seed
    assert not torch.equal(other["input_ids"][:, : out["input_ids"].shape[1]], out["input_ids"][:, : other["input_ids"].shape[1]])
    assert sampling_seed(0, 0, 1) != sampling_seed(0, 0, 0) != sampling_seed(0, 1, 0)
    # an off-policy micro-batch passes through untouched
    assert _sampler(prompts, fraction=0.5)(student, np.array([0, 1]), batch, micro=0) is batch
    assert sampler.state_dict() == {"batches": 3, "tokens": sampler.tokens} and sampler.tokens > 0


def test_a_student_trained_with_feature_terms_samples_the_same_tokens(lm, reasoning):
    """With distill.features the trainer trains a FeatureStudent wrapper; sampling goes to the student."""
    from kdbench.distill.recipes.features import FeatureStudent

    feats, masks = reasoning
    student = layer_selection(lm, [0, 29]).eval()
    prompts = prompts_of(feats, masks, 32)
    wrapped = FeatureStudent(student, torch.nn.ModuleList(), {"hidden_states"})
    assert _sampler(prompts).sample(wrapped, prompts[:2], seed=5) == _sampler(prompts).sample(student, prompts[:2], seed=5)


def test_greedy_sampling_at_temperature_zero_is_the_students_greedy_answer(lm, reasoning):
    feats, masks = reasoning
    student = layer_selection(lm, [0, 29]).eval()
    prompts = prompts_of(feats, masks, 32)
    got = _sampler(prompts, temperature=0.0, max_new_tokens=6).sample(student, [prompts[0]], seed=1)
    ids = torch.tensor([prompts[0]])
    with torch.no_grad():
        expected = student.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                    do_sample=False, pad_token_id=PAD)[0, ids.shape[1]:].tolist()
    assert got == [expected[: expected.index(EOS) + 1] if EOS in expected else expected]


def test_the_loss_on_a_sampled_batch_is_alpha_times_kd_on_the_sampled_tokens(lm, reasoning):
    """α · T² · mean over the sampled tokens of KL(p_T ‖ q_T), teacher and student each run on the
    row alone (no padding); the gold completion plays no part."""
    feats, masks = reasoning
    student = layer_selection(lm, [0, 29]).eval()
    batch = _sampler(prompts_of(feats, masks, 32))(student, np.array([0, 1]), right_pad(PAD)(feats[:2]), micro=0)
    cfg = DistillConfig(loss="forward_kl", temperature=2.0, alpha=0.7)
    with torch.no_grad():
        ours = token_loss(masks, lm, cfg, dtype="fp32")(student(input_ids=batch["input_ids"],
                                                                attention_mask=batch["attention_mask"]),
                                                        np.array([0, 1]), batch)
    kls = []
    for row in range(2):
        n = int(batch["attention_mask"][row].sum())
        ids, scored = batch["input_ids"][row:row + 1, :n], batch["loss_mask"][row, :n]
        with torch.no_grad():
            s, t = student(input_ids=ids).logits[0], lm(input_ids=ids).logits[0]
        for pos in range(n - 1):
            if scored[pos + 1]:
                log_q, log_p = F.log_softmax(s[pos] / 2.0, -1), F.log_softmax(t[pos] / 2.0, -1)
                kls.append(float((log_p.exp() * (log_p - log_q)).sum()))
    assert ours.item() == pytest.approx(0.7 * 4.0 * np.mean(kls), rel=1e-4)
    with pytest.raises(ValueError, match="on-policy batch needs KD"):
        token_loss(masks)(student(input_ids=batch["input_ids"]), np.array([0, 1]), batch)


def test_with_the_top_k_cache_only_the_sampled_batches_run_the_teacher(lm, reasoning):
    """distill.teacher_topk: the fixed texts' batches read the cache, the student's samples (not in
    it) are scored by the teacher online."""
    from kdbench.distill.topk import compute_topk

    feats, masks = reasoning
    student = layer_selection(lm, [0, 29]).eval()
    cfg = DistillConfig(loss="forward_kl", temperature=1.0, alpha=0.5)
    topk = compute_topk(lm, feats[:2], masks[:2], right_pad(PAD), k=8, temperature=1.0, dtype="fp32", batch_size=2)
    mixed = token_loss(masks, lm, cfg, dtype="fp32", topk=topk)
    gold = right_pad(PAD)(feats[:2])
    sampled = _sampler(prompts_of(feats, masks, 32))(student, np.array([0, 1]), gold, micro=0)
    with torch.no_grad():
        for batch, reference in ((gold, token_loss(masks, distill=cfg, dtype="fp32", topk=topk)),
                                 (sampled, token_loss(masks, lm, cfg, dtype="fp32"))):
            out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            assert mixed(out, np.array([0, 1]), batch).item() == pytest.approx(reference(out, np.array([0, 1]), batch).item())


def test_the_leaderboard_names_the_on_policy_fraction():
    from kdbench.report.leaderboard import _method

    model = {"method": "kd", "loss": "generalized_jsd", "on_policy": {"fraction": 0.5}}
    assert _method(model, "student") == "kd on-policy λ=0.5 (generalized_jsd)"
    assert _method({"method": "kd", "loss": "forward_kl"}, "student") == "kd (forward_kl)"


# --- bad values: one line before any work --------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    ("distill.on_policy.fraction=1.5", "on-policy fraction λ must be in [0, 1], got 1.5"),
    ("distill.on_policy.fraction=-0.1", "on-policy fraction λ must be in [0, 1], got -0.1"),
    ("distill.on_policy.top_p=0", "distill.on_policy.top_p"),
    ("distill.on_policy.temperature=-1", "distill.on_policy.temperature"),
])
def test_bad_on_policy_values_are_one_line_errors(value, message):
    with pytest.raises(KdbenchError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        load_suite("lm", ["distill.on_policy.fraction=0.5", value] if "fraction" not in value else [value])
    assert "\n" not in str(e.value)


def test_on_policy_and_sequence_level_together_are_refused():
    with pytest.raises(KdbenchError, match="distill.on_policy and distill.sequence_level both given"):
        load_suite("lm", ["distill.on_policy.fraction=0.5", "distill.sequence_level=true"])


def test_no_room_for_the_prompt_is_refused(reasoning):
    feats, masks = reasoning
    with pytest.raises(KdbenchError, match="max_new_tokens 192 leaves no room"):
        _sampler(prompts_of(feats, masks, 8), max_new_tokens=192)
