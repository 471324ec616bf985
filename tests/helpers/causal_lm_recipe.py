"""SmolLM2 and GSM8K for the causal-LM recipe tests: the model, its tokenizer, prompt/answer pairs,
a layer-selected student and a small suite (the unit checks of the loss and the real tiny distillation)."""

import pytest

from kdbench.config import SuiteConfig
from kdbench.data import DatasetSpec, load_split
from kdbench.distill.tokens import encode_pairs
from kdbench.models.students import layer_selection
from tests.helpers import SMOLLM

PAD = 2  # SmolLM2's pad token is its eos <|im_end|>: masks, not token ids, must tell padding


@pytest.fixture(scope="module")
def tasks(data_dir):
    from kdbench.tasks.registry import get_task

    return {name: get_task(name) for name in ("gsm8k", "gsm8k_text")}


def _gsm8k_pairs(tok, split, rows, seed=None):
    """lm-eval-style "Question: ...\nAnswer:" pairs, as the lm_eval_gsm8k task trains on them."""
    loaded = load_split(DatasetSpec("openai/gsm8k", "main", split), rows=rows, shuffle_seed=seed)
    return [(f"Question: {q}\nAnswer:", f" {a}{tok.eos_token}") for q, a in zip(loaded.rows["question"], loaded.rows["answer"])]


# --- the loss --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def student(lm):
    return layer_selection(lm, [0, 14, 29]).eval()


@pytest.fixture(scope="module")
def two_examples(tok, data_dir):
    pairs = _gsm8k_pairs(tok, "test", 2)
    return encode_pairs(tok, pairs, max_length=96)


def _suite(**distill) -> SuiteConfig:
    return SuiteConfig.model_validate({
        "name": "causal-test", "tasks": ["gsm8k_text"], "seed": 0, "dtype": "bf16", "max_length": 96,
        "data": {"train_rows": 24},
        "teacher": {"model": SMOLLM, "finetune": None},
        "student": {"builder": "layer_selection", "layers": [0, 10, 20, 29]},
        "distill": {"epochs": 2, "batch_size": 4, "lr": 5e-4, "warmup_ratio": 0.1, "loss": "forward_kl",
                    "temperature": 1.0, "alpha": 0.5, **distill},
    })
