"""Benchmark: the full classifier metric set, with 95% bootstrap CIs (1000 resamples), for
100,000 examples × 10 classes; plus the pair (loyalty) set for the same size.

    python benchmarks/bench_metrics.py [--examples 100000] [--classes 10] [--resamples 1000] [--repeat 3]

Prints the best-of-``repeat`` wall time of ``kdbench.metrics.spec.score`` and whether it is under 1 s.
Exit status 0 either way (this is a measurement, not a test); the timing depends on the machine
and on what else runs on it.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.special import softmax

from kdbench.metrics.classification import ClassifierPairTable, ClassifierTable
from kdbench.metrics.spec import Resampling, kind, score


def synthetic(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An over-confident classifier, its labels, and a noisier 'student'."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2.0
    labels = (z + rng.normal(size=z.shape) * 2.0).argmax(axis=1)
    teacher = softmax(z, axis=1)
    student = softmax(z + rng.normal(size=z.shape), axis=1)
    return teacher, labels, student


def best_time(fn, repeat: int) -> tuple[float, dict]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    probs, labels, student = synthetic(args.examples, args.classes)
    how = Resampling(args.resamples, 0.95, 0, {"ece_bins": 15})
    names = kind("classifier").names()
    secs, res = best_time(lambda: score(ClassifierTable(probs, labels), names, how), args.repeat)
    pair_names = kind("classifier_pair").names()
    pair_secs, pair = best_time(lambda: score(ClassifierPairTable(probs, student), pair_names, how), args.repeat)

    print(f"kdbench metrics benchmark: {args.examples:,} examples x {args.classes} classes, "
          f"{args.resamples} bootstrap resamples, {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}")
    for name, r in {**res, **pair}.items():
        ci = "null" if r["ci"] is None else f"[{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]"
        print(f"  {name:24s} {r['value']:.4f}  95% CI {ci}")
    print(f"classifier set ({len(names)} metrics): {secs:.3f} s (best of {args.repeat}) -> "
          f"{'UNDER' if secs < 1.0 else 'OVER'} 1 s")
    print(f"pair set ({len(pair_names)} metrics): {pair_secs:.3f} s (best of {args.repeat}) -> "
          f"{'UNDER' if pair_secs < 1.0 else 'OVER'} 1 s")


if __name__ == "__main__":
    main()
