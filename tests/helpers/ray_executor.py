"""What tests/integration/capacity_gap/test_ray_executor.py and tests/unit/sweeps/test_ray_executor.py share."""
from __future__ import annotations


try:
    import ray
except ImportError:
    ray = None
