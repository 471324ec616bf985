"""The training loop on a real tiny student (2-of-6-layer MiniLM, SST-2 rows, teacher logits from
MiniLM): gradient accumulation, step counts, checkpoint reuse and refusal, TAID's t, and a
two-process DDP run through accelerate."""
from __future__ import annotations

import copy
import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kdbench.errors import KdbenchError
from tests.helpers import ROOT

pytestmark = pytest.mark.slow
JOB = ROOT / "tests" / "helpers" / "jobs" / "trainer_job.py"


@pytest.fixture(scope="module")
def base(data_dir):
    from tests.helpers.jobs.trainer_job import job

    return job(rows=64)


def _train(base, rows=16, loss_fn=None, dropout=True, dtype="bf16", checkpoint_dir=None, **cfg):
    """Train a fresh copy of the student on the first ``rows`` rows; (student, stats)."""
    from kdbench.distill.trainer import train

    student, tokenizer, features, config, default_loss, _ = base
    student = copy.deepcopy(student)
    if not dropout:
        for m in student.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    stats = train(student, tokenizer, features[:rows], config.model_copy(update=cfg), loss_fn or default_loss,
                  seed=0, dtype=dtype, checkpoint_dir=checkpoint_dir)
    return student, stats


def test_accumulated_micro_batches_make_the_big_batch_step(base, tmp_path):
    """Two micro-batches of 8 accumulated = one batch of 16: the same gradient (Adam's first moment,
    0.1·g, read from the checkpoint) and the same single optimiser step (fp32, no dropout;
    micro-batches are padded separately, so equal up to float rounding)."""
    small, s_stats = _train(base, dropout=False, dtype="fp32", epochs=1, batch_size=8, grad_accum_steps=2,
                            checkpoint_dir=tmp_path / "small")
    big, b_stats = _train(base, dropout=False, dtype="fp32", epochs=1, batch_size=16, grad_accum_steps=1,
                          checkpoint_dir=tmp_path / "big")
    assert s_stats.steps == b_stats.steps == 1
    assert s_stats.effective_batch_size == b_stats.effective_batch_size == 16
    assert math.isclose(s_stats.final_loss, b_stats.final_loss, rel_tol=1e-5)
    m_small, m_big = (load_file(str(tmp_path / f / "step-1" / "optimizer.safetensors")) for f in ("small", "big"))
    grads = [k for k in m_small if k.endswith(".exp_avg")]
    assert len(grads) > 20
    for key in grads:
        torch.testing.assert_close(m_small[key], m_big[key], rtol=1e-3, atol=1e-9, msg=key)
    before = base[0].state_dict()
    moved = 0
    for (name, a), b in zip(small.state_dict().items(), big.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-6, msg=name)  # the step itself is lr = 1e-4
        moved += not torch.equal(a, before[name])
    assert moved > 20


def test_steps_count_optimiser_updates(base):
    _, stats = _train(base, rows=40, epochs=2, batch_size=8, grad_accum_steps=3)
    assert stats.steps == math.ceil(2 * 5 / 3)  # 10 micro-batches, the last window short
    assert stats.effective_batch_size == 24


