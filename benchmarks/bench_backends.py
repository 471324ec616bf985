"""Benchmark: kdbench's inference backends against the path a user would otherwise take, in one run.

    python benchmarks/bench_backends.py [--sentences 872] [--pairs 64] [--prompts 16] [--new-tokens 64]

(a) classifier: the sst2 task's evaluation path (``task.predict``: HFClassifier, length-sorted
    batches, dynamic padding) for all-MiniLM-L6-v2 with a classification head (a seeded fresh head:
    the forward pass costs the same) on the SST-2 validation sentences, at the suite's dtype and in
    fp32, against ``transformers.pipeline("text-classification")`` at batch 32 in fp32;
(b) SmolLM2-135M-Instruct log-likelihood scoring of GSM8K (question, solution) pairs: HFCausalLM
    against a plain per-example transformers loop in fp32;
(c) when vLLM imports: greedy generation tokens/s of SmolLM2, vllm against hf backend.

Prints examples/s (tokens/s for generation) and the ratios. Exit status 0 either way (a
measurement, not a test); numbers depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

CLASSIFIER = "sentence-transformers/all-MiniLM-L6-v2"
LM = "HuggingFaceTB/SmolLM2-135M-Instruct"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_classifier(n: int) -> None:
    from transformers import pipeline

    from kdbench.config import EvalConfig
    from kdbench.models.loading import load_classifier, load_tokenizer
    from kdbench.tasks import get_task
    from kdbench.tasks.base import LoadedModel, RunSettings

    task = get_task("sst2")
    data = task.eval_data(n)
    sentences = list(data.rows["sentence"])
    torch.manual_seed(0)
    model, tok = load_classifier(CLASSIFIER, num_labels=2).eval(), load_tokenizer(CLASSIFIER)
    loaded = LoadedModel(model, tok, CLASSIFIER)
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=-1, dtype=torch.float32)
    pipe(sentences[:32], batch_size=32)  # warm-up
    t_pipe, _ = timed(lambda: pipe(sentences, batch_size=32, truncation=True))
    print(f"(a) classifier, {len(sentences)} SST-2 validation sentences, {torch.get_num_threads()} threads")
    print(f"    transformers.pipeline fp32 batch 32: {len(sentences) / t_pipe:8.1f} examples/s")
    for dtype in ("bf16", "fp32"):
        settings = RunSettings(dtype=dtype, max_length=64, eval=EvalConfig(batch_size=32))
        task.predict(loaded, task.eval_data(32), "teacher", settings)  # warm-up
        t, _ = timed(lambda settings=settings: task.predict(loaded, data, "teacher", settings))
        print(f"    kdbench sst2 predict {dtype} batch 32:  {len(sentences) / t:8.1f} examples/s  "
              f"({t_pipe / t:.2f}x the pipeline)")


def gsm8k(n: int):
    from kdbench.data import DatasetSpec, load_split

    return load_split(DatasetSpec("openai/gsm8k", "main", "test"), rows=n).rows


def bench_loglikelihood(n: int) -> None:
    from kdbench.backends.causal_lm import HFCausalLM
    from kdbench.models.loading import load_for_head, load_tokenizer

    rows = gsm8k(n)
    requests = [(f"Question: {q}\nAnswer:", f" {a}") for q, a in zip(rows["question"], rows["answer"])]
    model, tok = load_for_head(LM, "causal_lm").eval(), load_tokenizer(LM)

    def plain() -> list[float]:
        out = []
        with torch.no_grad():
            for ctx, cont in requests:
                n_ctx = len(tok(ctx)["input_ids"])
                ids = tok(ctx + cont, return_tensors="pt")["input_ids"]
                logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
                out.append(float(logp.gather(-1, ids[0, 1:, None])[n_ctx - 1:].sum()))
        return out

    t_plain, ref = timed(plain)
    print(f"(b) SmolLM2 log-likelihood of {len(requests)} GSM8K question/solution pairs")
    print(f"    plain per-example transformers fp32: {len(requests) / t_plain:8.2f} pairs/s")
    for dtype in ("bf16", "fp32"):
        backend = HFCausalLM(model, tok, dtype, batch_size=16)
        t, got = timed(lambda backend=backend: backend.loglikelihood(requests))
        diff = np.abs(np.array([g for g, _ in got]) - np.array(ref)).max()
        print(f"    kdbench HFCausalLM {dtype} batch 16:    {len(requests) / t:8.2f} pairs/s  "
              f"({t_plain / t:.2f}x; max |Δ log-lik| {diff:.1e})")


def bench_generation(n: int, new_tokens: int) -> None:
    from kdbench.backends.causal_lm import HFCausalLM
    from kdbench.backends.vllm_lm import VLLMCausalLM, require_vllm
    from kdbench.errors import KdbenchError
    from kdbench.models.loading import load_for_head, load_tokenizer

    try:
        require_vllm()
    except KdbenchError as e:
        print(f"(c) skipped: {e}")
        return
    tok = load_tokenizer(LM)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in gsm8k(n)["question"]]
    model = load_for_head(LM, "causal_lm").eval()
    print(f"(c) SmolLM2 greedy generation, {n} GSM8K prompts × up to {new_tokens} new tokens "
          f"(vLLM CPU threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    for dtype in ("bf16", "fp32"):
        hf = HFCausalLM(model, tok, dtype, batch_size=n)
        t_hf, out_hf = timed(lambda hf=hf: hf.generate(prompts, new_tokens))
        t_init, vllm = timed(lambda dtype=dtype: VLLMCausalLM(LM, tok, dtype, batch_size=n, max_length=1024))
        with vllm:
            t_v, out_v = timed(lambda vllm=vllm: vllm.generate(prompts, new_tokens))
        tokens = lambda outs: sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs)  # noqa: E731
        same = sum(a == b for a, b in zip(out_hf, out_v))
        print(f"    {dtype}: hf {tokens(out_hf) / t_hf:7.1f} tokens/s, vllm {tokens(out_v) / t_v:7.1f} tokens/s "
              f"({t_hf / t_v:.2f}x; engine start {t_init:.0f} s); identical generations {same}/{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=872)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--only", choices=["a", "b", "c"], action="append", help="run only these parts")
    args = parser.parse_args()
    parts = set(args.only or "abc")
    if "a" in parts:
        bench_classifier(args.sentences)
    if "b" in parts:
        bench_loglikelihood(args.pairs)
    if "c" in parts:
        bench_generation(args.prompts, args.new_tokens)


if __name__ == "__main__":
    main()
