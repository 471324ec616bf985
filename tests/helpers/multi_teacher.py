"""The two teachers of the multi-teacher tests."""
from __future__ import annotations

L3, MPNET = "sentence-transformers/paraphrase-MiniLM-L3-v2", "sentence-transformers/all-mpnet-base-v2"
