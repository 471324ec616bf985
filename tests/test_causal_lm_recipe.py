"""The causal-LM recipe: training texts and their loss masks, the token-level KD loss (checked
against hand computations and transformers' own shifted cross-entropy, padding-invariant), the
teacher-finetune guard, and a real tiny distillation of SmolLM2 on GSM8K answers."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdbench.config import DistillConfig, SuiteConfig
from kdbench.data import DatasetSpec, load_split
from kdbench.distill.recipes import run_recipe as run
from kdbench.distill.recipes.causal_lm import token_loss, training_pairs
from kdbench.distill.tokens import encode_pairs, right_pad, scored_positions
from kdbench.errors import KdbenchError
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.models.students import layer_selection
from kdbench.roles import BASELINE, STUDENT, TEACHER

LM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PAD = 2  # SmolLM2's pad token is its eos <|im_end|>: masks, not token ids, must tell padding


@pytest.fixture(scope="module")
def lm():
    return load_for_head(LM_ID, "causal_lm").eval()


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(LM_ID)


@pytest.fixture(scope="module")
def tasks(data_dir):
    from kdbench.tasks.registry import get_task

    return {name: get_task(name) for name in ("gsm8k", "gsm8k_text")}


def _gsm8k_pairs(tok, split, rows, seed=None):
    """lm-eval-style "Question: ...\nAnswer:" pairs, as the lm_eval_gsm8k task trains on them."""
    loaded = load_split(DatasetSpec("openai/gsm8k", "main", split), rows=rows, shuffle_seed=seed)
    return [(f"Question: {q}\nAnswer:", f" {a}{tok.eos_token}") for q, a in zip(loaded.rows["question"], loaded.rows["answer"])]


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


# --- the loss --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def student(lm):
    return layer_selection(lm, [0, 14, 29]).eval()


@pytest.fixture(scope="module")
def two_examples(tok, data_dir):
    pairs = _gsm8k_pairs(tok, "test", 2)
    return encode_pairs(tok, pairs, max_length=96)


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


def _suite(**distill) -> SuiteConfig:
    return SuiteConfig.model_validate({
        "name": "causal-test", "tasks": ["gsm8k_text"], "seed": 0, "dtype": "bf16", "max_length": 96,
        "data": {"train_rows": 24},
        "teacher": {"model": LM_ID, "finetune": None},
        "student": {"builder": "layer_selection", "layers": [0, 10, 20, 29]},
        "distill": {"epochs": 2, "batch_size": 4, "lr": 5e-4, "warmup_ratio": 0.1, "loss": "forward_kl",
                    "temperature": 1.0, "alpha": 0.5, **distill},
    })


def test_a_teacher_finetune_config_is_rejected(tasks, tmp_path):
    suite = _suite().model_copy(update={"teacher": _suite().teacher.model_copy(update={"finetune": DistillConfig()})})
    with pytest.raises(KdbenchError, match=r"suite causal-test: teacher.finetune must be null for the causal_lm task "
                                           r"gsm8k_text"):
        run(tasks["gsm8k_text"], suite, tmp_path)
    assert not any(tmp_path.iterdir())


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
