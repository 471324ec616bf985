"""Where models run: the one device setting (``--device`` / suite key ``device``) resolved to a
torch device, and the placement every loader, backend, cache and the trainer goes through.

Settings: ``auto`` (a GPU when torch sees one and ``accelerate launch --cpu`` did not ask for the
CPU, else the CPU), ``cpu``, ``cuda`` (this process's GPU: ``LOCAL_RANK``'s under ``accelerate
launch`` / ``torchrun``, else the current one) and ``cuda:N`` (one process only). A setting that
cannot be honoured is a one-line error before any work. This module is the one place that knows
the device kinds by name; everywhere else asks it.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kdbench.errors import KdbenchError

if TYPE_CHECKING:
    import torch

CPU, CUDA = "cpu", "cuda"
SETTINGS = "auto, cpu, cuda or cuda:N"
_SETTING = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_setting(value: str) -> str:
    """The setting's syntax (torch-free, for config validation); availability is :func:`resolve`'s."""
    if not isinstance(value, str) or not _SETTING.fullmatch(value):
        raise ValueError(f"device {value!r}: expected {SETTINGS}")
    return value


def launched_local_rank() -> int | None:
    """This process's local rank under ``accelerate launch`` / ``torchrun``, None in a plain process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return int(os.environ.get("LOCAL_RANK", "0"))


def _why_no_cuda() -> str:
    import torch

    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU build, without CUDA"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
            + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""))


def resolve(setting: str = "auto") -> torch.device:
    """The torch device a setting means in this process, or a one-line error saying why it cannot
    be had (no CUDA, a GPU index that does not exist, an index under a multi-process launcher)."""
    import torch

    try:
        check_setting(setting)
    except ValueError as e:
        raise KdbenchError(f"--device: {e}") from None
    wants_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if setting == CPU or (setting == "auto" and (wants_cpu or not torch.cuda.is_available())):
        return torch.device(CPU)
    if not torch.cuda.is_available():
        raise KdbenchError(f"--device {setting}: {_why_no_cuda()}; use --device cpu (or auto)")
    count = torch.cuda.device_count()
    local = launched_local_rank()
    if ":" in setting:
        index = int(setting.split(":", 1)[1])
        if index >= count:
            have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise KdbenchError(f"--device {setting}: no such GPU; torch sees {count} ({have})")
        if local is not None:
            raise KdbenchError(f"--device {setting}: under a multi-process launcher each process takes its own GPU "
                               "(LOCAL_RANK); use --device cuda")
        return torch.device(CUDA, index)
    return torch.device(CUDA, local % count if local is not None else torch.cuda.current_device())


def is_cuda(device) -> bool:
    import torch

    return torch.device(device).type == CUDA


def deterministic_training(device) -> bool:
    """Whether training on ``device`` is bit-deterministic per seed: on the CPU the trainer turns on
    torch's deterministic algorithms; CUDA kernels (atomic adds in embedding and attention backward
    passes, cuBLAS split-K reductions) are left free, for speed."""
    return not is_cuda(device)


def configure(device: torch.device) -> None:
    """Per-process settings for a run on ``device``: on a GPU of compute capability 8 or more
    (Ampere on), fp32 matmuls and convolutions may use TF32 (``dtype: fp32`` then means TF32
    products with fp32 accumulation); the device becomes the current one. Nothing on the CPU."""
    import torch

    if not is_cuda(device):
        return
    torch.cuda.set_device(device)
    if torch.cuda.get_device_capability(device)[0] >= 8:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def place(model, device):
    """``model`` moved to ``device`` (None: left where it is); returns it."""
    return model if device is None else model.to(device)


def to_device(batch: Mapping[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """A padded batch on ``device``. To a GPU the copy is made from pinned (page-locked) host
    memory and is non-blocking, so it overlaps the host's next work; the caching host allocator
    keeps the pinned buffer alive until the copy is done."""
    if not is_cuda(device):
        return {k: v.to(device) for k, v in batch.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def cache_fields(device) -> dict:
    """What a cached output (fine-tuned teacher, teacher logits) adds to its key when made on a GPU:
    GPU kernels do not reproduce the CPU's numbers bit for bit. CPU keys stay as they always were."""
    return {"device": CUDA} if device is not None and is_cuda(device) else {}


def _accelerate_state(device: torch.device):
    """accelerate's per-process state for ``device``. The state is a process singleton fixed by its
    first use; a single process that moves to another device kind (a CPU test, then a GPU one)
    gets a fresh state, while a launched job must keep the device it started with."""
    from accelerate.state import AcceleratorState, PartialState

    if PartialState._shared_state:
        current = PartialState()
        if current.device.type != device.type:
            if current.num_processes > 1:
                raise KdbenchError(f"--device {device}: this launched job runs on {current.device}; "
                                   "a launched process cannot change device")
            AcceleratorState._reset_state(reset_partial_state=True)
    configure(device)
    return PartialState(cpu=not is_cuda(device))


def process_state(device: torch.device):
    """accelerate's ``PartialState`` of this process on ``device`` (process index, count, barriers):
    gloo across launched CPU processes, NCCL across GPUs."""
    return _accelerate_state(device)


def accelerator(device: torch.device):
    """An ``Accelerator`` that places on ``device`` (``prepare`` moves the model there)."""
    from accelerate import Accelerator

    _accelerate_state(device)
    return Accelerator(cpu=not is_cuda(device))
