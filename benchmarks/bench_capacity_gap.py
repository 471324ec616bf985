"""Benchmark: what the teacher cache saves a capacity-gap sweep.

    python benchmarks/bench_capacity_gap.py [--teachers 1,2,4] [--seeds 0,1] [--train-rows 512] [--eval-rows 128]

The same 3-teacher × 2-seed sweep (all-MiniLM-L6-v2 truncated to 2, 4 and 6 layers, a fixed 1-layer
config student, the quickstart suite on an SST-2 slice, one epoch, one process, one thread) run twice:

(a) cached: ``kdbench.sweeps.capacity_gap.run_sweep`` with one empty ``KDBENCH_CACHE_DIR``: each
    teacher fine-tuned and its training logits computed once, later seeds reuse both;
(b) uncached: every point of the same plan through the same ``run_point``, each with a fresh empty
    ``KDBENCH_CACHE_DIR``, so every point fine-tunes its teacher and recomputes its logits.

A warm-up point (own cache, not timed) loads imports, data and model files first. Prints both wall times and the ratio (b)/(a). Exit status 0 either way (a measurement, not a test).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teachers", default="2,4,6", help="layer counts of the truncated MiniLM teachers")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--train-rows", type=int, default=1000)
    ap.add_argument("--eval-rows", type=int, default=128)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from kdbench.sweeps import capacity_gap as sweep

    overrides = [f"data.train_rows={args.train_rows}", f"data.eval_rows={args.eval_rows}", "distill.epochs=1",
                 "teacher.finetune.epochs=1", "max_length=32", "eval.efficiency=false", "baseline=false",
                 "eval.bootstrap_samples=200", *sweep.student_override("config:num_hidden_layers=1")]
    plan = sweep.new_plan("quickstart", overrides, sweep.parse_teachers(None, (f"{MODEL}:{args.teachers}",)),
                          sweep.parse_seeds(args.seeds))
    quiet = lambda msg: None  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="kdbench-bench-cg-") as tmp:
        tmp = Path(tmp)
        # warm-up, not timed: imports, the data slice and the model files are loaded once for both
        os.environ["KDBENCH_CACHE_DIR"] = str(tmp / "cache-warmup")
        sweep.run_point(sweep.plan_points(plan)[0].suite, str(tmp / "warmup"))
        os.environ["KDBENCH_CACHE_DIR"] = str(tmp / "cache-shared")
        t0 = time.perf_counter()
        result = sweep.run_sweep(plan, reports_dir=tmp / "cached", leaderboard_dir=None, log=quiet)
        cached = time.perf_counter() - t0

        t0 = time.perf_counter()
        for i, point in enumerate(sweep.plan_points(plan)):
            os.environ["KDBENCH_CACHE_DIR"] = str(tmp / f"cache-{i}")
            sweep.run_point(point.suite, str(tmp / "uncached" / point.name))
        uncached = time.perf_counter() - t0

    n = len(plan["teachers"]) * len(plan["seeds"])
    print(f"capacity-gap sweep: {len(plan['teachers'])} teachers × {len(plan['seeds'])} seeds = {n} points, "
          f"{args.train_rows} train rows, {args.eval_rows} eval rows, 1 thread")
    print(f"  with the teacher cache:            {cached:7.1f} s")
    print(f"  caching disabled (empty per point): {uncached:7.1f} s")
    print(f"  ratio uncached / cached:           {uncached / cached:7.2f}x")
    for task, c in result.curve["tasks"].items():
        print(f"  {task}: {c['students'][0]['verdict']}")
        for p in c["points"]:
            print(f"    {p['teacher']:<48} {p['teacher_params']:>11,d}  student {p['value']:.4f} ± {p['std']:.4f}"
                  f"  teacher {p['teacher_value']:.4f}")


if __name__ == "__main__":
    main()
