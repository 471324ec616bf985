"""capacity-gap points as Ray tasks on a real local Ray cluster (2 CPUs, no dashboard), on the tiny
real sweep of test_capacity_gap.py (two truncations of all-MiniLM-L6-v2, a 1-layer student, two
seeds): the curve equals the local executor's, a worker killed mid-point is retried and the curve is
complete, and a resumed sweep skips its finished points; a suite's task × seed points through Ray
make the record one process makes. Skipped where Ray is not installed (the bad-input tests run)."""
from __future__ import annotations

import json
import shutil

import pytest

from kdbench.sweeps import capacity_gap as sweep
from kdbench.sweeps.executors import Job, LocalExecutor, RayExecutor
from tests.helpers.capacity_gap import MINILM, TINY
from tests.helpers.cli import run_kdbench
from tests.helpers.ray_executor import ray
from tests.helpers.ray_jobs import crash_once

needs_ray = pytest.mark.skipif(ray is None, reason="needs Ray: pip install 'kdbench[ray]' (make ray)")


PLAN = sweep.new_plan("quickstart", [*TINY[1::2], *sweep.student_override("config:num_hidden_layers=1")],
                      sweep.parse_teachers(None, (f"{MINILM}:1,2",)), [0, 1])


CURVE_KEYS = ("teacher", "teacher_params", "value", "ci", "std", "n_seeds", "per_seed", "teacher_value",
              "teacher_finetuned_once")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for the module, sized to this machine's 2 cores."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class KillsFirstPoint(RayExecutor):
    """Ray, with the sweep's first point (a teacher stage: its later seed waits for it) killing its
    worker process on the first attempt."""

    def __init__(self, marker):
        super().__init__(num_cpus=1)
        self.marker = str(marker)

    def run(self, jobs, on_done, tracker):
        victim, *others = jobs
        super().run([Job(victim.name, crash_once, (self.marker, victim.fn, victim.args), victim.after), *others],
                    on_done, tracker)


def _sweep(tmp_path_factory, name, executor):
    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDBENCH_CACHE_DIR", str(root / "cache"))  # each sweep fine-tunes its own teachers
        result = sweep.run_sweep(PLAN, reports_dir=root / "reports", leaderboard_dir=root / "leaderboards",
                                 executor=executor, log=lambda msg: None)
    return root, result


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    return _sweep(tmp_path_factory, "local", LocalExecutor(2))


@pytest.fixture(scope="module")
def ray_sweep(tmp_path_factory, cluster):
    marker = tmp_path_factory.mktemp("marker") / "killed-pid"
    return (*_sweep(tmp_path_factory, "ray", KillsFirstPoint(marker)), marker)


def _curve(result) -> list[dict]:
    return [{k: p[k] for k in CURVE_KEYS} for p in result.curve["tasks"]["sst2"]["points"]]


def _point_results(result) -> list[dict]:
    """Every point's per-task results and pairs (continuous metrics too: NLL, Brier, loyalty...)."""
    return [{k: json.loads((result.sweep_dir / run["path"] / "report.json").read_text())[k] for k in ("results", "pairs")}
            for p in result.curve["tasks"]["sst2"]["points"] for run in p["runs"]]


@pytest.mark.slow
@needs_ray
def test_ray_curve_equals_local(local_sweep, ray_sweep):
    (_, local), (_, on_ray, _) = local_sweep, ray_sweep
    assert _curve(on_ray) == _curve(local)
    assert _point_results(on_ray) == _point_results(local)  # not just accuracy: every metric of every point
    assert on_ray.curve["tasks"]["sst2"]["best_teacher"] == local.curve["tasks"]["sst2"]["best_teacher"]
    for p in on_ray.curve["tasks"]["sst2"]["points"]:
        assert p["teacher_finetuned_once"]
        for run in p["runs"]:
            record = json.loads((on_ray.sweep_dir / run["path"] / "report.json").read_text())
            assert record["environment"]["thread_policy"]["OMP_NUM_THREADS"] == "1"  # pinned to its 1-CPU share
            assert record["environment"]["torch_threads"] == 1
    assert on_ray.leaderboard is not None and on_ray.leaderboard.is_file()


@pytest.mark.slow
@needs_ray
def test_killed_worker_is_retried(ray_sweep):
    _, result, marker = ray_sweep
    assert marker.read_text().isdigit()  # the first point's worker did die (os._exit) on its first attempt
    points = result.curve["tasks"]["sst2"]["points"]
    assert [p["n_seeds"] for p in points] == [2, 2]
    assert [r["status"] for p in points for r in p["runs"]] == ["ran"] * 4
    later = json.loads((result.sweep_dir / points[0]["runs"][1]["path"] / "report.json").read_text())
    # the killed teacher stage ran again before its later seed, which reused its cache
    assert later["models"]["teacher"]["reused_from_cache"] and later["models"]["teacher"]["train_logits_reused"]


