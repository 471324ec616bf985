"""Whether this machine has a GPU (the device tests check the refusals a CPU-only machine gives)."""
from __future__ import annotations

import torch

NO_GPU = not torch.cuda.is_available()
