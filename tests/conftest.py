"""Tests run on real models and real data slices from the local mirror (`make test` sets the
offline variables; running pytest directly picks up ../shared when it is there)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT, SMOLLM, TEACHER_ID
from tests.helpers.cli import SMALL, run_kdbench

_MIRROR = ROOT.parent / "shared" / "data"
if "KDBENCH_DATA_DIR" not in os.environ and _MIRROR.is_dir():
    os.environ["KDBENCH_DATA_DIR"] = str(_MIRROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests skip, with the reason, where torch sees no CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    why = ("CPU build of torch" if torch.version.cuda is None else "torch sees no GPU")
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU ({why} {torch.__version__})")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _environment_restored():
    """Every test module leaves os.environ as it found it: vLLM sets process variables (LD_PRELOAD of
    torch's libgomp among them) on import and engine start, often in a module-scoped fixture, and later
    tests start kdbench subprocesses from this environment (tests/unit/test_threads.py checks their
    thread policy), so a leak would make results depend on test order. Module scope: an autouse
    fixture is set up before the module's other fixtures and torn down after them."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("KDBENCH_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("needs the local data mirror (KDBENCH_DATA_DIR)")
    return Path(value)


@pytest.fixture(scope="session")
def teacher_classifier():
    """The real MiniLM-L6 checkpoint with a (seeded) classification head."""
    import torch

    from kdbench.models.loading import load_classifier

    torch.manual_seed(0)
    return load_classifier(TEACHER_ID, num_labels=2)


@pytest.fixture(scope="session")
def tokenizer():
    from kdbench.models.loading import load_tokenizer

    return load_tokenizer(TEACHER_ID)



@pytest.fixture(scope="session")
def small_runs(tmp_path_factory, data_dir):
    """Three real quickstart runs on a small SST-2 slice, shared by the slow tests (each costs a
    minute or more on 2 cores): ``first`` fine-tunes the teacher and trains the KD student and the
    baseline; ``rerun`` is the same config (teacher from the cache, same seed) logging its curves to
    TensorBoard (which must not change a number); ``degraded`` keeps one teacher layer instead of two."""
    root = tmp_path_factory.mktemp("small-runs")
    reports = root / "reports"
    env = {"KDBENCH_CACHE_DIR": str(root / "cache")}
    runs, procs = {}, {}
    for name, layers, extra in (("first", "0,5", ()), ("rerun", "0,5", ("--log-with", "tensorboard")),
                                ("degraded", "0", ())):
        before = set(reports.iterdir()) if reports.exists() else set()
        proc = run_kdbench("train-and-eval", *SMALL, "--layers", layers, *extra, "--reports-dir", reports,
                           "--leaderboard-dir", root / "leaderboards", env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (runs[name],) = set(reports.iterdir()) - before
        procs[name] = proc
    return {"root": root, "reports": reports, "procs": procs, **runs}


@pytest.fixture(scope="module")
def lm():
    """SmolLM2-135M-Instruct as a causal LM in eval mode (one per test module: some tests train copies of it)."""
    from kdbench.models.loading import load_for_head

    return load_for_head(SMOLLM, "causal_lm").eval()


@pytest.fixture(scope="module")
def tok():
    from kdbench.models.loading import load_tokenizer

    return load_tokenizer(SMOLLM)
