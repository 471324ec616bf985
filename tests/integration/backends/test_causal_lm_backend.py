"""The causal-LM backend against independent computations on the real SmolLM2-135M-Instruct in fp32:
plain per-example transformers forward passes, lm-eval's own HFLM (tokenisation split, rolling
windows) and unbatched greedy generation."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench.backends.causal_lm import HFCausalLM, cut_at_stop, rolling_windows

MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TOL = 2e-3  # fp32: batched/padded vs one-by-one forward passes differ by float rounding only


@pytest.fixture(scope="module")
def smol():
    from kdbench.models.loading import load_for_head, load_tokenizer

    return load_for_head(MODEL_ID, "causal_lm"), load_tokenizer(MODEL_ID)


@pytest.fixture(scope="module")
def gsm8k_texts() -> list[dict]:
    root = os.environ.get("KDBENCH_DATA_DIR")
    path = Path(root or "") / "openai/gsm8k/main/test.jsonl"
    if not root or not path.is_file():
        pytest.skip("needs the local data mirror (KDBENCH_DATA_DIR)")
    with path.open() as f:
        return [json.loads(next(f)) for _ in range(6)]


def _plain_logprob(model, ids: list[int], n_targets: int) -> tuple[float, bool]:
    """Σ log p of the last ``n_targets`` tokens of ``ids`` from one unpadded forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    targets = torch.tensor(ids[1:])
    picked = logp.gather(-1, targets[:, None])[:, 0][-n_targets:]
    greedy = (logp.argmax(-1) == targets)[-n_targets:]
    return float(picked.sum()), bool(greedy.all())


def test_loglikelihood_matches_plain_transformers_and_lm_eval(smol, gsm8k_texts):
    model, tok = smol
    lm = HFCausalLM(model, tok, dtype="fp32", batch_size=4)
    requests = [(r["question"] + "\nAnswer:", " " + r["answer"].split("####")[-1].strip()) for r in gsm8k_texts]
    requests += [("The capital of France is ", "Paris"),  # trailing space moves to the continuation
                 ("", "Hello world"),                     # empty context: conditioned on the prefix (BOS)
                 ("Two plus two equals", " four")]
    got = lm.loglikelihood(requests)
    for (context, continuation), (logprob, greedy) in zip(requests, got):
        ctx, cont = lm.encode_pair(context, continuation)
        ref, ref_greedy = _plain_logprob(model, ctx + cont, len(cont))
        assert logprob == pytest.approx(ref, abs=TOL)
        assert greedy == ref_greedy
    assert lm.encode_pair("The capital of France is ", "Paris") == lm.encode_pair("The capital of France is", " Paris")
    assert lm.encode_pair("", "Hello world")[0] == [tok.bos_token_id]

    lm_eval_hf = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance

    ref = lm_eval_hf.HFLM(pretrained=model, tokenizer=tok, batch_size=1, max_length=lm.max_length)
    instances = [Instance("loglikelihood", {}, req, i) for i, req in enumerate(requests)]
    expected = ref.loglikelihood(instances, disable_tqdm=True)
    for (logprob, greedy), (ref_logprob, ref_greedy) in zip(got, expected):
        assert logprob == pytest.approx(ref_logprob, abs=TOL)
        assert greedy == ref_greedy


def test_rolling_and_token_distributions_match_lm_eval_windows(smol, gsm8k_texts):
    model, tok = smol
    lm_eval_hf = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance
    from lm_eval.utils import get_rolling_token_windows

    texts = [r["answer"] for r in gsm8k_texts] + [""]
    lm = HFCausalLM(model, tok, dtype="fp32", batch_size=3, max_length=48)  # short windows: several per text
    tokens = lm.encode(texts[0])
    assert len(tokens) > 48
    assert list(rolling_windows(tokens, 1, 48)) == list(get_rolling_token_windows(tokens, 1, 48, 1))

    rolling = lm.loglikelihood_rolling(texts)
    ref = lm_eval_hf.HFLM(pretrained=model, tokenizer=tok, batch_size=1, max_length=48)
    expected = ref.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts[:-1])],
                                         disable_tqdm=True)
    assert rolling[:-1] == pytest.approx(expected, abs=5e-3)
    assert rolling[-1] == 0.0

    dists = lm.token_distributions(texts, top_k=16)
    for text, total, d in zip(texts, rolling, dists):
        assert len(d) == len(lm.encode(text))
        assert d.token_logprobs.sum() == pytest.approx(total, abs=1e-6)
    # one text in full, unwindowed: top-k rows and leftover mass against the full softmax
    d = HFCausalLM(model, tok, dtype="fp32", max_length=512).token_distributions(texts[1:2], top_k=16)[0]
    ids = [tok.bos_token_id] + lm.encode(texts[1])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1)
    values, indices = logp.topk(16, dim=-1)
    np.testing.assert_array_equal(d.token_ids, ids[1:])
    np.testing.assert_allclose(d.token_logprobs, logp.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0], atol=TOL)
    np.testing.assert_allclose(d.topk_logprobs, values, atol=TOL)
    assert (d.topk_ids == indices.numpy()).mean() > 0.99  # near-ties may swap order
    np.testing.assert_allclose(d.rest_mass, 1 - values.exp().sum(-1).double().numpy(), atol=1e-4)


def test_batched_generation_equals_unbatched_greedy(smol, gsm8k_texts):
    model, tok = smol
    prompts = [tok.apply_chat_template([{"role": "user", "content": r["question"]}], tokenize=False,
                                       add_generation_prompt=True) for r in gsm8k_texts[:3]]
    prompts.append("Question: What is 12 + 30?\nAnswer:")  # a much shorter prompt: left padding in the batch
    batched = HFCausalLM(model, tok, dtype="fp32", batch_size=4).generate(prompts, max_new_tokens=20)
    single = HFCausalLM(model, tok, dtype="fp32", batch_size=1).generate(prompts, max_new_tokens=20)
    assert batched == single
    # the same as transformers' own greedy decoding of each prompt alone
    for prompt, text in zip(prompts, single):
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=20, do_sample=False)
        assert text == tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(t.strip() for t in batched)
    # stop strings: generation is cut before the first one
    stopped = HFCausalLM(model, tok, dtype="fp32", batch_size=4).generate(prompts, max_new_tokens=20, stop=[" ", "\n"])
    for full, cut in zip(batched, stopped):
        assert cut == cut_at_stop(full, [" ", "\n"])


def test_bf16_scores_close_to_fp32(smol, gsm8k_texts):
    model, tok = smol
    texts = [r["answer"] for r in gsm8k_texts[:3]]
    fp32 = HFCausalLM(model, tok, dtype="fp32").loglikelihood_rolling(texts)
    bf16 = HFCausalLM(model, tok, dtype="bf16").loglikelihood_rolling(texts)
    n = [len(HFCausalLM(model, tok).encode(t)) for t in texts]
    # per-token mean log-prob within a few hundredths of a nat under bf16 autocast
    assert np.abs((np.array(bf16) - np.array(fp32)) / np.array(n)).max() < 0.05
