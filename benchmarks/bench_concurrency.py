"""Benchmark: two kdbench trainings at once on one machine, with kdbench's thread policy and without.

    python benchmarks/bench_concurrency.py [--rows 256] [--seconds 15] [--batch-size 32] [--dtype bf16]

The training is the trainer benchmark's (``bench_trainer.py``): all-MiniLM-L6-v2 cut to layers 0
and 5, distilled with forward KL (T = 2) from the full model's logits on the first SST-2 training
rows of the local mirror, kdbench's own loop (``kdbench.distill.trainer.train``). Teacher logits
and features are computed once here and handed to the workers, so every worker runs the same job.

Four scenarios, each in fresh worker processes that set up, warm up, wait for a common start and
then train for ``--seconds`` (examples/s counted from the optimiser steps inside that window):

- policy, alone / two at once: the environment kdbench's CLI runs with (``kdbench.threads.apply``:
  a thread per usable CPU, ``GOMP_SPINCOUNT=20000``);
- no policy, alone / two at once: torch's defaults (``OMP_NUM_THREADS``, ``GOMP_SPINCOUNT`` and
  ``OMP_WAIT_POLICY`` removed from the environment).

Prints examples/s of each run, each concurrent run as a share of its solo rate, the policy's cost
when alone, and the machine load (``/proc/loadavg``) before and after each scenario. Targets: two
at once each keep >= 40% of the solo rate; alone, the policy costs <= 5%. Exit status 0 either way
(a measurement, not a test); other work on the machine makes every number pessimistic.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICY_VARS = ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")


class _Window(Exception):
    """The timing window is over."""


class _StepClock:
    """A trainer step hook: counts the examples of the optimiser steps that end inside the window."""

    def __init__(self, t0: float, t_end: float, per_step: int):
        self.t0, self.t_end, self.per_step, self.examples, self.last = t0, t_end, per_step, 0, t0

    def start(self, total_steps: int) -> None:
        pass

    def after_step(self) -> None:
        now = time.perf_counter()
        if now > self.t_end:
            raise _Window
        self.examples += self.per_step
        self.last = now

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def worker(args) -> None:
    """One training process: set up, warm up, report ready, wait for the start, train the window."""
    if args.policy:
        from kdbench import threads

        threads.apply()  # what `kdbench` does before torch is imported
    import numpy as np
    import torch
    from bench_trainer import TEACHER_ID, kd

    from kdbench.config import TrainConfig
    from kdbench.distill.trainer import register_step_hook, train
    from kdbench.models.loading import load_classifier, load_tokenizer
    from kdbench.models.students import layer_selection

    data = json.loads(Path(args.data).read_text())
    features, teacher_logits = data["features"], torch.tensor(np.asarray(data["logits"], dtype=np.float32))
    tokenizer = load_tokenizer(TEACHER_ID)
    torch.manual_seed(0)
    student = layer_selection(load_classifier(TEACHER_ID, num_labels=2), [0, 5])
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=5e-5, warmup_ratio=0.06)
    clock = None

    def loss_fn(out, idx, batch):
        if clock is not None:
            register_step_hook(clock)
        return kd(out.logits, teacher_logits[idx])

    train(copy.deepcopy(student), tokenizer, features[: 2 * args.batch_size], cfg, loss_fn, dtype=args.dtype,
          desc="warm-up")
    Path(args.ready).touch()
    while not Path(args.go).exists():
        time.sleep(0.01)
    start = time.perf_counter()
    clock = _StepClock(start, start + args.seconds, args.batch_size)
    try:
        while True:
            train(copy.deepcopy(student), tokenizer, features, cfg, loss_fn, dtype=args.dtype, desc="window")
    except _Window:
        pass
    print(json.dumps({"examples_per_s": clock.examples / (clock.last - start), "torch_threads": torch.get_num_threads(),
                      "spincount": os.environ.get("GOMP_SPINCOUNT")}))


def prepare(rows: int, path: Path) -> None:
    """Features and teacher logits, once, for every worker (bench_trainer's setup)."""
    from bench_trainer import setup

    _, features, logits, _ = setup(rows, 64)
    path.write_text(json.dumps({"features": features, "logits": logits.tolist()}))


def scenario(args, data: Path, tmp: Path, policy: bool, n: int) -> tuple[list[float], str, str, dict]:
    """``n`` workers at once: their examples/s, /proc/loadavg before and after, the first one's report."""
    env = {**{k: v for k, v in os.environ.items() if k not in POLICY_VARS}, "TQDM_DISABLE": "1"}
    tag = f"{'policy' if policy else 'none'}-{n}-{time.monotonic_ns()}"
    go = tmp / f"{tag}.go"
    procs, ready = [], []
    for i in range(n):
        ready.append(tmp / f"{tag}.{i}.ready")
        cmd = [sys.executable, __file__, "--worker", "--data", str(data), "--ready", str(ready[-1]), "--go", str(go),
               "--seconds", str(args.seconds), "--batch-size", str(args.batch_size), "--dtype", args.dtype]
        procs.append(subprocess.Popen(cmd + (["--policy"] if policy else []), env=env, stdout=subprocess.PIPE,
                                      cwd=Path(__file__).parent, text=True))
    while not all(r.exists() for r in ready):
        if any(p.poll() not in (None, 0) for p in procs):
            raise SystemExit("a worker failed")
        time.sleep(0.05)
    before = load()
    go.touch()
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return [o["examples_per_s"] for o in outs], before, load(), outs[0]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=15.0, help="timing window of each scenario")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--policy", action="store_true", help=argparse.SUPPRESS)
    for name in ("--data", "--ready", "--go"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from kdbench import threads

    print(f"kdbench concurrency benchmark: {args.rows} SST-2 rows, batch {args.batch_size}, {args.dtype}, "
          f"{args.seconds:g} s windows, {threads.usable_cpus()} usable CPU(s) of {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="kdbench-bench-conc-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data.json"
        prepare(args.rows, data)
        rates = {}
        for policy in (True, False):
            for n in (1, 2):
                eps, before, after, info = scenario(args, data, tmp, policy, n)
                rates[policy, n] = eps
                name = f"{'policy' if policy else 'no policy'}, {'alone' if n == 1 else 'two at once'}"
                runs = "  ".join(f"{e:7.1f}" for e in eps)
                print(f"  {name:<24} examples/s {runs:<18} ({info['torch_threads']} thread(s), GOMP_SPINCOUNT "
                      f"{info['spincount'] or 'unset'})  load {before} -> {after}")
    for policy in (True, False):
        solo = rates[policy, 1][0]
        shares = ", ".join(f"{e / solo:.0%}" for e in rates[policy, 2])
        print(f"{'policy' if policy else 'no policy'}: two at once each keep {shares} of the solo rate")
    print(f"policy alone vs no policy alone: {rates[True, 1][0] / rates[False, 1][0]:.3f}x "
          f"(targets: two at once >= 40% each; alone >= 0.95x)")


if __name__ == "__main__":
    main()
