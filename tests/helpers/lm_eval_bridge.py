"""The lm-eval bridge's test models, task folders and a real SST-2 run."""
from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.tasks.base import RunSettings


MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SST2_ROWS = 30
FP32 = RunSettings(dtype="fp32")


@pytest.fixture(scope="module")
def lm_eval_tasks_dir() -> str:
    from kdbench.tasks.lm_eval_tasks import TASKS_DIR

    return str(TASKS_DIR)


@pytest.fixture(scope="module")
def smol():
    from kdbench.tasks import get_task

    return get_task("lm_eval_sst2").load_model(MODEL)


@pytest.fixture(scope="module")
def sst2_run(data_dir, smol):
    """The built-in lm_eval_sst2 task on the first SST2_ROWS sentences, through the bridge, fp32."""
    from kdbench.tasks import get_task

    task = get_task("lm_eval_sst2")
    data = task.eval_data(SST2_ROWS)
    return task, data, task.predict(smol, data, "teacher", FP32)


# --------------------------------------------------------------------------------------------------
# (5) bad specs: one line naming what and where
# --------------------------------------------------------------------------------------------------
def _write_task(folder: Path, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "bad.yaml"
    path.write_text("name: bad_lm\nfamily: lm_eval\n" + body)
    return path
