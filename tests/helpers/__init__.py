"""What the tests share: the repository's paths, the real models they load, the CLI runner and
fixtures of records and runs (no test module imports another; they import these)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the causal-LM tests' model (the conftest's lm and tok fixtures)