@pytest.mark.slow
@needs_ray
def test_resume_on_ray_skips_finished_points(ray_sweep):
    root, result, _ = ray_sweep
    points = result.curve["tasks"]["sst2"]["points"]
    kept = result.sweep_dir / points[0]["runs"][0]["path"] / "report.json"
    kept_mtime = kept.stat().st_mtime_ns
    shutil.rmtree(result.sweep_dir / points[1]["runs"][1]["path"])
    logs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDBENCH_CACHE_DIR", str(root / "cache"))
        resumed = sweep.run_sweep(None, resume=result.sweep_dir, leaderboard_dir=None, executor=RayExecutor(),
                                  log=logs.append)
    assert sum("skipped (finished" in m for m in logs) == 3
    assert "point all-MiniLM-L6-v2-L2-seed1: running" in logs
    assert kept.stat().st_mtime_ns == kept_mtime
    again = resumed.curve["tasks"]["sst2"]["points"]
    assert [r["status"] for p in again for r in p["runs"]] == ["skipped", "skipped", "skipped", "ran"]
    assert _curve(resumed) == _curve(result)


@pytest.mark.parametrize("args, message", [
    (["--executor", "ray", "--jobs", "2"], "--jobs: only with --executor local"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address: only with --executor ray"),
])
def test_executor_flags_bad_input(tmp_path, args, message):
    out = run_kdbench("capacity-gap", "--suite", "quickstart", "--teacher-layers", f"{MINILM}:1",
                      "--student", "config:num_hidden_layers=1", *args, "--reports-dir", tmp_path / "reports")
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "reports").exists()


SUITE_TINY = ["tasks=[sst2,rte]", "seeds=[0,1]", "data.train_rows=64", "data.eval_rows=64", "distill.epochs=1",
              "teacher.finetune.epochs=1", "max_length=32", "eval.efficiency=false", "eval.bootstrap_samples=200"]


@pytest.fixture
def one_thread(monkeypatch):
    """This process computes with one thread, as each Ray point does (1 CPU per point): bf16 sums
    depend on the thread count, so a two-thread reference would differ in the fifth digit."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # and the record's thread policy says so, as a point's does
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@needs_ray
def test_suite_of_two_tasks_and_two_seeds_on_ray_is_one_run_like_one_process(tmp_path, cluster, monkeypatch, one_thread):
    """train-and-eval of 2 tasks × 2 seeds as 4 Ray tasks: one run record equal to the one-process
    run's (every result, pair, seed aggregate, dataset, model entry and sample), the models where one
    process puts them, and one leaderboard with that one run; then eval of the saved models, a Ray
    task per task, equal to the one-process eval."""
    import pandas as pd

    # Ray's workers start with kdbench's short spin already in their environment, so they record it as
    # set; the one-process run must run under the same thread policy (it passed only after a test that set it)
    monkeypatch.setenv("GOMP_SPINCOUNT", "20000")

    from kdbench.config import load_suite
    from kdbench.distill.run import train_and_eval
    from kdbench.report.record import validate_record
    from kdbench.report.runs import scan
    from kdbench.sweeps import suite_points

    suite = load_suite("glue", SUITE_TINY)
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache-local"))
    local = train_and_eval(suite, reports_dir=tmp_path / "local", leaderboard_dir=None)
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache-ray"))
    board = tmp_path / "leaderboards"
    on_ray = suite_points.run(suite, RayExecutor(), reports_dir=tmp_path / "reports", leaderboard_dir=board,
                              log=lambda msg: None)
    validate_record(on_ray.record)
    differs = {"run_id", "created", "durations", "environment"}
    assert {k: v for k, v in on_ray.record.items() if k not in differs} == \
           {k: v for k, v in local.record.items() if k not in differs}
    assert on_ray.record["environment"] == {**local.record["environment"], "executor": "ray, 1 CPU per point"}
    assert set(on_ray.record["durations"]) == set(local.record["durations"])
    assert on_ray.record["seed_results"]["rte"]["results"]["student"]["accuracy"]["n_seeds"] == 2
    assert pd.read_parquet(on_ray.run_dir / "samples.parquet").equals(pd.read_parquet(local.run_dir / "samples.parquet"))
    for folder in ("models/sst2/student", "models/rte/baseline", "seed-1/models/rte/student"):
        assert (on_ray.run_dir / folder / "config.json").is_file(), folder
    assert not (on_ray.run_dir / suite_points.POINTS).exists()
    runs, skipped = scan(tmp_path / "reports")
    assert [r["run_id"] for _, r in runs] == [on_ray.record["run_id"]] and not skipped
    assert on_ray.leaderboard == board / "index.html"
    assert [p.name for p in (board / "runs").glob("*.html")] == [f"{on_ray.record['run_id']}.html"]

    # eval of the two tasks' saved models, each task one Ray task: the record one process makes
    from kdbench.pipeline import evaluate

    models = {"teacher": str(local.run_dir / "models/{task}/student"), "student": str(local.run_dir / "models/{task}/baseline")}
    one = evaluate(suite, models, reports_dir=tmp_path / "eval-local", leaderboard_dir=None)
    scored = suite_points.run(suite, RayExecutor(), models=models, reports_dir=tmp_path / "eval-ray", leaderboard_dir=None,
                              log=lambda msg: None)
    assert {k: v for k, v in scored.record.items() if k not in differs} == \
           {k: v for k, v in one.record.items() if k not in differs}
    assert set(scored.record["results"]) == {"sst2", "rte"}


@needs_ray
def test_suite_on_ray_bad_input_fails_before_any_point(tmp_path):
    out = run_kdbench("train-and-eval", "--suite", "quickstart", "--set", "teacher.layers=9", "--executor", "ray",
                      "--reports-dir", tmp_path / "reports", "--leaderboard-dir", tmp_path / "lb")
    assert out.returncode == 2 and "teacher.layers 9" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "reports").exists() and not (tmp_path / "lb").exists()
