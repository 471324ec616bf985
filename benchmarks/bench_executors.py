"""Benchmark: one capacity-gap sweep with ``--executor local`` and with ``--executor ray``.

    python benchmarks/bench_executors.py [--teachers 1,2,4] [--seeds 0,1] [--train-rows 1000]
                                         [--eval-rows 300] [--epochs 2] [--workers N]

The same 3-teacher × 2-seed sweep (all-MiniLM-L6-v2 truncated to 1, 2 and 4 layers, a fixed
1-layer config student, the quickstart suite on an SST-2 slice, no baseline, no efficiency), run
through the real CLI one after the other, each with its own empty ``KDBENCH_CACHE_DIR`` (every
teacher fine-tuned once per sweep):

(a) ``--executor local --jobs N``: N spawned processes, one thread each;
(b) ``--executor ray``: a local Ray cluster started by the command (all usable CPUs), each point a
    Ray task of one CPU and one thread, so N run at once as in (a).

N (``--workers``) defaults to the CPUs this process may use. The wall times include everything the
user waits for (process start, Ray's cluster start and shutdown). Prints both, the ratio (b)/(a)
(target <= 1.2), whether the two curves and every point's metrics are equal, and ``/proc/loadavg``
before and after each.
Exit status 0 either way (a measurement, not a test); other work on the machine makes both slower.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CURVE_KEYS = ("teacher", "teacher_params", "value", "ci", "std", "per_seed", "teacher_value")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else "n/a"


def main() -> None:
    from kdbench.threads import usable_cpus

    ap = argparse.ArgumentParser()
    ap.add_argument("--teachers", default="1,2,4", help="layer counts of the truncated MiniLM teachers")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--train-rows", type=int, default=1000)
    ap.add_argument("--eval-rows", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=2, help="teacher fine-tuning and student epochs")
    ap.add_argument("--workers", type=int, default=usable_cpus(), help="points at once (both executors)")
    args = ap.parse_args()

    sets = [f"data.train_rows={args.train_rows}", f"data.eval_rows={args.eval_rows}", f"distill.epochs={args.epochs}",
            f"teacher.finetune.epochs={args.epochs}", "eval.efficiency=false", "baseline=false",
            "eval.bootstrap_samples=200"]
    common = ["--suite", "quickstart", "--teacher-layers", f"{MODEL}:{args.teachers}", "--student",
              "config:num_hidden_layers=1", "--seeds", args.seeds, *[a for s in sets for a in ("--set", s)]]
    executors = {"local": ["--executor", "local", "--jobs", str(args.workers)], "ray": ["--executor", "ray"]}
    walls, curves, points = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="kdbench-bench-executors-") as tmp:
        for name, flags in executors.items():
            out = Path(tmp) / name
            env = {**os.environ, "KDBENCH_CACHE_DIR": str(out / "cache"), "OMP_NUM_THREADS": "1"}
            print(f"{name}: start, loadavg {loadavg()}", flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "kdbench", "-q", "capacity-gap", *common, *flags,
                                   "--reports-dir", str(out / "reports"), "--leaderboard-dir", str(out / "lb")],
                                  env=env, capture_output=True, text=True)
            walls[name] = time.perf_counter() - t0
            print(f"{name}: {walls[name]:.1f} s (exit {proc.returncode}), loadavg {loadavg()}", flush=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:])
                return
            (curve_file,) = (out / "reports").glob("capacity-gap-*/capacity_gap.json")
            tasks = json.loads(curve_file.read_text())["tasks"]
            curves[name] = {t: [{k: p[k] for k in CURVE_KEYS} for p in c["points"]] for t, c in tasks.items()}
            points[name] = {path.parent.parent.name: {k: json.loads(path.read_text())[k] for k in ("results", "pairs")}
                            for path in curve_file.parent.glob("points/*/*/report.json")}

    print(f"capacity-gap sweep: {len(points['local'])} points, {args.train_rows} train rows, {args.eval_rows} eval rows, "
          f"{args.epochs} epochs, {args.workers} at once")
    print(f"  --executor local --jobs {args.workers}: {walls['local']:7.1f} s")
    print(f"  --executor ray:            {walls['ray']:7.1f} s")
    print(f"  ratio ray / local:         {walls['ray'] / walls['local']:7.2f}x (target <= 1.2)")
    print(f"  curves equal: {curves['ray'] == curves['local']}; every point's metrics (NLL, Brier, loyalty...) "
          f"equal: {points['ray'] == points['local']}")
    for task, rows in curves["local"].items():
        for p in rows:
            print(f"    {task} {p['teacher']:<44} student {p['value']:.4f} ± {p['std']:.4f}  teacher {p['teacher_value']:.4f}")


if __name__ == "__main__":
    main()