def test_finished_checkpoint_is_reused_and_a_mismatch_refused(base, tmp_path):
    first, stats = _train(base, epochs=1, batch_size=8, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert stats.resumed_from_step is None and sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step-2"]
    again, stats = _train(base, epochs=1, batch_size=8, checkpoint_dir=tmp_path)  # the finished training
    assert stats.resumed_from_step == 2
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    with pytest.raises(KdbenchError, match="another config"):
        _train(base, epochs=1, batch_size=8, lr=1e-3, checkpoint_dir=tmp_path)


def _taid(base):
    from kdbench.distill.trainer import kd_objective

    objective = kd_objective(base[3].model_copy(update={"loss": "taid", "loss_args": {"t": 0.4}}))
    return base[5](objective)


def _taid_state(stats):
    """TAID's driver as training left it (its step-hook state: the schedule and t after each step)."""
    from kdbench.distill.losses.interpolation import TAIDSchedule

    (state,) = stats.step_hooks
    schedule = TAIDSchedule(total_steps=state["schedule"]["total_steps"])
    schedule.load_state_dict(state["schedule"])
    return schedule, state["history"]


def test_taid_t_rises_monotonically_to_one(base):
    """The loop drives TAID's t: after every optimiser step it grows, never behind the linear
    schedule from t_start, and reaches 1 at the last step."""
    _, stats = _train(base, rows=64, loss_fn=_taid(base), epochs=2, batch_size=8)
    schedule, ts = _taid_state(stats)
    assert len(ts) == stats.steps == 16
    assert 0.4 < ts[0] and all(a <= b for a, b in itertools.pairwise(ts))
    assert ts[-1] == 1.0 and ts[-2] < 1.0
    assert all(t >= schedule.linear(i + 1) for i, t in enumerate(ts))  # never behind the linear floor


def test_interrupted_taid_training_resumes_with_its_t(base, tmp_path):
    """A training stopped after its step-4 checkpoint and resumed continues TAID's t where it was:
    the same t history and the same weights as without the interruption."""
    reference, reference_stats = _train(base, rows=32, loss_fn=_taid(base), epochs=2, batch_size=8)
    history = _taid_state(reference_stats)[1]

    class Stop(Exception):
        pass

    calls = []
    stopped_loss = _taid(base)

    def stopping_loss(outputs, idx, batch):
        calls.append(1)
        if len(calls) == 6:  # in step 6, after the step-4 checkpoint
            raise Stop
        return stopped_loss(outputs, idx, batch)

    with pytest.raises(Stop):
        _train(base, rows=32, loss_fn=stopping_loss, epochs=2, batch_size=8, checkpoint_dir=tmp_path, checkpoint_every=4)
    resumed, stats = _train(base, rows=32, loss_fn=_taid(base), epochs=2, batch_size=8, checkpoint_dir=tmp_path,
                            checkpoint_every=4)
    assert stats.resumed_from_step == 4
    assert _taid_state(stats)[1] == history and len(history) == 8
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))


def test_two_process_ddp_ends_with_identical_weights(tmp_path, data_dir):
    """``accelerate launch --multi_gpu --num_processes 2`` on CPU (torchrun, gloo DDP): each process
    trains on its own shard of every batch; gradients are all-reduced, so both end on the same
    weights, and the effective batch is 2 × batch × accumulation. (``--cpu`` alone starts one
    process: accelerate runs multi-CPU jobs through the multi-process launcher.)"""
    out = tmp_path / "w-{rank}.safetensors"
    proc = subprocess.run(
        # the venv's accelerate launcher, found from this interpreter (the venv need not be on PATH)
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", str(JOB), str(tmp_path / "ck"), str(out), "--accum", "2"],
        check=False, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steps=4 resumed_from=None effective_batch=32" in proc.stdout  # 2 processes × batch 8 × 2 accumulation
    a, b = load_file(str(tmp_path / "w-0.safetensors")), load_file(str(tmp_path / "w-1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_evaluation_is_sharded_across_two_processes_and_gathered_in_order(tmp_path, data_dir):
    """Two launched CPU processes (gloo): each runs about half the forward passes of a classifier,
    an embedder and a causal LM, and both end with every output, in order, equal to one process's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = str(JOB.parent / "shard_job.py")
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", job, str(tmp_path / "out-{rank}.npz")],
        check=False, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the reference: the same job as one fresh process with the same threads (not this process, whose
    # state after earlier tests, e.g. vLLM's import, changes the float reduction order by ~5e-8)
    proc = subprocess.run([sys.executable, job, str(tmp_path / "alone-{rank}.npz")], check=False, capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    alone = np.load(tmp_path / "alone-0.npz")
    shards = [np.load(tmp_path / f"out-{rank}.npz") for rank in (0, 1)]
    assert [int(s["processes"]) for s in shards] == [2, 2] and int(alone["processes"]) == 1
    forwards = [int(s["forwards"]) for s in shards]
    # every batch ran once, on one process: batches are dealt out alternately (15 = 3 backends × 5)
    assert sum(forwards) == int(alone["forwards"]) == 15 and forwards == [9, 6]
    for shard in shards:
        for key in ("logits", "embeddings", "loglik"):
            np.testing.assert_array_equal(shard[key], alone[key])
