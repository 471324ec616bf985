"""The lm-eval bridge, both directions, on SmolLM2-135M-Instruct and mirror data (small slices).

* kdbench -> lm-eval: our ``kdbench`` lm-eval model (registered model, object, command line).
* lm-eval -> kdbench: the ``lm_eval`` task family turns lm-eval's per-document samples into
  Predictions, cross-checked against lm-eval's own ``hf`` model, the raw mirror files and direct
  backend calls.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kdbench.errors import KdbenchError
from tests.helpers.lm_eval_bridge import MODEL, _write_task
from tests.helpers import lm_eval_bridge as shared

# fixtures shared with tests/unit/tasks/test_lm_eval_bridge.py (pytest finds them as attributes of this module)
lm_eval_tasks_dir, smol, sst2_run = shared.lm_eval_tasks_dir, shared.smol, shared.sst2_run


@pytest.mark.slow  # a fresh process indexes lm-eval's ~15k built-in task YAMLs: a minute on 2 busy cores
def test_lm_eval_command_line(tmp_path, lm_eval_tasks_dir, sst2_run):
    """``python -m kdbench.lm_eval_cli --model kdbench ...`` is lm-eval's CLI with our model."""
    proc = subprocess.run(
        [sys.executable, "-m", "kdbench.lm_eval_cli", "--model", "kdbench",
         "--model_args", f"pretrained={MODEL},dtype=fp32", "--tasks", "kdbench_sst2",
         "--include_path", lm_eval_tasks_dir, "--limit", "4", "--output_path", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = tmp_path.rglob("results_*.json")
    acc = json.loads(result.read_text())["results"]["kdbench_sst2"]["acc,none"]
    assert acc == pytest.approx(np.mean(sst2_run[2].correct[:4]), abs=1e-12)


@pytest.mark.slow  # an unknown name is looked up in lm-eval's ~15k built-in task YAMLs too (a minute here)
def test_unknown_lm_eval_task_is_one_line_error(tmp_path):
    from kdbench.tasks import get_task

    _write_task(tmp_path, "lm_eval_task: no_such_lm_eval_task\nmetrics: [acc]\nmain_score: acc\n")
    with pytest.raises(KdbenchError) as err:
        get_task("bad_lm", [tmp_path])
    message = str(err.value)
    assert "bad_lm" in message and "unknown lm-eval task 'no_such_lm_eval_task'" in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------------
# end to end: kdbench eval on the lm_eval suite
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def layer_selected_student(tmp_path_factory, smol):
    """SmolLM2 with every other one of its 30 layers, saved as a student folder."""
    from kdbench.models.loading import save_model
    from kdbench.models.students import layer_selection

    folder = tmp_path_factory.mktemp("smol-student")
    save_model(layer_selection(smol.model, list(range(0, 30, 2))), smol.tokenizer, folder)
    return folder


@pytest.mark.slow
def test_kdbench_eval_lm_eval_suite(tmp_path, data_dir, layer_selected_student):
    from tests.helpers.cli import run_kdbench

    rows = 8
    proc = run_kdbench("eval", "--suite", "lm_eval", "--teacher", MODEL, "--student", layer_selected_student,
                       "--eval-rows", rows, "--reports-dir", tmp_path / "reports", "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "reports").iterdir()
    record = json.loads((run_dir / "report.json").read_text())
    samples = pd.read_parquet(run_dir / "samples.parquet")
    assert record["datasets"]["lm_eval_sst2"]["rows"] == rows and record["datasets"]["lm_eval_gsm8k"]["rows"] == rows

    sst2 = samples[samples.task == "lm_eval_sst2"]
    by_role = {role: sst2[sst2.role == role].sort_values("example_id", key=lambda s: s.astype(int)) for role in ("teacher", "student")}
    for role, rows_of in by_role.items():
        res = record["results"]["lm_eval_sst2"][role]
        assert res["accuracy"]["value"] == pytest.approx(rows_of["correct"].astype(float).mean())
        assert res["acc"]["value"] == pytest.approx(res["accuracy"]["value"])
    loyalty = record["pairs"]["lm_eval_sst2"]["student|teacher"]["label_loyalty"]["value"]
    assert loyalty == pytest.approx(np.mean(by_role["student"]["pred"].to_numpy() == by_role["teacher"]["pred"].to_numpy()))

    gsm = samples[samples.task == "lm_eval_gsm8k"]
    assert set(gsm.role) == {"teacher", "student"} and gsm["generation"].notna().all()
    for role in ("teacher", "student"):
        em = record["results"]["lm_eval_gsm8k"][role]["exact_match"]["value"]
        assert em == pytest.approx(gsm[gsm.role == role]["correct"].astype(float).mean())
    assert "answer_agreement" in record["pairs"]["lm_eval_gsm8k"]["student|teacher"]
