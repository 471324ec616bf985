"""Where a sweep's points run: one small interface, two dispatchers.

A sweep (the points of ``capacity-gap``, the task × seed points of a suite) hands an executor a
list of :class:`Job`: a top-level function, its arguments, and the jobs it waits for. A teacher's
first point fine-tunes the teacher and caches its outputs (:mod:`kdbench.models.cache`,
:mod:`kdbench.distill.teacher_cache`: written atomically under a lock); the teacher's other points
wait for it in the graph and then read the cache, so no two points ever build one entry. Everything
else (planning, run records, resume, the curve, the leaderboard) belongs to the sweep and is the
same whichever executor ran the points.

- :class:`LocalExecutor`: this process (``jobs=1``) or ``jobs`` spawned processes, one thread each.
- :class:`RayExecutor`: each job one Ray task with its resource request (``num_cpus``,
  ``num_gpus``) on a Ray cluster (``address``; default: join ``RAY_ADDRESS`` or start a local
  one). A worker that dies mid-point (killed, out of memory, its machine lost) is retried by Ray;
  an error the point raises is not (bad input stays bad). Each task pins its threads to its CPU
  share (:mod:`kdbench.threads`), and the environment that locates data and caches
  (``KDBENCH_*``, ``HF_*``) travels with it: on a cluster those paths must be shared storage.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from kdbench import progress
from kdbench.errors import KdbenchError

RAY_RETRIES = 3  # a point whose worker died is run again this many times
POLL_S = 1.0  # how often the progress bar learns which points have started
# the environment a point needs wherever it runs: data mirror, caches, offline switches
FORWARDED_ENV = ("KDBENCH_", "HF_", "TRANSFORMERS_", "TOKENIZERS_PARALLELISM", "GOMP_", "OMP_")


@dataclass(frozen=True)
class Job:
    name: str
    fn: Callable  # a module-level function (it is pickled by reference into the worker)
    args: tuple
    after: tuple[str, ...] = ()  # names of the jobs whose results it needs on disk first
    gpu: bool = False  # its suite names a CUDA device (a Ray task then asks for one GPU by default)


class Tracker:
    """The sweep's one progress bar (points done, running, queued) and its log lines."""

    def __init__(self, jobs: list[Job], log: Callable[[str], None]):
        self.total, self.log = len(jobs), log
        self.started: set[str] = set()
        self.finished: set[str] = set()
        self.bar = progress.bar(total=self.total, desc="points", unit="point")
        self._postfix()

    def say(self, message: str) -> None:
        if isinstance(self.bar, progress.LogBar) or self.bar.disable:  # a log: the line goes after the bar's last
            self.log(message)
            return
        with self.bar.external_write_mode():  # a live bar: cleared, the line written, the bar redrawn below it
            self.log(message)

    def start(self, name: str) -> None:
        if name not in self.started:
            self.started.add(name)
            self.say(f"point {name}: running")
            self._postfix()

    def done(self, name: str, wall_s: float) -> None:
        self.start(name)
        self.finished.add(name)
        self.say(f"point {name}: done in {wall_s:.0f} s")
        self.bar.update(1)
        self._postfix()

    def _postfix(self) -> None:
        running = len(self.started - self.finished)
        self.bar.set_postfix_str(f"running {running}, queued {self.total - running - len(self.finished)}",
                                 refresh=not isinstance(self.bar, progress.LogBar))  # a log prints on progress only

    def close(self) -> None:
        self.bar.close()


def _ordered(jobs: list[Job]) -> list[Job]:
    """The jobs, each after those it waits for (a job naming one not in the list is a bug)."""
    names = {j.name for j in jobs}
    missing = {a for j in jobs for a in j.after} - names
    if missing:
        raise ValueError(f"jobs wait for jobs that are not there: {sorted(missing)}")
    out, placed = [], set()
    while len(out) < len(jobs):
        ready = [j for j in jobs if j.name not in placed and set(j.after) <= placed]
        if not ready:
            raise ValueError("the jobs wait for each other in a cycle")
        out += ready
        placed |= {j.name for j in ready}
    return out


class LocalExecutor:
    """Points in this process, one after the other (``jobs=1``), or in ``jobs`` spawned processes
    with one thread each (side by side, not threads fighting over cores); a point starts as soon as
    those it waits for are done."""

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def describe(self) -> str:
        return f"local, {self.jobs} process{'es' if self.jobs > 1 else ''}"

    def run(self, jobs: list[Job], on_done: Callable[[Job, object], None], tracker: Tracker) -> None:
        jobs = _ordered(jobs)
        if self.jobs == 1:  # in this process (already pinned by the caller's environment)
            for job in jobs:
                tracker.start(job.name)
                on_done(job, job.fn(*job.args))
            return
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        done: set[str] = set()
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_pin_threads, initargs=(1,)) as pool:
            running: dict = {}
            waiting = list(jobs)
            try:
                while waiting or running:
                    for job in [j for j in waiting if set(j.after) <= done]:
                        running[pool.submit(job.fn, *job.args)] = job
                        waiting.remove(job)
                    finished, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
                    for future, job in running.items():
                        if future.running() or future.done():
                            tracker.start(job.name)
                    for future in finished:
                        job = running.pop(future)
                        on_done(job, future.result())  # a point's error ends the sweep (resume re-queues it)
                        done.add(job.name)
            except BaseException:
                pool.shutdown(cancel_futures=True)  # the queued points do not start; running ones finish
                raise


def _pin_threads(threads: int) -> None:
    """A point's process uses ``threads`` threads, under kdbench's thread policy otherwise."""
    from kdbench import threads as thread_policy

    thread_policy.apply(threads)


