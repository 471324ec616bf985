"""What tests/integration/recipes/test_multi_teacher.py and tests/unit/distill/test_multi_teacher.py share."""
from __future__ import annotations


L3, MPNET = "sentence-transformers/paraphrase-MiniLM-L3-v2", "sentence-transformers/all-mpnet-base-v2"
