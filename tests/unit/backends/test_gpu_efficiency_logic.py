"""The GPU efficiency figures' logic, checked on the CPU: counted FLOPs against the analytic count of
a transformer's matrix products, MFU arithmetic, the datasheet peak lookup, the CPU path of the
efficiency measurement (wall clock, no GPU figures) and the decode timing on a small random
causal LM."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from kdbench.backends import efficiency, flops

BERT = "sentence-transformers/all-MiniLM-L6-v2"
LM = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("NVIDIA A10", 125.0),
    ("NVIDIA A10G", None), ("Tesla V100-SXM2-16GB", None), ("Tesla T4", None),
])
def test_datasheet_peaks_match_whole_words(name, peak):
    assert flops.table_peak(name) == peak


def test_mfu_is_achieved_flops_over_the_peak():
    # 494.5 TFLOP done in one second on a 989 TFLOP/s GPU: half its peak
    assert flops.mfu(494.5e12, 1.0, 989.0) == pytest.approx(0.5)
    assert flops.mfu(1e12, 0.5, 100.0) == pytest.approx(0.02)


def test_counted_flops_are_the_matrix_products_of_a_transformer():
    """Eager attention, so the score and value products show as batched matmuls: per layer
    2·B·T·(4d² + 2·d·d_ff) for the projections and MLP, 4·B·T²·d for QKᵀ and AV, plus the pooler
    (2·B·d²) and the classifier (2·B·d·C); the embeddings are lookups."""
    config = AutoConfig.from_pretrained(BERT, num_labels=3, num_hidden_layers=2, attn_implementation="eager")
    model = AutoModelForSequenceClassification.from_config(config).eval()
    b, t, d, ff, layers = 4, 16, config.hidden_size, config.intermediate_size, config.num_hidden_layers
    batch = {"input_ids": torch.randint(0, 1000, (b, t)), "attention_mask": torch.ones(b, t, dtype=torch.long)}
    with torch.inference_mode():
        counted = flops.count_flops(lambda: model(**batch))
    expected = layers * (2 * b * t * (4 * d * d + 2 * d * ff) + 4 * b * t * t * d) + 2 * b * d * d + 2 * b * d * 3
    assert counted == expected


def test_cpu_measurement_keeps_its_figures_and_adds_no_gpu_ones(data_dir, tmp_path):
    from kdbench.data import DatasetSpec, load_split
    from kdbench.models.loading import load_tokenizer

    texts = list(load_split(DatasetSpec("nyu-mll/glue", "sst2", "validation"), rows=16).rows["sentence"])
    AutoModelForSequenceClassification.from_pretrained(BERT, num_labels=2).save_pretrained(tmp_path)
    load_tokenizer(BERT).save_pretrained(tmp_path)
    # in this process (the spawned wrapper only isolates the measurement)
    got = efficiency._measure(str(tmp_path), "classification", texts, None, "bf16", 64, [1, 4], 8, 1, "cpu")
    assert got["device"] == "cpu" and got["timing"] == "wall clock"
    assert got["latency_ms_b1"] > 0 and got["latency_ms_b4"] > 0 and got["throughput_eps"] > 0
    assert not any(k.startswith(("mfu", "flops", "peak_gpu", "peak_bf16", "ttft", "decode")) for k in got)


def test_decode_timing_counts_the_new_tokens_of_every_row():
    from kdbench.models.loading import load_tokenizer

    config = AutoConfig.from_pretrained(LM, num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    model = AutoModelForCausalLM.from_config(config).eval()
    tokenizer = load_tokenizer(LM)
    features = [tokenizer(t) for t in ("The cat sat", "A much longer prompt about the weather today", "Hi")]
    calls = []

    def clock(fn):  # each call "takes" one second per generated token, as counted by generate itself
        before = len(calls)
        original = model.generate
        model.generate = lambda **kw: calls.append(kw["max_new_tokens"]) or original(**kw)
        try:
            fn()
        finally:
            model.generate = original
        return float(sum(calls[before:]))

    got = efficiency._decode(model, tokenizer, [dict(f) for f in features], [1, 2], clock, new_tokens=4)
    assert got["ttft_ms"] == pytest.approx(1000.0)  # one token per call
    # 4 tokens past the first of each of `size` rows, in (5 − 1) "seconds"
    assert got["decode_tokens_per_s_b1"] == pytest.approx(1.0) and got["decode_tokens_per_s_b2"] == pytest.approx(2.0)
    assert tokenizer.padding_side == load_tokenizer(LM).padding_side  # restored
