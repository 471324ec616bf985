"""What decides comparability besides the config: versions, hardware, threads, git hash."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_hash() -> str | None:
    """Commit of the kdbench checkout this code runs from (None for an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def trainer_revision() -> str:
    """A short hash of the code that makes students (the trainer, losses, recipes, teacher cache and
    student builders: ``kdbench/distill`` and ``kdbench/models``): two runs with the same revision
    were trained by the same code, whatever else changed."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*(root / "distill").rglob("*.py"), *(root / "models").glob("*.py")]):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_driver_version() -> str | None:
    """The NVIDIA driver's version (``nvidia-smi``), None where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return lines[0].strip() if lines else None


def accelerator(device) -> dict:
    """Where the models ran: device type and index, the GPU (name, count, memory, compute capability),
    the CUDA versions (the driver's, and the one torch was built with) and the numerics settings
    that decide whether two GPU runs can match (TF32, deterministic training). Present, with null
    or CPU values, for a CPU run."""
    import torch

    from kdbench import devices

    device = torch.device(device)
    gpu = devices.is_cuda(device)
    fields = {"device": str(device), "device_type": device.type, "device_index": device.index,
              "gpu_name": None, "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
              "gpu_memory_mb": None, "gpu_compute_capability": None, "cuda_driver_api": None,
              "gpu_driver_version": None, "torch_cuda_build": torch.version.cuda,
              "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if gpu else None,
              "deterministic_training": devices.deterministic_training(device)}
    if gpu:
        props = torch.cuda.get_device_properties(device)
        api = torch._C._cuda_getDriverVersion()  # e.g. 12040: the CUDA version the driver supports
        fields.update(gpu_name=props.name, gpu_memory_mb=props.total_memory // 2**20,
                      gpu_compute_capability=f"{props.major}.{props.minor}",
                      cuda_driver_api=f"{api // 1000}.{api % 1000 // 10}", gpu_driver_version=gpu_driver_version())
    return fields


def describe(dtype: str, device) -> dict:
    import torch

    from kdbench import threads

    flags = cpu_flags()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_amx_bf16": "amx_bf16" in flags,
        "cpu_avx512_bf16": "avx512_bf16" in flags,
        "torch_threads": torch.get_num_threads(),
        "thread_policy": threads.describe(),  # the OpenMP variables the run had (kdbench.threads)
        **accelerator(device),
        "dtype": dtype,
        "packages": {p: package_version(p) for p in ("torch", "transformers", "datasets", "numpy", "scipy", "accelerate")},
    }