def _ray_point(fn, args, name, threads, started, *_after):
    """One point in a Ray worker: pinned to its CPU share, its start reported to the driver; the
    results of the jobs it waits for (``_after``) are only the dependency, the point reads the cache."""
    import ray

    _pin_threads(threads)
    ray.get(started.mark.remote(name))
    return fn(*args)


class RayExecutor:
    """Each point one Ray task requesting ``num_cpus`` CPUs and ``num_gpus`` GPUs, on the cluster at
    ``address`` (None: ``RAY_ADDRESS`` if set, else a local cluster started for the sweep);
    ``num_gpus`` None: one for a point whose suite names a CUDA device, else none."""

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float | None = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise KdbenchError("--executor ray needs Ray: pip install 'kdbench[ray]'") from None
        if num_cpus <= 0 or (num_gpus or 0) < 0:
            raise KdbenchError(f"--cpus-per-point {num_cpus:g} / --gpus-per-point {num_gpus or 0:g}: CPUs must be > 0, "
                               "GPUs >= 0")
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus

    def describe(self) -> str:
        gpus = "" if not self.num_gpus else f" and {self.num_gpus:g} GPU{'s' if self.num_gpus != 1 else ''}"
        return f"ray, {self.num_cpus:g} CPU{'s' if self.num_cpus != 1 else ''}{gpus} per point"

    def _gpus(self, job: Job) -> float:
        return self.num_gpus if self.num_gpus is not None else float(job.gpu)

    def _connect(self, tracker: Tracker) -> bool:
        """Join (or start) the cluster unless this process already has; True if this call did."""
        import ray

        if ray.is_initialized():
            return False
        try:
            context = ray.init(address=self.address, log_to_driver=progress.verbosity() == progress.VERBOSE)
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = self.address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
            raise KdbenchError(f"--executor ray: cannot reach the Ray cluster at {where} "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        if context.dashboard_url:
            tracker.say(f"Ray dashboard: http://{context.dashboard_url}")
        return True

    def run(self, jobs: list[Job], on_done: Callable[[Job, object], None], tracker: Tracker) -> None:
        import ray

        started_here = self._connect(tracker)
        try:
            have, gpus = ray.cluster_resources(), max(self._gpus(j) for j in jobs)
            if have.get("CPU", 0) < self.num_cpus or have.get("GPU", 0) < gpus:
                raise KdbenchError(f"--executor ray: a point asks for {self.num_cpus:g} CPUs and {gpus:g} GPUs; "
                                   f"the cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs")
            self._dispatch(ray, _ordered(jobs), on_done, tracker)
        finally:
            if started_here:
                ray.shutdown()

    def _dispatch(self, ray, jobs: list[Job], on_done, tracker: Tracker) -> None:
        threads = max(1, int(self.num_cpus))
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
        from kdbench import threads as thread_policy

        env.update({k: v for k, v in thread_policy.apply(threads, dict(env)).items() if v is not None})
        task = ray.remote(_ray_point)
        started = ray.remote(num_cpus=0)(_Started).remote()
        refs: dict[str, object] = {}
        for job in jobs:  # in order: every job's dependencies already have their refs
            refs[job.name] = task.options(
                num_cpus=self.num_cpus, num_gpus=self._gpus(job), max_retries=RAY_RETRIES, retry_exceptions=False,
                runtime_env={"env_vars": env}).remote(job.fn, job.args, job.name, threads, started,
                                                      *(refs[a] for a in job.after))
        by_ref = {ref: name for name, ref in refs.items()}
        named = {job.name: job for job in jobs}
        pending = list(refs.values())
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            for name in ray.get(started.names.remote()):
                tracker.start(name)
            for ref in ready:
                name = by_ref[ref]
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # the point's own error, as the local executor raises it
                    for other in pending:
                        ray.cancel(other)
                    raise (e.cause if isinstance(e.cause, Exception) else e) from None
                except ray.exceptions.RayError as e:  # lost more often than it is retried
                    for other in pending:
                        ray.cancel(other)
                    raise KdbenchError(f"point {name}: its Ray worker was lost {RAY_RETRIES + 1} times "
                                       f"({type(e).__name__}); resume the sweep to run it again") from None
                on_done(named[name], result)


class _Started:
    """A Ray actor holding the names of the points that have started (for the progress bar)."""

    def __init__(self):
        self._names: set[str] = set()

    def mark(self, name: str) -> None:
        self._names.add(name)

    def names(self) -> set[str]:
        return self._names


def run_points(executor, jobs: list[Job], on_done: Callable[[Job, tuple[str, float]], None], log) -> None:
    """Run the points ``jobs`` on ``executor`` under the sweep's one progress bar; a point's function
    returns ``(its run folder, its wall seconds)``, handed to ``on_done`` as each finishes."""
    log(f"{len(jobs)} points to run ({executor.describe()})")
    tracker = Tracker(jobs, log)

    def done(job: Job, result) -> None:
        on_done(job, result)
        tracker.done(job.name, result[1])

    try:
        executor.run(jobs, done, tracker)
    finally:
        tracker.close()


def make(executor: str, *, jobs: int = 1, ray_address: str | None = None, num_cpus: float = 1,
         num_gpus: float | None = None):
    """The executor the command line names: ``local`` (``--jobs``) or ``ray``."""
    if executor == "local":
        if ray_address:
            raise KdbenchError("--ray-address: only with --executor ray")
        return LocalExecutor(jobs)
    if executor == "ray":
        if jobs != 1:
            raise KdbenchError("--jobs: only with --executor local (Ray runs as many points as the cluster has room for)")
        return RayExecutor(ray_address, num_cpus, num_gpus)
    raise KdbenchError(f"--executor {executor}: local or ray")
