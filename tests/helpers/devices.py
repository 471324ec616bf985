"""What tests/unit/test_devices.py and tests/integration/train_and_eval/test_devices.py share."""
from __future__ import annotations

import torch


NO_GPU = not torch.cuda.is_available()
