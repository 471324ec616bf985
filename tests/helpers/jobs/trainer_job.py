"""A real tiny KD training job (2-of-6-layer MiniLM student, 64 SST-2 rows, teacher logits from the
MiniLM teacher) shared by the loop tests; run as a script it trains with checkpoints and writes the
final weights, so a test can kill it with SIGKILL and resume it.

    python tests/helpers/jobs/trainer_job.py CHECKPOINT_DIR OUT.safetensors [--delay SECONDS] [--accum N]
    accelerate launch --cpu --num_processes 2 tests/helpers/jobs/trainer_job.py CHECKPOINT_DIR 'OUT-{rank}.safetensors'
"""
from __future__ import annotations

import argparse
import time

import torch

TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"


def job(rows: int = 64, loss: str = "forward_kl", **train_args):
    """(student, tokenizer, features, DistillConfig, loss_fn, make_loss): everything ``train`` takes,
    and ``make_loss(objective)``, a loss on the same labels and teacher logits for another objective."""
    from kdbench.backends.batching import encode
    from kdbench.backends.hf import HFClassifier
    from kdbench.config import DistillConfig
    from kdbench.distill.trainer import kd_objective, sequence_loss
    from kdbench.models.loading import load_classifier, load_tokenizer
    from kdbench.models.students import layer_selection
    from kdbench.tasks import get_task

    task = get_task("sst2")
    split = task.train_data(rows, seed=0)
    texts, pairs = task.inputs(split)
    tokenizer = load_tokenizer(TEACHER_ID)
    features = encode(tokenizer, texts, pairs, 64)
    torch.manual_seed(0)
    teacher = load_classifier(TEACHER_ID, num_labels=2).eval()
    teacher_logits = HFClassifier(teacher, tokenizer, "fp32", 64, 32).logits_of_features(features, desc="teacher")
    student = layer_selection(teacher, [0, 5])
    cfg = DistillConfig(**{"epochs": 2, "batch_size": 8, "lr": 1e-4, "loss": loss, **train_args})
    labels = task.labels(split)

    def make_loss(objective):
        return sequence_loss(objective, labels, teacher_logits)

    return student, tokenizer, features, cfg, make_loss(kd_objective(cfg)), make_loss


def main() -> None:
    from safetensors.torch import save_model

    from kdbench.backends.batching import collate
    from kdbench.distill.trainer import train

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints")
    ap.add_argument("out")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds of sleep per batch, so a test can kill mid-run")
    ap.add_argument("--accum", type=int, default=1)
    args = ap.parse_args()
    student, tokenizer, features, cfg, loss_fn, _ = job(grad_accum_steps=args.accum, checkpoint_every=2)
    pad = None
    if args.delay:
        def pad(feats):
            time.sleep(args.delay)
            return collate(tokenizer, feats)
    stats = train(student, tokenizer, features, cfg, loss_fn, seed=0, dtype="bf16", collate_fn=pad,
                  checkpoint_dir=args.checkpoints)
    from accelerate import PartialState

    save_model(student, args.out.format(rank=PartialState().process_index))  # OUT may name the rank: w-{rank}.st
    print(f"steps={stats.steps} resumed_from={stats.resumed_from_step} effective_batch={stats.effective_batch_size}")


if __name__ == "__main__":
    main()
