"""Benchmark: kdbench's on-policy KD against TRL's ``GKDTrainer`` (Agarwal et al. 2024) on the same
student, teacher, data, λ, β, precision and steps, in one run.

    python benchmarks/bench_on_policy.py [--rows 32] [--steps 8] [--batch-size 4] [--fraction 0.5]
                                          [--beta 0.5] [--max-new-tokens 64] [--dtype bf16] [--eval-rows 48]

Teacher: SmolLM2-135M-Instruct; student: its 8-of-30-layer selection (layers 0, 4, ..., 24, 29),
the same initial weights for both runs. Data: the first shuffled GSM8K training problems as chat
prompts (the model's chat template, as the reasoning family prompts them) with the gold solution as
the completion. Both train ``--steps`` optimiser steps of ``--batch-size`` with fused AdamW (lr
1e-4, weight decay 0.01, 6% linear warm-up then linear decay), autocast in ``--dtype``, the loss
generalised JSD(β) on the completion tokens alone (no label term: kdbench's α = 1), and on a share λ
of the batches the student samples its own completions (temperature 1, top-p 1, no top-k, at most
``--max-new-tokens``) which the teacher scores. The same steps are on-policy in both: kdbench picks
them evenly (⌊(m+1)λ⌋ > ⌊mλ⌋) and TRL, which flips a coin per step with Python's ``random``, is
handed that schedule instead of the coin, so both do the same work. What differs is how each
library does it: kdbench batches by length and computes the loss on the completion positions only,
TRL computes it on every position of its padded batch before masking.

Printed for each: steps/s and tokens/s (tokens in the student's forward passes, prompts and samples
included, padding not), on-policy steps, and the held-out KL(teacher ‖ student) and acceptance rate
α reached, teacher-forced on the first ``--eval-rows`` GSM8K test solutions (the gsm8k_text task's
own metrics); then the ratios kdbench / TRL. Exit status 0 either way (a measurement, not a test);
the numbers depend on the machine and on what else runs on it (``cat /proc/loadavg``).
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

TEACHER_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
LAYERS = [0, 4, 8, 12, 16, 20, 24, 29]
LR, WEIGHT_DECAY, WARMUP = 1e-4, 0.01, 0.06


def setup(rows: int):
    from kdbench.models.loading import load_for_head, load_tokenizer
    from kdbench.models.students import layer_selection
    from kdbench.tasks import get_task

    tokenizer = load_tokenizer(TEACHER_ID)
    teacher = load_for_head(TEACHER_ID, "causal_lm").eval()
    task = get_task("gsm8k")
    data = task.train_data(rows, seed=0)
    pairs = task.training_texts(data, tokenizer)  # (chat prompt, solution + <|im_end|>)
    return tokenizer, teacher, layer_selection(teacher, LAYERS), data, pairs


def run_kdbench(student, teacher, tokenizer, pairs, args) -> dict:
    from kdbench.config import DistillConfig, OnPolicyConfig
    from kdbench.distill.on_policy import OnPolicy, prompts_of
    from kdbench.distill.recipes.causal_lm import encode_pairs, right_pad, token_loss
    from kdbench.distill.trainer import train

    features, masks = encode_pairs(tokenizer, pairs, args.max_length)
    on_policy = OnPolicyConfig(fraction=args.fraction, max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0)
    cfg = DistillConfig(loss="generalized_jsd", loss_args={"beta": args.beta}, temperature=1.0, alpha=1.0,
                        batch_size=args.batch_size, epochs=args.steps * args.batch_size / len(features), lr=LR,
                        weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP, on_policy=on_policy)
    sampler = OnPolicy(on_policy, prompts_of(features, masks, on_policy.prompt_tokens), pad_id=tokenizer.pad_token_id,
                       eos_ids=[teacher.generation_config.eos_token_id], max_length=args.max_length, seed=0,
                       dtype=args.dtype)
    loss = token_loss(masks, teacher, cfg, dtype=args.dtype)
    tokens = [0]

    def counted(outputs, idx, batch):
        tokens[0] += int(batch["attention_mask"].sum())
        return loss(outputs, idx, batch)

    start = time.perf_counter()
    stats = train(student, tokenizer, features, cfg, counted, seed=0, dtype=args.dtype, collate_fn=right_pad(tokenizer.pad_token_id),
                  batch_fn=sampler, desc="kdbench on-policy")
    seconds = time.perf_counter() - start
    return {"steps": stats.steps, "seconds": seconds, "tokens": tokens[0], "on_policy_steps": sampler.batches}


def run_trl(student, teacher, tokenizer, data, args) -> dict:
    from datasets import Dataset

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import trl.experimental.gkd.gkd_trainer as gkd_module
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from kdbench.distill.on_policy import is_on_policy

    counts = {"tokens": 0, "on_policy": 0}

    class Counted(GKDTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            counts["tokens"] += int(inputs["attention_mask"].sum())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        @staticmethod
        def generate_on_policy_outputs(model, inputs, generation_config):
            counts["on_policy"] += 1
            return GKDTrainer.generate_on_policy_outputs(model, inputs, generation_config)

    class Schedule:  # stands in for the `random` module GKDTrainer flips its coin with
        def __init__(self):
            self.step = 0

        def random(self) -> float:
            on = is_on_policy(self.step, args.fraction)
            self.step += 1
            return 0.0 if on else 1.0  # GKDTrainer samples when random() <= λ

    messages = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                for q, a in zip(data.questions, data.solutions)]
    with tempfile.TemporaryDirectory() as out:
        config = GKDConfig(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size, learning_rate=LR,
            weight_decay=WEIGHT_DECAY, warmup_steps=int(WARMUP * args.steps), lr_scheduler_type="linear",  # as kdbench rounds
            optim="adamw_torch_fused",
            bf16=args.dtype == "bf16", use_cpu=True, seed=0, lmbda=args.fraction, beta=args.beta, temperature=1.0,
            max_new_tokens=args.max_new_tokens, max_length=args.max_length, report_to="none", save_strategy="no",
            logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0)
        trainer = Counted(model=student, teacher_model=teacher, args=config, train_dataset=Dataset.from_dict({"messages": messages}),
                          processing_class=tokenizer)
        coin, gkd_module.random = gkd_module.random, Schedule()
        try:
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
        finally:
            gkd_module.random = coin
    return {"steps": args.steps, "seconds": seconds, "tokens": counts["tokens"], "on_policy_steps": counts["on_policy"]}


def held_out(models: dict, tokenizer, args) -> dict[str, dict]:
    """KL(teacher ‖ model) and α on the gsm8k_text test solutions, teacher-forced (the lm family's metrics)."""
    from kdbench.config import EvalConfig
    from kdbench.tasks import get_task
    from kdbench.tasks.base import LoadedModel, RunSettings

    task = get_task("gsm8k_text")
    data = task.eval_data(args.eval_rows)
    settings = RunSettings(dtype=args.dtype, max_length=256, eval=EvalConfig(bootstrap_samples=100, batch_size=16))
    reference = task.predict(LoadedModel(models.pop("teacher"), tokenizer, TEACHER_ID), data, "teacher", settings)
    out = {}
    for name, model in models.items():
        pair = task.score_pair(task.predict(LoadedModel(model.eval(), tokenizer, name), data, name, settings), reference, settings)
        out[name] = {"kl": pair["kl_teacher_student"]["value"], "alpha": pair["acceptance_rate"]["value"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--fraction", type=float, default=0.5, help="λ")
    parser.add_argument("--beta", type=float, default=0.5, help="β of the generalised JSD")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--eval-rows", type=int, default=48)
    args = parser.parse_args()

    from kdbench import threads

    threads.apply()
    import torch

    tokenizer, teacher, student, data, pairs = setup(args.rows)
    print(f"threads {torch.get_num_threads()}, load {open('/proc/loadavg').read().split()[:3]}; {args.steps} steps of "
          f"{args.batch_size}, λ = {args.fraction}, β = {args.beta}, {args.max_new_tokens} new tokens, {args.dtype}")
    students = {"kdbench": copy.deepcopy(student), "trl": copy.deepcopy(student)}
    runs = {"kdbench": run_kdbench(students["kdbench"], teacher, tokenizer, pairs, args),
            "trl": run_trl(students["trl"], teacher, tokenizer, data, args)}
    quality = held_out({"teacher": teacher, "before": student, **students}, tokenizer, args)

    print(f"\n{'':10} {'steps/s':>9} {'tokens/s':>9} {'on-policy':>9} {'held-out KL':>11} {'held-out α':>10}")
    print(f"{'before':10} {'':>9} {'':>9} {'':>9} {quality['before']['kl']:11.3f} {quality['before']['alpha']:10.3f}")
    for name, r in runs.items():
        r["steps_per_s"], r["tokens_per_s"] = r["steps"] / r["seconds"], r["tokens"] / r["seconds"]
        print(f"{name:10} {r['steps_per_s']:9.3f} {r['tokens_per_s']:9.1f} {r['on_policy_steps']:>5}/{r['steps']:<3} "
              f"{quality[name]['kl']:11.3f} {quality[name]['alpha']:10.3f}")
    k, t = runs["kdbench"], runs["trl"]
    print(f"\nratio kdbench / TRL: steps/s {k['steps_per_s'] / t['steps_per_s']:.2f}x, "
          f"tokens/s {k['tokens_per_s'] / t['tokens_per_s']:.2f}x (target >= 1.5x)")
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
