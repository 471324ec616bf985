"""``pip install .`` (not editable) ships what kdbench reads at run time: the wheel built from this
checkout, installed on its own (its dependencies are the test environment's), runs from a folder
outside the checkout with nothing of the checkout on the path: ``kdbench suites`` lists the packaged
suites, and a tiny ``train-and-eval`` of the quickstart suite writes its run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT
from tests.helpers import packaging as shared
from tests.helpers.packaging import _kdbench

# fixtures shared with tests/integration/train_and_eval/test_packaging.py (pytest finds them as attributes of this module)
installed = shared.installed


def test_the_wheel_lists_its_packaged_suites(installed):
    where = subprocess.run([sys.executable, "-c", "import kdbench; print(kdbench.__file__)"], capture_output=True,
                           text=True, env=installed["env"], cwd=installed["cwd"], check=True).stdout.strip()
    assert Path(where).is_relative_to(installed["site"])
    proc = _kdbench(installed, "suites")
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {p.stem for p in (ROOT / "kdbench" / "suites").glob("*.yaml")} == listed
    assert "quickstart" in listed
