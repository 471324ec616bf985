"""``pip install .`` (not editable) ships what kdbench reads at run time: the wheel built from this
checkout, installed on its own (its dependencies are the test environment's), runs from a folder
outside the checkout with nothing of the checkout on the path: ``kdbench suites`` lists the packaged
suites, and a tiny ``train-and-eval`` of the quickstart suite writes its run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import ROOT



@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The environment of a process that sees the installed wheel, not this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    # built from a copy: a build leaves build/ and *.egg-info beside the sources it read
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "reports", "leaderboards", "build", "*.egg-info", "__pycache__", "tests", "benchmarks"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(work / "dist"), str(source)], check=True, capture_output=True, cwd=work)
    (wheel,) = (work / "dist").glob("kdbench-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(work / "site"),
                    str(wheel)], check=True, capture_output=True, cwd=work)
    # --target first on the path: the installed package wins over the venv's editable one
    env = {**os.environ, "PYTHONPATH": str(work / "site")}
    (work / "elsewhere").mkdir()
    return {"env": env, "cwd": work / "elsewhere", "site": work / "site"}


def _kdbench(installed: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdbench", *map(str, args)], capture_output=True, text=True,
                          env=installed["env"], cwd=installed["cwd"], timeout=1800)


def test_the_wheel_lists_its_packaged_suites(installed):
    where = subprocess.run([sys.executable, "-c", "import kdbench; print(kdbench.__file__)"], capture_output=True,
                           text=True, env=installed["env"], cwd=installed["cwd"], check=True).stdout.strip()
    assert Path(where).is_relative_to(installed["site"])
    proc = _kdbench(installed, "suites")
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {p.stem for p in (ROOT / "kdbench" / "suites").glob("*.yaml")} == listed
    assert "quickstart" in listed


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
