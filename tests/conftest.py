"""Tests run on real models and real data slices from the local mirror (`make test` sets the
offline variables; running pytest directly picks up ../shared when it is there)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_MIRROR = ROOT.parent / "shared" / "data"
if "KDBENCH_DATA_DIR" not in os.environ and _MIRROR.is_dir():
    os.environ["KDBENCH_DATA_DIR"] = str(_MIRROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"


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
