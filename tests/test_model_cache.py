import numpy as np

from kdbench.models import cache


def test_teacher_logits_are_stored_reused_and_rebuilt_when_corrupt(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(3, 2)

    first, reused = cache.teacher_logits(tmp_path, compute, data_sha256="a" * 64, max_length=64, dtype="bf16")
    assert not reused and len(calls) == 1
    again, reused = cache.teacher_logits(tmp_path, compute, data_sha256="a" * 64, max_length=64, dtype="bf16")
    assert reused and len(calls) == 1 and np.array_equal(first, again)
    # other data or settings: another entry
    _, reused = cache.teacher_logits(tmp_path, compute, data_sha256="b" * 64, max_length=64, dtype="bf16")
    assert not reused and len(calls) == 2
    # a truncated file is detected and rebuilt
    entry = tmp_path / f"logits-{cache.cache_key(data_sha256='a' * 64, max_length=64, dtype='bf16')}.safetensors"
    entry.write_bytes(entry.read_bytes()[:20])
    rebuilt, reused = cache.teacher_logits(tmp_path, compute, data_sha256="a" * 64, max_length=64, dtype="bf16")
    assert not reused and np.array_equal(rebuilt, first)


def test_cache_key_is_stable_and_order_free():
    assert cache.cache_key(a=1, b=[1, 2]) == cache.cache_key(b=[1, 2], a=1) != cache.cache_key(a=2, b=[1, 2])
