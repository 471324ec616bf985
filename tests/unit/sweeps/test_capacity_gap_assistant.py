"""kdbench capacity-gap --assistant (teacher assistants, TAKD), the fast parts: the via-vs-direct comparison on
constructed outcomes, bad input, the via point's suite and --help (the real sweep:
tests/integration/capacity_gap/test_capacity_gap_assistant.py)."""
from __future__ import annotations

import numpy as np
import pytest

from kdbench.config import SuiteConfig, load_suite
from kdbench.sweeps.capacity_gap import via_suite
from kdbench.sweeps.capacity_law import vs_direct
from tests.helpers.capacity_gap import MINILM
from tests.helpers.capacity_law import ACCURACY, HOW, outcomes, table
from tests.helpers.cli import run_kdbench

ONE = ["--teachers", MINILM, "--student-layers", f"{MINILM}:1"]


def test_via_against_direct_on_constructed_outcomes():
    direct = outcomes(600, 0.7, 1)
    better = direct.copy()
    better[np.flatnonzero(~direct)[:100]] = True  # right on 100 more examples
    out = vs_direct(ACCURACY, {"big": table(better), "mid": table(direct)}, {"big": table(direct), "mid": table(direct)}, HOW)
    big, mid = out["big"], out["mid"]
    assert big["finding"] == "via the assistant is better" and big["delta"] == pytest.approx(100 / 600)
    assert big["test"].startswith("exact McNemar") and big["p_value"] <= big["p_holm"] < 0.05
    assert big["ci"][0] <= big["delta"] <= big["ci"][1] and big["n_samples"] == HOW.n_samples
    assert mid == {**mid, "delta": 0.0, "p_value": 1.0, "finding": "no significant difference"}
    worse = vs_direct(ACCURACY, {"big": table(direct)}, {"big": table(better)}, HOW)["big"]
    assert worse["finding"] == "direct is better" and worse["delta"] < 0


@pytest.mark.parametrize("args, message", [
    ([*ONE, "--assistant", "config:num_hidden_layers"], "--assistant 'config:num_hidden_layers' is not config:KEY=VALUE"),
    ([*ONE, "--assistant", "layers:x"], "--assistant 'layers:x' is not layers:K with K >= 1"),
    ([*ONE, "--assistant", "no-such-org/no-such-assistant"], "model 'no-such-org/no-such-assistant'"),
    ([*ONE, "--assistant", "layers:6"], f"the assistant layers:6 (22,713,216 parameters) is not smaller than teacher {MINILM}"),
    (["--teachers", MINILM, "--student-layers", f"{MINILM}:3", "--assistant", "layers:2"],
     f"the assistant layers:2 (15,615,360 parameters) is not larger than student {MINILM}@L3"),
    (["--teacher-layers", f"{MINILM}:6", "--student", "config:num_hidden_layers=1", "--assistant",
      "config:num_hidden_layers=3,intermediate_size=768"], "built from the assistant config:num_hidden_layers=3"),
    (["--teacher-layers", f"{MINILM}:6", "--student", "config:num_hidden_layers=1", "--assistant",
      "config:num_hidden_layers=1"], "the assistant config:num_hidden_layers=1 is also a student"),
])
def test_bad_assistant_is_one_line_exit_2(tmp_path, args, message):
    out = run_kdbench("capacity-gap", "--suite", "quickstart", *args, "--reports-dir", tmp_path / "reports")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "reports").exists()  # nothing half-written


def test_every_task_learns_from_its_own_assistant(tmp_path):
    """A via point of a suite of several tasks, some with their own teacher (per_task): each task's
    teacher is the assistant saved for that task, used as it is."""
    suite = SuiteConfig.model_validate(via_suite(load_suite("full").model_dump(mode="json"), tmp_path / "run"))
    for task in suite.tasks:
        teacher = suite.for_task(task).teacher
        assert (teacher.model, teacher.finetune, teacher.layers) == (str(tmp_path / "run" / "models" / task / "student"),
                                                                     None, None)


def test_resume_takes_no_new_assistant(tmp_path):
    folder = tmp_path / "capacity-gap-x"
    folder.mkdir()
    out = run_kdbench("capacity-gap", "--resume", folder, "--assistant", "layers:3")
    assert out.returncode == 2 and "drop --assistant" in out.stderr, out.stderr


def test_help_names_the_assistant():
    out = run_kdbench("capacity-gap", "--help")
    assert out.returncode == 0 and "--assistant SPEC" in out.stdout and "layers:K" in out.stdout
