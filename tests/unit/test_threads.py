"""The thread policy (kdbench.threads): threads from the CPUs a process may use, a short OpenMP spin
unless the user chose one, in the environment before torch loads libgomp."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kdbench import threads

POLICY_VARS = ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def test_defaults_from_affinity_and_a_short_spin():
    env = {}
    threads.apply(environ=env)
    assert env == {"OMP_NUM_THREADS": str(len(os.sched_getaffinity(0))), "GOMP_SPINCOUNT": "20000"}


@pytest.mark.parametrize("given, expected", [
    ({"OMP_NUM_THREADS": "3"}, {"OMP_NUM_THREADS": "3", "GOMP_SPINCOUNT": "20000"}),
    ({"GOMP_SPINCOUNT": "0"}, {"GOMP_SPINCOUNT": "0"}),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"}),  # the user's choice of spinning: no spin count added
])
def test_the_users_variables_win(given, expected):
    env = dict(given)
    threads.apply(environ=env)
    assert {k: v for k, v in env.items() if k in expected} == expected
    assert ("GOMP_SPINCOUNT" in env) == ("GOMP_SPINCOUNT" in expected)


def test_an_explicit_thread_count_overrides_the_environment():
    env = {"OMP_NUM_THREADS": "8"}
    threads.apply(2, environ=env)
    assert env["OMP_NUM_THREADS"] == "2"


PROBE = """
import sys
from kdbench.cli import main
sys.argv = ["kdbench", *sys.argv[1:], "losses"]
try:
    main()
except SystemExit:
    pass
import json, os, torch
print(json.dumps({"env": {k: os.environ.get(k) for k in %r}, "torch_threads": torch.get_num_threads()}))
""" % (POLICY_VARS,)  # noqa: UP031 (the probe is code full of braces; %r keeps it readable)


def _probe(*args: str, cpus: set[int] | None = None) -> dict:
    """The policy a `kdbench` process ends up with: its variables and torch's thread count, torch
    imported after the command ran (as every subcommand imports it)."""
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    out = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, check=True,
                         preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_cli_applies_the_policy_before_torch_loads():
    got = _probe(cpus={min(os.sched_getaffinity(0))})  # as under `taskset -c 0`
    assert got["env"] == {"OMP_NUM_THREADS": "1", "GOMP_SPINCOUNT": "20000", "OMP_WAIT_POLICY": None}
    assert got["torch_threads"] == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_threads_follow_the_usable_cpus_and_the_flag():
    n = len(os.sched_getaffinity(0))
    assert _probe()["torch_threads"] == n
    assert _probe("--threads", "1")["torch_threads"] == 1


def test_cli_import_does_not_load_torch():
    """The policy can only work if nothing loads torch (and libgomp) before the command runs."""
    out = subprocess.run([sys.executable, "-c", "import sys, kdbench.cli; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
