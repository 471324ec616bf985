"""On a CUDA GPU (``-m gpu``; skipped elsewhere): placement, agreement with the CPU, training through
accelerate, the GPU efficiency figures, a real CUDA out-of-memory back-off and the record's GPU
fields. Models are built from configs with random weights (a GPU machine may have no model cache):
the configs and tokenizers come from the gpu_check bundle (``KDBENCH_GPU_MODELS``) or the HF cache;
texts are real SST-2 rows from the data mirror."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax

from kdbench import devices, environment
from kdbench.errors import KdbenchError

pytestmark = pytest.mark.gpu
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def model_source(name: str) -> str:
    root = os.environ.get("KDBENCH_GPU_MODELS")
    return str(Path(root) / name) if root else HUB_IDS[name]


def random_model(name: str, head: str, folder: Path, **config) -> str:
    """A randomly initialised model of ``name``'s architecture (config overrides applied) saved
    with its tokenizer in ``folder``."""
    from transformers import AutoConfig

    from kdbench.models.heads import auto_class
    from kdbench.models.loading import load_tokenizer, save_model

    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(model_source(name), **config)
    save_model(auto_class(head).from_config(cfg), load_tokenizer(model_source(name)), folder)
    return str(folder)


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    from kdbench.data import DatasetSpec, load_split

    return list(load_split(DatasetSpec("nyu-mll/glue", "sst2", "validation"), rows=128).rows["sentence"])


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> str:
    return random_model("minilm", "classification", tmp_path_factory.mktemp("gpu") / "cls", num_labels=2)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> str:
    return random_model("smollm2", "causal_lm", tmp_path_factory.mktemp("gpu") / "lm", num_hidden_layers=4)


def test_cuda_resolves_to_this_gpu_and_a_missing_index_is_refused():
    assert devices.resolve("cuda") == torch.device("cuda", torch.cuda.current_device()) == devices.resolve("auto")
    with pytest.raises(KdbenchError, match="no such GPU"):
        devices.resolve(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("dtype, tolerance", [("fp32", 2e-3), ("bf16", 3e-2)])
def test_gpu_classifier_agrees_with_the_cpu(classifier_dir, texts, dtype, tolerance):
    """Same weights, same batches: GPU probabilities within ``tolerance`` of the CPU's (fp32 on a GPU
    uses TF32 matmuls; bf16 rounds differently on tensor cores), the same label wherever the CPU's is
not a near-tie."""
    from kdbench.backends.hf import HFClassifier
    from kdbench.models.loading import load_for_head, load_tokenizer

    tok = load_tokenizer(classifier_dir)
    gpu = devices.resolve("cuda")
    devices.configure(gpu)
    probs = {}
    for device in (devices.resolve("cpu"), gpu):
        model = load_for_head(classifier_dir, "classification", device=device)
        assert model.device == device
        probs[device.type] = softmax(HFClassifier(model, tok, dtype, 64, 32).logits(texts).astype(np.float64), axis=1)
    assert np.abs(probs["cuda"] - probs["cpu"]).max() < tolerance
    clear = np.abs(probs["cpu"][:, 1] - probs["cpu"][:, 0]) > 2 * tolerance  # random weights: many near-ties
    assert (probs["cuda"].argmax(1) == probs["cpu"].argmax(1))[clear].all()


def test_gpu_causal_lm_scores_agree_with_the_cpu(lm_dir, texts):
    from kdbench.backends.causal_lm import HFCausalLM
    from kdbench.models.loading import load_for_head, load_tokenizer

    tok = load_tokenizer(lm_dir)
    got = {d.type: np.asarray(HFCausalLM(load_for_head(lm_dir, "causal_lm", device=d), tok, "fp32", 16, 128)
                              .loglikelihood_rolling(texts[:32]))
           for d in (devices.resolve("cpu"), devices.resolve("cuda"))}
    np.testing.assert_allclose(got["cuda"], got["cpu"], rtol=2e-3)


def test_training_runs_on_the_gpu_through_accelerate(classifier_dir, texts):
    from kdbench.backends.batching import encode
    from kdbench.config import TrainConfig
    from kdbench.distill.trainer import label_objective, sequence_loss, train
    from kdbench.models.loading import load_for_head, load_tokenizer

    tok = load_tokenizer(classifier_dir)
    model = load_for_head(classifier_dir, "classification")  # on the CPU: accelerate places it
    labels = np.arange(len(texts)) % 2
    stats = train(model, tok, encode(tok, texts, None, 64), TrainConfig(epochs=1, batch_size=16),
                  sequence_loss(label_objective(), labels), seed=0, dtype="bf16", device=devices.resolve("cuda"))
    assert next(model.parameters()).device.type == "cuda"
    assert stats.steps == 8 and np.isfinite(stats.final_loss)


def test_gpu_efficiency_figures(classifier_dir, lm_dir, texts):
    from kdbench.backends import efficiency

    gpu = devices.resolve("cuda")
    cls = efficiency.measure(classifier_dir, texts, None, dtype="bf16", max_length=64, device=gpu)
    assert cls["timing"] == "CUDA events" and cls["device"] == str(gpu)
    assert cls["latency_ms_b1"] > 0 and cls["throughput_eps"] > 0 and cls["peak_gpu_mem_mb"] > 1
    assert 0 < cls["mfu_b32"] < 1 and cls["flops_per_example_b32"] > 2 * cls["params"] * 5  # ≥ 5 tokens each
    lm = efficiency.measure(lm_dir, texts, None, dtype="bf16", max_length=64, head="causal_lm", device=gpu)
    assert lm["ttft_ms"] > 0 and lm["decode_tokens_per_s_b1"] > 0 and lm["decode_tokens_per_s_b32"] > lm["decode_tokens_per_s_b1"]


def test_a_real_cuda_out_of_memory_halves_the_batch(classifier_dir, texts):
    from kdbench.backends.hf import HFClassifier
    from kdbench.models.loading import load_for_head, load_tokenizer

    model = load_for_head(classifier_dir, "classification", device=devices.resolve("cuda"))
    tok = load_tokenizer(classifier_dir)
    reference = HFClassifier(model, tok, "fp32", 64, 4).logits(texts[:24])
    forward = model.forward

    def greedy(*args, **kwargs):  # a batch above 4 asks the GPU for a petabyte
        if kwargs["input_ids"].shape[0] > 4:
            torch.empty(2**50, dtype=torch.uint8, device=model.device)
        return forward(*args, **kwargs)

    model.forward = greedy
    backend = HFClassifier(model, tok, "fp32", 64, 16)
    with pytest.warns(UserWarning, match="out of memory at batch size 16"):
        got = backend.logits(texts[:24])
    assert backend.batch_size == 4
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_record_says_which_gpu():
    gpu = devices.resolve("cuda")
    devices.configure(gpu)
    env = environment.describe("bf16", gpu)
    assert env["device"] == str(gpu) and env["device_type"] == "cuda" and env["device_index"] == gpu.index
    assert env["gpu_name"] == torch.cuda.get_device_name(gpu) and env["gpu_count"] >= 1 and env["gpu_memory_mb"] > 1000
    assert env["gpu_compute_capability"].count(".") == 1 and env["cuda_driver_api"] and env["torch_cuda_build"]
    assert env["tf32_matmul"] is (torch.cuda.get_device_capability(gpu)[0] >= 8)
    assert env["deterministic_training"] is False
