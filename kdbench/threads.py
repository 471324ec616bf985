"""The thread policy: how many threads a kdbench process runs and how long its idle threads spin.

torch's CPU kernels run on OpenMP (libgomp) threads. Between parallel regions an idle libgomp
thread spin-waits for a long time (its default spin count is 300,000) before it sleeps. Alone on a
machine that costs nothing; two kdbench processes on the same cores each burn the cores the other
needs, and both run many times slower (measured: 28x, ``benchmarks/bench_concurrency.py``). So
kdbench runs, unless told otherwise:

- ``OMP_NUM_THREADS``: as many threads as CPUs this process may use (``os.sched_getaffinity``,
  which honours ``taskset``, cgroup cpusets and container limits, unlike ``os.cpu_count``);
- ``GOMP_SPINCOUNT=20000``: a short spin, so an idle thread yields its core within tens of
  microseconds instead of milliseconds.

A variable the user set wins (``OMP_NUM_THREADS``; ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY``), and
``kdbench --threads N`` sets the thread count. libgomp reads its variables once, when torch loads
it, so the policy must be in the environment before ``import torch``: the ``kdbench`` command and
``python -m kdbench`` apply it first thing; a library user calls :func:`apply` before importing
torch (or sets the variables). Child processes (efficiency probes, sweep workers) inherit it.
"""
from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

THREADS_VAR = "OMP_NUM_THREADS"
SPIN_VAR = "GOMP_SPINCOUNT"
WAIT_POLICY_VAR = "OMP_WAIT_POLICY"  # ACTIVE / PASSIVE: the user's own choice of spinning, kept
SHORT_SPIN = "20000"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not all the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def apply(threads: int | None = None, environ: MutableMapping[str, str] | None = None) -> dict[str, str | None]:
    """Put the policy in ``environ`` (default ``os.environ``): ``threads`` (else the user's
    ``OMP_NUM_THREADS``, else :func:`usable_cpus`) and a short spin unless the user chose one.
    Returns the variables as set. If torch is already imported, its thread count is set too, but
    the spin count cannot change any more (libgomp has read it)."""
    env = os.environ if environ is None else environ
    if threads is not None:
        env[THREADS_VAR] = str(threads)
    else:
        env.setdefault(THREADS_VAR, str(usable_cpus()))
    if SPIN_VAR not in env and WAIT_POLICY_VAR not in env:
        env[SPIN_VAR] = SHORT_SPIN
    if environ is None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(env[THREADS_VAR]))
    return describe(env)


def describe(environ: MutableMapping[str, str] | None = None) -> dict[str, str | None]:
    """The policy variables as they are (for the run record's environment)."""
    env = os.environ if environ is None else environ
    return {name: env.get(name) for name in (THREADS_VAR, SPIN_VAR, WAIT_POLICY_VAR)}
