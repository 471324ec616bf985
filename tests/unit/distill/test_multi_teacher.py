"""Multi-teacher distillation end to end on real models and an SST-2 slice: two teachers with
different tokenizers (MiniLM-L3: BERT vocabulary, MPNet), a 2-layer MiniLM student distilled on
their weighted ensemble; the record has loyalty to each teacher and to the ensemble, and the
ensemble's probabilities in samples.parquet are the weighted mean of the teachers'."""
from __future__ import annotations

import pytest

from kdbench.config import load_suite
from kdbench.errors import KdbenchError
from tests.helpers.multi_teacher import L3, MPNET


def test_suite_errors_are_one_line(data_dir):
    with pytest.raises(KdbenchError, match="teacher and teachers both given"):
        load_suite("multi_teacher", [f"teacher.model={L3}"])
    with pytest.raises(KdbenchError, match="teachers"):
        load_suite("multi_teacher", [f"teachers=[{{model: {L3}}}]"])  # an ensemble of one
    with pytest.raises(KdbenchError, match="weight"):
        load_suite("multi_teacher", [f"teachers=[{{model: {L3}, weight: 0}}, {{model: {MPNET}}}]"])
