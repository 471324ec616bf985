"""SmolLM2 on GSM8K solutions for the language-modelling tests (perplexity, top-k approximations)."""
from __future__ import annotations

import pytest

from kdbench.config import EvalConfig
from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings

MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
FP32 = RunSettings(dtype="fp32", max_length=256, seed=0, eval=EvalConfig(batch_size=8, bootstrap_samples=1000))


@pytest.fixture(scope="module")
def setup(data_dir):
    task = get_task("gsm8k_text")
    data = task.eval_data(6)
    teacher = task.load_model(MODEL_ID)
    preds = task.predict(teacher, data, "teacher", FP32)
    return task, data, teacher, preds
