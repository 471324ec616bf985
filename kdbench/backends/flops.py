"""Model FLOPs and model FLOPs utilisation (MFU) on GPUs.

FLOPs are counted, not estimated: :func:`count_flops` runs a call under torch's ``FlopCounterMode``,
which adds up the matrix products (linear layers, attention scores and values: the CUDA SDPA
kernels are registered with it) at the shapes actually run, padding included. MFU is PaLM's
(Chowdhery et al. 2022, appendix B): achieved model FLOP/s over the device's peak,

    MFU = FLOPs of the timed calls / their time / peak FLOP/s,

the peak being the dense (no 2:4 sparsity) bf16 tensor-core figure of NVIDIA's datasheet for a
GPU in :data:`DENSE_BF16_TFLOPS`, else one measured here with a large bf16 matmul (an achieved
figure, so MFU against it reads higher) and cached per GPU name.
"""
from __future__ import annotations

import json
import re

# (model, variant) -> dense bf16 TFLOP/s; variant None is the SXM / default board. Datasheet
# values are quoted "with sparsity" (twice these) for Hopper and Ada.
DENSE_BF16_TFLOPS = {
    ("H200", None): 989.0,
    ("H200", "NVL"): 835.0,
    ("H100", None): 989.0,  # "NVIDIA H100 80GB HBM3" (SXM5)
    ("H100", "NVL"): 835.0,
    ("H100", "PCIE"): 756.0,
    ("A100", None): 312.0,  # SXM4 and PCIe
    ("L40S", None): 362.0,
    ("L40", None): 181.0,
    ("L4", None): 121.0,
    ("A40", None): 150.0,
    ("A30", None): 165.0,
    ("A10", None): 125.0,
}
PEAKS_FILE = "gpu_peaks.json"  # under the kdbench cache folder: measured peaks of GPUs not in the table


def table_peak(gpu_name: str) -> float | None:
    """The datasheet dense bf16 peak (TFLOP/s) of a GPU by its CUDA name (``torch.cuda.get_device_name``),
    matched on whole words (``NVIDIA A100-SXM4-80GB`` is an A100, ``NVIDIA A10G`` is not an A10)."""
    words = re.findall(r"[A-Z0-9]+", gpu_name.upper())
    for model in words:
        for variant in words:
            if (model, variant) in DENSE_BF16_TFLOPS:
                return DENSE_BF16_TFLOPS[(model, variant)]
        if (model, None) in DENSE_BF16_TFLOPS:
            return DENSE_BF16_TFLOPS[(model, None)]
    return None


def mfu(flops: float, seconds: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation of ``flops`` done in ``seconds`` on a device of ``peak_tflops``."""
    return flops / seconds / (peak_tflops * 1e12)


def count_flops(fn) -> int:
    """FLOPs of one call of ``fn()`` (forward, or forward and backward), as torch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def measure_peak(device, size: int = 8192, repeats: int = 10) -> float:
    """bf16 TFLOP/s of a ``size``³ matmul on ``device`` (median of ``repeats`` after warm-up)."""
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    times.sort()
    return 2 * size**3 / times[len(times) // 2] / 1e12


def device_peak(device) -> tuple[float, str]:
    """(dense bf16 TFLOP/s, where it comes from) of the GPU ``device``: the datasheet table, else a
    matmul measured once on this GPU and cached in the kdbench cache folder."""
    import torch

    from kdbench.fsio import write_atomic
    from kdbench.models.cache import cache_root

    name = torch.cuda.get_device_name(device)
    peak = table_peak(name)
    if peak is not None:
        return peak, "datasheet (dense bf16)"
    path = cache_root() / PEAKS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    if name not in known:
        known[name] = measure_peak(device)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(known, indent=2))
    return known[name], "measured (8192³ bf16 matmul)"
