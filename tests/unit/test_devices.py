"""The device setting on a CPU-only machine: resolution (auto → cpu), the one-line errors for a GPU
that is not there (no CUDA, an index that does not exist, an index under a launcher), the CLI
refusing before any work, the record's accelerator fields, the placement helpers, and a CPU run
that is the same with the device given explicitly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdbench import devices, environment
from kdbench.errors import KdbenchError
from tests.helpers.devices import NO_GPU


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:0,1", ""])
def test_setting_syntax(bad):
    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert devices.check_setting(good) == good
    with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N"):
        devices.check_setting(bad)


@pytest.mark.skipif(not NO_GPU, reason="checks the CPU-only behaviour")
def test_auto_is_the_cpu_and_cuda_is_refused_in_one_line():
    assert devices.resolve("auto") == torch.device("cpu") == devices.resolve("cpu")
    for setting in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(KdbenchError, match=rf"^--device {setting}: .*(CPU build|sees no GPU).*use --device cpu") as e:
            devices.resolve(setting)
        assert "\n" not in str(e.value)


@pytest.fixture
def two_gpus(monkeypatch):
    """torch as it would be on a machine with two GPUs (resolution only: nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for var in ("WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_gpu_indices_resolve_and_a_missing_one_is_refused(two_gpus):
    assert devices.resolve("auto") == torch.device("cuda", 0) == devices.resolve("cuda")
    assert devices.resolve("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(KdbenchError, match=r"^--device cuda:2: no such GPU; torch sees 2 \(cuda:0 to cuda:1\)$"):
        devices.resolve("cuda:2")
    two_gpus.setenv("ACCELERATE_USE_CPU", "true")  # accelerate launch --cpu
    assert devices.resolve("auto") == torch.device("cpu")


def test_launched_processes_take_their_local_rank(two_gpus):
    two_gpus.setenv("WORLD_SIZE", "2")
    two_gpus.setenv("LOCAL_RANK", "1")
    assert devices.resolve("cuda") == torch.device("cuda", 1) == devices.resolve("auto")
    with pytest.raises(KdbenchError, match="each process takes its own GPU"):
        devices.resolve("cuda:0")


def test_placement_helpers_on_the_cpu():
    batch = {"input_ids": torch.arange(6).view(2, 3), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    cpu = devices.resolve("cpu")
    moved = devices.to_device(batch, cpu)
    assert all(moved[k] is batch[k] for k in batch)  # .to() of a tensor already there is the tensor itself
    assert devices.cache_fields(cpu) == {} and devices.cache_fields(torch.device("cuda", 0)) == {"device": "cuda"}
    assert devices.deterministic_training(cpu) and not devices.deterministic_training(torch.device("cuda", 0))
    devices.configure(cpu)  # nothing to do on the CPU
    model = torch.nn.Linear(2, 2)
    assert devices.place(model, None) is model and devices.place(model, cpu) is model


def test_cpu_record_has_the_accelerator_fields_with_null_values():
    env = environment.describe("bf16", devices.resolve("cpu"))
    assert env["device"] == "cpu" and env["device_type"] == "cpu" and env["device_index"] is None
    for key in ("gpu_name", "gpu_memory_mb", "gpu_compute_capability", "cuda_driver_api", "gpu_driver_version",
                "tf32_matmul"):
        assert key in env and env[key] is None
    assert env["gpu_count"] == torch.cuda.device_count()
    assert env["torch_cuda_build"] == torch.version.cuda and env["deterministic_training"] is True


def test_per_task_device_is_refused(tmp_path):
    from kdbench.config import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntasks: [sst2]\nper_task:\n  sst2:\n    device: cpu\n")
    with pytest.raises(KdbenchError, match=r"key 'per_task.sst2.device': one device per run"):
        load_suite(str(suite))


def test_training_on_the_explicit_cpu_device_is_the_default_training(data_dir):
    """Placement code leaves CPU numerics alone: ``device=cpu`` trains to the same bits as the
    model's own device, and the student's predictions are the same."""
    from kdbench.backends.hf import HFClassifier
    from kdbench.distill.trainer import train
    from tests.helpers.jobs.trainer_job import job

    weights, preds = [], []
    for device in (None, devices.resolve("cpu")):
        student, tokenizer, features, cfg, loss_fn, _ = job(rows=32, epochs=1)
        train(student, tokenizer, features, cfg, loss_fn, seed=0, dtype="bf16", device=device)
        weights.append({k: v.clone() for k, v in student.state_dict().items()})
        preds.append(HFClassifier(student, tokenizer, "bf16", 64, 16).logits_of_features(features))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    np.testing.assert_array_equal(preds[0], preds[1])
