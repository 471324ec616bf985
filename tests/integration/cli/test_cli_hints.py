"""What a newcomer needs from the CLI: a suite printed resolved to copy and edit, and what
``kdbench eval`` needs when plain hub models meet tasks whose models are fine-tuned per task."""
from __future__ import annotations

import pytest

from kdbench.config import SUITES_DIR, load_suite
from tests.helpers.cli import run_kdbench


@pytest.mark.parametrize("name", sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
def test_suites_show_prints_a_suite_that_loads_back_as_it_was(name, tmp_path):
    proc = run_kdbench("suites", "--show", name, "--set", "distill.alpha=0.25")
    assert proc.returncode == 0, proc.stderr
    copy = tmp_path / "copy.yaml"
    copy.write_text(proc.stdout)
    assert load_suite(str(copy)) == load_suite(name, ["distill.alpha=0.25"])
    assert "bootstrap_samples:" in proc.stdout and "log_with:" in proc.stdout  # defaults are spelled out


def test_suites_set_without_show_is_one_line():
    proc = run_kdbench("suites", "--set", "seed=1")
    assert proc.returncode == 2 and proc.stderr.strip() == "kdbench: error: suites --set: only with --show NAME"


def test_eval_of_plain_hub_models_on_glue_says_what_it_needs(tmp_path, data_dir):
    proc = run_kdbench("eval", "--suite", "glue", "--set", "tasks=[stsb]", "--teacher",
                       "sentence-transformers/all-MiniLM-L6-v2", "--model", "other=sentence-transformers/all-MiniLM-L6-v2",
                       "--reports-dir", tmp_path / "reports")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "as a regression model" in line and "would be random" in line and "fine-tuned for each task" in line
    assert "with the {task} placeholder (--teacher DIR/{task}" in line and "train-and-eval" in line
    assert not any((tmp_path / "reports").iterdir())  # nothing half-written
