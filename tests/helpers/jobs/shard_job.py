"""Evaluation sharded across launched processes, on real models and data: each process runs its
share of the batches of a classifier, an embedder and a causal LM's scoring, then all gather; every
process saves what it holds and how many forward passes it ran.

    accelerate launch --multi_gpu --num_processes 2 tests/helpers/jobs/shard_job.py 'OUT-{rank}.npz'
"""
from __future__ import annotations

import sys

import numpy as np

CLASSIFIER = "sentence-transformers/all-MiniLM-L6-v2"
LM = "HuggingFaceTB/SmolLM2-135M-Instruct"


def outputs(counted: list[int] | None = None) -> dict[str, np.ndarray]:
    """Teacher logits, embeddings and token log-likelihoods of 20 SST-2 sentences (batches of 4)."""
    import torch

    from kdbench.backends.causal_lm import HFCausalLM
    from kdbench.backends.embeddings import HFEmbedder
    from kdbench.backends.hf import HFClassifier
    from kdbench.data import DatasetSpec, load_split
    from kdbench.models.loading import load_for_head, load_tokenizer

    texts = list(load_split(DatasetSpec("nyu-mll/glue", "sst2", "validation"), rows=20).rows["sentence"])
    torch.manual_seed(0)
    classifier = load_for_head(CLASSIFIER, "classification", num_labels=2, fresh_head=True).eval()
    encoder = load_for_head(CLASSIFIER, "embedding").eval()
    lm = load_for_head(LM, "causal_lm").eval()
    if counted is not None:  # forward passes this process runs
        for model in (classifier, encoder, lm):
            model.register_forward_hook(lambda *_: counted.append(1))
    tok, lm_tok = load_tokenizer(CLASSIFIER), load_tokenizer(LM)
    return {"logits": HFClassifier(classifier, tok, "fp32", 64, batch_size=4).logits(texts),
            "embeddings": HFEmbedder(encoder, tok, "fp32", 64, batch_size=4).embed(texts),
            "loglik": np.asarray(HFCausalLM(lm, lm_tok, "fp32", batch_size=4, max_length=128).loglikelihood_rolling(texts))}


def main() -> None:
    from kdbench import devices
    from kdbench.backends import sharding

    devices.process_state(devices.resolve("cpu"))  # gloo across the launched processes
    counted: list[int] = []
    got = outputs(counted)
    rank, size = sharding.world()
    np.savez(sys.argv[1].format(rank=rank), forwards=len(counted), processes=size, **got)


if __name__ == "__main__":
    main()
