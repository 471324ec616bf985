"""The causal-LM recipe: training texts and their loss masks, the token-level KD loss (checked
against hand computations and transformers' own shifted cross-entropy, padding-invariant), the
teacher-finetune guard, and a real tiny distillation of SmolLM2 on GSM8K answers."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdbench.config import DistillConfig
from kdbench.distill.recipes import run_recipe as run
from kdbench.distill.recipes.causal_lm import token_loss, training_pairs
from kdbench.distill.tokens import encode_pairs, right_pad, scored_positions
from kdbench.errors import KdbenchError
from tests.helpers import causal_lm_recipe as shared
from tests.helpers.causal_lm_recipe import PAD, _suite

# fixtures shared with tests/integration/recipes/test_causal_lm_recipe.py (pytest finds them as attributes of this module)
tasks, student, two_examples = shared.tasks, shared.student, shared.two_examples


# --- training texts --------------------------------------------------------------------------------
def test_gsm8k_rows_become_prompt_and_answer_pairs(tok, data_dir):
    """An lm-eval task trains on its own training documents as lm-eval writes a worked example."""
    from kdbench.tasks.registry import get_task

    task = get_task("lm_eval_gsm8k")
    data = task.train_data(2, seed=0)
    pairs = training_pairs(task, data, tok)
    q, a = data.docs[0]["question"], data.docs[0]["answer"]
    assert pairs[0] == (f"Question: {q}\nAnswer:", f" {a}<|im_end|>")  # lm-eval gsm8k's prompt + target
    assert len(pairs) == 2 and task.train_record(data)["split"] == "train"


def test_reasoning_task_pairs_are_chat_prompts_scored_on_the_solution(tasks, tok):
    """The reasoning task's own training_texts: the evaluation prompt (chat template), the gold
    solution closed by <|im_end|>; only the solution's tokens are scored."""
    task = tasks["gsm8k"]
    data = task.train_data(3, seed=0)
    assert task.train_record(data)["split"] == "train" and task.train_record(data)["rows"] == 3
    pairs = training_pairs(task, data, tok)
    prompt, completion = pairs[0]
    assert prompt == task.prompt(tok, data.questions[0], []) and prompt.endswith("<|im_start|>assistant\n")
    assert completion == data.solutions[0] + "<|im_end|>"
    (feat,), (mask,) = encode_pairs(tok, pairs[:1], max_length=1024)
    n_prompt = len(tok(prompt)["input_ids"])
    assert mask == [0] * n_prompt + [1] * (len(feat["input_ids"]) - n_prompt)
    assert tok.decode([t for t, m in zip(feat["input_ids"], mask) if m]) == completion


def test_language_modelling_task_texts_are_scored_whole(tasks, tok):
    task = tasks["gsm8k_text"]
    data = task.train_data(4, seed=0)
    pairs = training_pairs(task, data, tok)
    assert pairs == [("", t) for t in data.split.rows["answer"]]
    feats, masks = encode_pairs(tok, pairs, max_length=64)
    for f, m in zip(feats, masks):
        assert f["input_ids"][0] == tok.bos_token_id and m[0] == 0 and all(m[1:])
        assert len(m) == len(f["input_ids"]) <= 64


def test_encode_pairs_marks_the_completion_tokens(tok):
    prompt, completion = "Question: 1 + 1?\nAnswer:", " 2 #### 2<|im_end|>"
    p, c = tok(prompt)["input_ids"], tok(completion)["input_ids"]
    (feat,), (mask,) = encode_pairs(tok, [(prompt, completion)], max_length=64)
    assert feat["input_ids"] == p + c and feat["input_ids"][-1] == PAD
    assert feat["attention_mask"] == [1] * (len(p) + len(c))
    assert mask == [0] * len(p) + [1] * len(c)
    (short,), (short_mask,) = encode_pairs(tok, [(prompt, completion)], max_length=len(p) + 2)
    assert short["input_ids"] == (p + c)[: len(p) + 2] and short_mask == [0] * len(p) + [1, 1]
    # a plain text starts from the prefix token (SmolLM2: BOS <|im_start|>), so its first token is learnt too
    (text,), (text_mask,) = encode_pairs(tok, [("", "plain text to model")], max_length=64)
    assert text["input_ids"] == [1] + tok("plain text to model")["input_ids"]
    assert text_mask == [0] + [1] * (len(text["input_ids"]) - 1)


