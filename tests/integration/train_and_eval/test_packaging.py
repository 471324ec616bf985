"""``pip install .`` (not editable) ships what kdbench reads at run time: the wheel built from this
checkout, installed on its own (its dependencies are the test environment's), runs from a folder
outside the checkout with nothing of the checkout on the path: ``kdbench suites`` lists the packaged
suites, and a tiny ``train-and-eval`` of the quickstart suite writes its run."""
from __future__ import annotations

import json

import pytest

from tests.helpers import packaging as shared
from tests.helpers.packaging import _kdbench

# fixtures shared with tests/unit/test_packaging.py (pytest finds them as attributes of this module)
installed = shared.installed


@pytest.mark.slow
def test_a_tiny_train_and_eval_from_the_wheel(installed, data_dir, tmp_path):
    proc = _kdbench(installed, "train-and-eval", "--train-rows", "64", "--eval-rows", "32", "--epochs", "1",
                    "--set", "teacher.finetune.epochs=1", "--set", "eval.efficiency=false",
                    "--set", "eval.bootstrap_samples=100", "--reports-dir", tmp_path / "reports",
                    "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "reports").iterdir()
    record = json.loads((run / "report.json").read_text())
    assert record["suite"] == "quickstart" and set(record["results"]["sst2"]) == {"teacher", "student", "baseline"}
    assert not any(installed["cwd"].iterdir())  # nothing written where it ran
