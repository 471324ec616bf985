"""Benchmark: training throughput of kdbench's loop against a plain ``transformers.Trainer`` with a
custom KD loss, on the same student, data, precision and batch size.

    python benchmarks/bench_trainer.py [--rows 512] [--max-length 64] [--batch-size 32] [--dtype bf16]

Student: all-MiniLM-L6-v2 cut to layers 0 and 5 (a classification head, seeded); teacher logits
precomputed once from the full model; data: the first SST-2 training rows of the local mirror.
Loss for both: forward KL at T = 2 with T² scaling, nothing else. The Trainer runs twice: with its
default random sampler, and with ``train_sampling_strategy="group_by_length"`` (the padding saving
kdbench's loop also makes). Prints examples/s and tokens/s (non-padding tokens) for each and the
ratio kdbench / Trainer. One epoch each, after a short warm-up run of each. Exit status 0 either way
(a measurement, not a test); the numbers depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import torch
import torch.nn.functional as F

TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"
T = 2.0


def setup(rows: int, max_length: int):
    from kdbench.backends.batching import encode
    from kdbench.backends.hf import HFClassifier
    from kdbench.models.loading import load_classifier, load_tokenizer
    from kdbench.models.students import layer_selection
    from kdbench.tasks import get_task

    task = get_task("sst2")
    split = task.train_data(rows, seed=0)
    texts, pairs = task.inputs(split)
    tokenizer = load_tokenizer(TEACHER_ID)
    features = encode(tokenizer, texts, pairs, max_length)
    torch.manual_seed(0)
    teacher = load_classifier(TEACHER_ID, num_labels=2).eval()
    logits = HFClassifier(teacher, tokenizer, "fp32", max_length, 64).logits_of_features(features, desc="teacher")
    return tokenizer, features, torch.as_tensor(logits, dtype=torch.float32), layer_selection(teacher, [0, 5])


def kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Forward KL(teacher ‖ student) at temperature T, × T² (Hinton et al. 2015)."""
    return F.kl_div(F.log_softmax(student_logits.float() / T, -1), F.log_softmax(teacher_logits / T, -1),
                    log_target=True, reduction="batchmean") * T * T


def run_kdbench(student, tokenizer, features, teacher_logits, args) -> float:
    from kdbench.config import TrainConfig
    from kdbench.distill.trainer import train

    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=5e-5, warmup_ratio=0.06)

    def loss_fn(out, idx, batch):
        return kd(out.logits, teacher_logits[idx])

    start = time.perf_counter()
    train(student, tokenizer, features, cfg, loss_fn, seed=0, dtype=args.dtype, desc="kdbench loop")
    return time.perf_counter() - start


def run_hf_trainer(student, tokenizer, features, teacher_logits, args, strategy: str) -> float:
    from transformers import Trainer, TrainingArguments

    class KDTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            teacher = inputs.pop("teacher_logits")
            outputs = model(**inputs)
            loss = kd(outputs.logits, teacher)
            return (loss, outputs) if return_outputs else loss

    def collate(batch):
        idx = [b["idx"] for b in batch]
        padded = tokenizer.pad([{k: v for k, v in b.items() if k != "idx"} for b in batch], return_tensors="pt")
        return {**padded, "teacher_logits": teacher_logits[idx]}

    data = [{**f, "idx": i} for i, f in enumerate(features)]
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1, learning_rate=5e-5,
            warmup_steps=0.06, weight_decay=0.01, bf16=args.dtype == "bf16", use_cpu=args.device == "cpu",
            logging_strategy="no", save_strategy="no", report_to=[], remove_unused_columns=False,
            dataloader_num_workers=0, train_sampling_strategy=strategy, seed=0, disable_tqdm=True,
        )
        trainer = KDTrainer(model=student, args=targs, train_dataset=data, data_collator=collate)
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    tokenizer, features, teacher_logits, student = setup(args.rows, args.max_length)
    student.to(args.device)
    tokens = sum(len(f["input_ids"]) for f in features)
    runners = {
        "kdbench loop": lambda s, feats: run_kdbench(s, tokenizer, feats, teacher_logits, args),
        "transformers.Trainer": lambda s, feats: run_hf_trainer(s, tokenizer, feats, teacher_logits, args, "random"),
        "transformers.Trainer, group_by_length": lambda s, feats: run_hf_trainer(
            s, tokenizer, feats, teacher_logits, args, "group_by_length"),
    }
    for run in runners.values():  # warm-up: kernels, allocator, lazy imports
        run(copy.deepcopy(student), features[: 2 * args.batch_size])
    seconds = {name: run(copy.deepcopy(student), features) for name, run in runners.items()}

    print(f"kdbench trainer benchmark: {args.rows} SST-2 rows ({tokens:,} tokens), max_length {args.max_length}, "
          f"batch {args.batch_size}, {args.dtype}, {args.device}, {torch.get_num_threads()} torch thread(s), "
          f"{os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}")
    ours = seconds["kdbench loop"]
    for name, secs in seconds.items():
        ratio = "" if name == "kdbench loop" else f"   kdbench / this: {secs / ours:.2f}x"
        print(f"  {name:<40} {secs:7.2f} s  {args.rows / secs:8.1f} examples/s  {tokens / secs:9.0f} tokens/s{ratio}")


if __name__ == "__main__":
    main()
