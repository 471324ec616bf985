"""Small real suites for every head, for the tests of the losses each head takes."""
from __future__ import annotations

import functools

import pytest

from kdbench.config import SuiteConfig
from kdbench.distill.recipes.base import head_losses
from kdbench.tasks import get_task as _get_task


@functools.cache
def get_task(name: str):
    """One task object per name, so loaded data (the BEIR corpus) is reused; documents are cut to
    32 tokens like everything else here (the task's own limit is 256)."""
    task = _get_task(name)
    if name == TASKS["embedding"]:
        task = type(task)(task.spec.model_copy(update={"max_length": 32}))
    return task


ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
DECODER = "HuggingFaceTB/SmolLM2-135M-Instruct"
TASKS = {"classification": "sst2", "regression": "stsb", "token_classification": "wnut_17",
         "embedding": "dbpedia_entity_5k", "causal_lm": "gsm8k_text"}


FEATURES = ("hidden_mse", "attention_transfer", "minilm_relation")
TINY_FINETUNE = {"epochs": 1, "batch_size": 16, "lr": 1.0e-4}


def suite_for(head: str, distill: dict, student: dict | None = None, task: str | None = None,
              max_length: int = 32, rows: int | None = None) -> SuiteConfig:
    """A small real suite for ``head``: 32 training rows (8 for causal LMs: GSM8K solutions),
    max_length 32, 2-layer layer-selected students, 2 optimiser steps (1 for causal LMs), no baseline."""
    causal = head == "causal_lm"
    teacher = {"model": DECODER if causal else ENCODER,
               "finetune": None if head in ("embedding", "causal_lm") else TINY_FINETUNE}
    raw = {
        "name": f"heads-{head}", "tasks": [task or TASKS[head]], "seed": 0, "dtype": "fp32",
        "max_length": max_length, "data": {"train_rows": rows or (8 if causal else 32), "eval_rows": 8},
        "teacher": teacher, "student": student or {"builder": "layer_selection", "layers": [0, 29] if causal else [0, 5]},
        "distill": {"epochs": 1, "batch_size": 8 if causal else 16, "lr": 1.0e-3, **distill},
        "baseline": False, "eval": {"batch_size": 16, "efficiency": False},
    }
    return SuiteConfig.model_validate(raw)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_dir):
    """One model cache for the module: each head's teacher is fine-tuned (one step) once."""
    root = tmp_path_factory.mktemp("heads")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDBENCH_CACHE_DIR", str(root / "cache"))
        yield root


def applicable() -> list[tuple[str, str]]:
    """Every (head, loss) its recipe's registration says it takes (regression: logit_mse only)."""
    pairs = []
    for head in TASKS:
        pairs += [(head, name) for name in head_losses(head)]
        pairs += [(head, f) for f in FEATURES]
    return pairs + [("causal_lm", "sequence_level")]
