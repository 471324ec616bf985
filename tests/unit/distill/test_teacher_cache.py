"""The teacher cache: entries are reused, and corrupt or mismatched ones are detected and rebuilt."""
import json

import numpy as np
import pytest
from safetensors.numpy import save

from kdbench.distill import teacher_cache as tc

KEY = {"teacher": "t", "revision": "r1", "data_sha256": "a" * 64, "max_length": 64, "dtype": "bf16"}


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path))


def _counted(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_stored_reused_and_keyed_by_every_field():
    compute, calls = _counted(np.arange(6, dtype=np.float32).reshape(3, 2))
    first, reused = tc.cached_array("teacher_logits", KEY, compute, rows=3)
    assert not reused and len(calls) == 1
    again, reused = tc.cached_array("teacher_logits", KEY, compute, rows=3)
    assert reused and len(calls) == 1 and np.array_equal(first, again)
    for field, other in (("revision", "r2"), ("data_sha256", "b" * 64), ("max_length", 128), ("dtype", "fp32")):
        _, reused = tc.cached_array("teacher_logits", {**KEY, field: other}, compute, rows=3)
        assert not reused, field
    assert len(calls) == 5


def test_entry_carries_its_key_and_no_pickle():
    compute, _ = _counted(np.ones((2, 2), dtype=np.float32))
    tc.cached_array("teacher_logits", KEY, compute)
    raw = tc.entry_path("teacher_logits", KEY).read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # the safetensors header
    assert json.loads(header["__metadata__"][tc.KEY_FIELD]) == KEY
    assert b"pickle" not in raw and not raw.startswith(b"\x80")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_key", "wrong_rows", "nan", "missing_array"])
def test_corrupt_or_mismatched_entry_is_rebuilt(damage):
    good = np.arange(6, dtype=np.float32).reshape(3, 2)
    compute, calls = _counted(good)
    tc.cached_array("teacher_logits", KEY, compute, rows=3)
    path = tc.entry_path("teacher_logits", KEY)
    meta = {tc.KEY_FIELD: json.dumps(KEY, sort_keys=True)}
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    elif damage == "other_key":  # e.g. copied from another teacher's entry
        path.write_bytes(save({"values": good}, metadata={tc.KEY_FIELD: json.dumps({**KEY, "revision": "r0"})}))
    elif damage == "wrong_rows":  # written for a smaller training set
        path.write_bytes(save({"values": good[:2]}, metadata=meta))
    elif damage == "nan":
        path.write_bytes(save({"values": np.full((3, 2), np.nan, dtype=np.float32)}, metadata=meta))
    else:
        path.write_bytes(save({"other": good}, metadata=meta))
    rebuilt, reused = tc.cached_array("teacher_logits", KEY, compute, rows=3)
    assert not reused and len(calls) == 2 and np.array_equal(rebuilt, good)
    assert tc.cached_array("teacher_logits", KEY, compute, rows=3)[1]  # and the rebuilt entry is valid


def test_several_arrays_in_one_entry():
    arrays = {"offsets": np.array([0, 2, 3]), "ids": np.zeros((3, 4), dtype=np.int32)}
    got, reused = tc.cached_outputs("teacher_topk", KEY, ["offsets", "ids"], lambda: arrays)
    assert not reused
    got, reused = tc.cached_outputs("teacher_topk", KEY, ["offsets", "ids"], lambda: arrays)
    assert reused and np.array_equal(got["offsets"], arrays["offsets"]) and got["ids"].dtype == np.int32
    with pytest.raises(ValueError, match="returned no"):
        tc.cached_outputs("teacher_topk", {**KEY, "k": 2}, ["offsets", "rest"], lambda: arrays)
