"""Ray when it is installed (None otherwise: those tests skip)."""
from __future__ import annotations

try:
    import ray
except ImportError:
    ray = None