def test_right_pad_and_scored_positions(tok):
    feats, masks = encode_pairs(tok, [("Q: a?\nA:", " yes<|im_end|>"), ("Q: a longer one, b?\nA:", " no, it is c.")], 64)
    batch = right_pad(PAD)(feats)
    n0, n1 = (len(f["input_ids"]) for f in feats)
    assert batch["input_ids"].shape == (2, max(n0, n1))
    assert batch["attention_mask"].sum(1).tolist() == [n0, n1]
    keep = scored_positions(batch, masks)
    # position t is scored iff token t+1 is a completion token: one per completion token
    assert keep.sum(1).tolist() == [sum(masks[0]), sum(masks[1])]
    first = masks[0].index(1)
    assert keep[0, first - 1] and not keep[0, first - 2] and not keep[0, n0 - 1:].any()


def _forward(model, batch):
    with torch.no_grad():
        return model(**batch)


def test_label_loss_equals_transformers_shifted_cross_entropy(student, two_examples):
    """Labels-only loss = transformers' own causal-LM loss with prompt and padding labelled -100."""
    feats, masks = two_examples
    batch = right_pad(PAD)(feats)
    ours = token_loss(masks)(_forward(student, batch), np.arange(2), batch)
    labels = batch["input_ids"].clone()
    for row, mask in enumerate(masks):
        labels[row, : len(mask)][torch.tensor(mask) == 0] = -100
    labels[batch["attention_mask"] == 0] = -100
    with torch.no_grad():
        reference = student(**batch, labels=labels).loss
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


@pytest.mark.parametrize("alpha, temperature", [(0.5, 1.0), (0.8, 2.0)])
def test_kd_loss_equals_a_per_example_hand_computation(lm, student, two_examples, alpha, temperature):
    """α · T² · mean over scored tokens of KL(p_T ‖ q_T) + (1 − α) · mean CE, each example run alone
    (no padding at all) and the scored positions pooled by hand."""
    feats, masks = two_examples
    batch = right_pad(PAD)(feats)
    cfg = DistillConfig(loss="forward_kl", temperature=temperature, alpha=alpha)
    ours = token_loss(masks, lm, cfg, dtype="fp32")(_forward(student, batch), np.arange(2), batch)
    kls, nlls = [], []
    for feat, mask in zip(feats, masks):
        ids = torch.tensor([feat["input_ids"]])
        with torch.no_grad():
            s, t = student(input_ids=ids).logits[0], lm(input_ids=ids).logits[0]
        for pos in range(len(mask) - 1):
            if mask[pos + 1]:
                log_q = F.log_softmax(s[pos] / temperature, -1)
                log_p = F.log_softmax(t[pos] / temperature, -1)
                kls.append(float((log_p.exp() * (log_p - log_q)).sum()))
                nlls.append(-float(F.log_softmax(s[pos], -1)[ids[0, pos + 1]]))
    expected = alpha * temperature**2 * np.mean(kls) + (1 - alpha) * np.mean(nlls)
    assert ours.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("loss, args", [("forward_kl", {}), ("reverse_kl", {}), ("generalized_jsd", {"beta": 0.5})])
def test_padding_a_sequence_does_not_change_its_loss(lm, student, two_examples, loss, args):
    feats, masks = two_examples
    feat, mask = feats[0], masks[0]
    cfg = DistillConfig(loss=loss, loss_args=args, temperature=2.0, alpha=0.5)
    fn = token_loss([mask], lm, cfg, dtype="fp32")
    alone = right_pad(PAD)([feat])
    padded = {k: F.pad(v, (0, 7), value=PAD if k == "input_ids" else 0) for k, v in alone.items()}
    assert padded["input_ids"].shape[1] == alone["input_ids"].shape[1] + 7
    a = fn(_forward(student, alone), np.arange(1), alone)
    b = fn(_forward(student, padded), np.arange(1), padded)
    assert torch.isfinite(a) and a.item() > 0
    assert b.item() == pytest.approx(a.item(), rel=1e-5)


def test_prompt_tokens_do_not_count(lm, student, two_examples):
    """The same tokens scored as a plain text give a different loss: the mask is honoured."""
    feats, masks = two_examples
    batch = right_pad(PAD)([feats[0]])
    out = _forward(student, batch)
    answer_only = token_loss([masks[0]])(out, np.arange(1), batch)
    everything = token_loss([[1] * len(masks[0])])(out, np.arange(1), batch)
    assert not math.isclose(answer_only.item(), everything.item(), rel_tol=1e-3)


def test_a_teacher_finetune_config_is_rejected(tasks, tmp_path):
    suite = _suite().model_copy(update={"teacher": _suite().teacher.model_copy(update={"finetune": DistillConfig()})})
    with pytest.raises(KdbenchError, match=r"suite causal-test: teacher.finetune must be null for the causal_lm task "
                                           r"gsm8k_text"):
        run(tasks["gsm8k_text"], suite, tmp_path)
    assert not any(tmp_path.iterdir())
