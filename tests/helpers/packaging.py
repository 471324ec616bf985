"""A wheel of this checkout installed apart from it, and the CLI run from it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

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
