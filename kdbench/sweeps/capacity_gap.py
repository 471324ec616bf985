"""``kdbench capacity-gap``: one fixed student distilled from each of several teachers, over seeds.

Each point (teacher, seed) is an ordinary ``train-and-eval`` of the suite with ``teacher.model``
(and ``teacher.layers`` for a truncated family member) overridden and the student's own seed
``distill.seed`` set; the suite's ``seed`` stays fixed, so the training slice, the fine-tuned
teacher and its cached logits are the same for every seed: each teacher is fine-tuned and run once
per sweep (its other seeds wait for its first seed's point in the job graph, so points running side
by side never fine-tune the same teacher twice). The points run locally or on a Ray cluster
(:mod:`kdbench.sweeps.executors`); the records, the curve and resume are the same either way.

Layout of a sweep folder ``REPORTS/capacity-gap-<id>/``::

    sweep.json               the plan (suite, overrides, teachers, seeds): what --resume continues
    points/<teacher>-seed<N>/<run id>/report.json   one ordinary run record per point
    capacity_gap.json        the curve record: per teacher params, student mean and CI over seeds,
                             teacher score, the runs it came from; best teacher; size ratio there
    capacity_gap.svg/.png    the curve; report.html the sweep's page
    report.json              a run record for the leaderboard: the best point's, with ``capacity_gap``

A point is finished when its folder holds a run record whose config is the point's suite; a resumed
sweep skips finished points and reruns the others from scratch.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from kdbench import names
from kdbench.errors import KdbenchError
from kdbench.fsio import held, within, write_atomic

PLAN_FILE, CURVE_FILE = "sweep.json", "capacity_gap.json"
SWEEP_LOCK = ".lock"  # in a sweep folder: held by the process running the sweep
CI_METHOD = "t interval over seeds (95%); with one seed, that run's bootstrap CI"


@dataclass(frozen=True)
class Teacher:
    model: str
    layers: int | None = None

    @property
    def label(self) -> str:
        return self.model + (f"@L{self.layers}" if self.layers else "")

    @property
    def slug(self) -> str:
        """The teacher's part of its points' folder names: a valid name (kdbench.names) from any id or path."""
        return names.slug(self.model.rstrip("/").rsplit("/", 1)[-1] + (f"-L{self.layers}" if self.layers else ""))


def parse_teachers(teachers: str | None, teacher_layers: tuple[str, ...] = ()) -> list[Teacher]:
    """``--teachers A,B`` and ``--teacher-layers MODEL:1,2,4`` (repeatable) -> teachers, in order."""
    out = [Teacher(t.strip()) for t in (teachers or "").split(",") if t.strip()]
    for rule in teacher_layers:
        model, sep, depths = rule.rpartition(":")
        if not sep or not model or not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", depths) or any(int(k) < 1 for k in depths.split(",")):
            raise KdbenchError(f"--teacher-layers '{rule}' is not MODEL:K1,K2,... with layer counts >= 1 "
                               "(e.g. sentence-transformers/all-MiniLM-L6-v2:1,2,4,6)")
        out += [Teacher(model, int(k)) for k in depths.split(",")]
    if not out:
        raise KdbenchError("capacity-gap: name the teachers (--teachers A,B,... and/or --teacher-layers MODEL:1,2,4)")
    if len({t.slug for t in out}) != len(out):
        raise KdbenchError(f"capacity-gap: a teacher is named twice: {', '.join(t.label for t in out)}")
    return out


def parse_seeds(seeds: str) -> list[int]:
    try:
        out = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise KdbenchError(f"--seeds '{seeds}' is not a comma-separated list of integers (e.g. 0,1,2)") from None
    if len(set(out)) != len(out):
        raise KdbenchError(f"--seeds '{seeds}' repeats a seed")
    return out


def student_override(spec: str | None) -> list[str]:
    """``--student``: a hub id or folder (``builder: pretrained``), or ``config:KEY=V,...`` (a random-init
    student of the teacher's architecture with those config overrides); none = the suite's student."""
    if not spec:
        return []
    if spec.startswith("config:"):
        pairs = [p.partition("=") for p in spec[len("config:"):].split(",")]
        if not pairs or any(not k or not sep or not v for k, sep, v in pairs):
            raise KdbenchError(f"--student '{spec}' is not config:KEY=VALUE,... (e.g. config:num_hidden_layers=1)")
        try:
            config = {k.strip(): yaml.safe_load(v) for k, _, v in pairs}
        except yaml.YAMLError:
            raise KdbenchError(f"--student '{spec}': a value is not valid YAML (e.g. config:num_hidden_layers=1)") from None
        return [f"student={json.dumps({'builder': 'config', 'config': config})}"]
    return [f"student={json.dumps({'builder': 'pretrained', 'model': spec})}"]


@dataclass
class Point:
    teacher: Teacher
    seed: int
    suite: dict  # the point's validated suite, JSON form

    @property
    def name(self) -> str:
        return names.slug(f"{self.teacher.slug}-seed{self.seed}")


def plan_points(plan: dict) -> list[Point]:
    """Every (teacher, seed) point's suite, validated now (against each teacher's config and the data
    too: :mod:`kdbench.preflight`) so bad input fails before any work."""
    from kdbench.distill import preflight
    from kdbench.config import SuiteConfig, load_suite
    from kdbench.tasks import get_task

    teachers = [Teacher(t["model"], t.get("layers")) for t in plan["teachers"]]
    points = []
    for teacher in teachers:
        for seed in plan["seeds"]:
            overrides = [*plan["overrides"], f"teacher.model={json.dumps(teacher.model)}",
                         f"teacher.layers={teacher.layers if teacher.layers else 'null'}",
                         f"distill.seed={seed}", "seeds=null"]
            suite = load_suite(plan["suite"], overrides)
            points.append(Point(teacher, seed, suite.model_dump(mode="json")))
    first = SuiteConfig.model_validate(points[0].suite)
    from kdbench import devices

    devices.resolve(first.device)  # a GPU that is not there fails before the sweep folder exists
    from kdbench.registry import BUILDERS

    for name in first.tasks:  # every recipe keeps the teacher fixed across student seeds (distill.seed)
        st = first.for_task(name).student
        if st is None:
            raise KdbenchError(f"suite {first.name}: capacity-gap needs a student (--student MODEL or config:...)")
        derives = BUILDERS.meta(st.builder).get("derives")
        if derives and not st.model:
            if derives == "weights":
                raise KdbenchError(f"capacity-gap needs a fixed student: student.builder {st.builder} copies layers "
                                   "of each teacher; use --student MODEL or --student config:num_hidden_layers=N")
            if len({t.model for t in teachers}) > 1:
                raise KdbenchError("capacity-gap: a student.builder config student takes the teacher's architecture, "
                                   "so it is fixed only when all teachers are one model truncated (--teacher-layers); "
                                   "use --student MODEL")
    tasks = [get_task(name) for name in first.tasks]
    for point in points:
        if point.seed == plan["seeds"][0]:  # the checks do not depend on the student's seed
            try:
                preflight.check_training(SuiteConfig.model_validate(point.suite), tasks)
            except KdbenchError as e:
                raise KdbenchError(f"capacity-gap teacher {point.teacher.label}: {e}") from None
    return points


def new_plan(suite: str, overrides: list[str], teachers: list[Teacher], seeds: list[int]) -> dict:
    return {"suite": suite, "overrides": list(overrides), "seeds": seeds,
            "teachers": [{"model": t.model, "layers": t.layers} for t in teachers]}


# one point ---------------------------------------------------------------------------------------
def _comparable_config(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k != "task_specs"}, sort_keys=True)


def finished_run(folder: Path, suite: dict) -> Path | None:
    """The run folder of a finished point: a record whose config is the point's suite."""
    want = _comparable_config(json.loads(json.dumps(suite)))
    for path in sorted(folder.glob("[!.]*/report.json")):
        try:
            if _comparable_config(json.loads(path.read_text())["config"]) == want:
                return path.parent
        except (OSError, ValueError, KeyError):
            continue
    return None


def run_point(suite: dict, folder: str, include_paths=(), allow_code: bool = False) -> tuple[str, float]:
    """Train-and-eval one point into ``folder`` (anything unfinished there is removed first)."""
    from kdbench.config import SuiteConfig
    from kdbench.distill.run import train_and_eval

    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    result = train_and_eval(SuiteConfig.model_validate(suite), reports_dir=folder, leaderboard_dir=None,
                            include_paths=include_paths, allow_code=allow_code)
    return str(result.run_dir), round(time.perf_counter() - start, 2)


# the sweep ---------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    sweep_dir: Path
    curve: dict
    leaderboard: Path | None


def run_sweep(plan: dict | None, *, reports_dir: str | Path = "reports", leaderboard_dir: str | Path | None = "leaderboards",
              jobs: int = 1, resume: str | Path | None = None, log=lambda msg: print(msg, file=sys.stderr),
              executor=None) -> SweepResult:
    """Run (or, with ``resume``, continue) a sweep; returns its folder and curve record. ``executor``
    (:mod:`kdbench.sweeps.executors`) runs the points; default: ``jobs`` local processes."""
    from kdbench.report import leaderboard
    from kdbench.sweeps.executors import LocalExecutor

    if resume is not None:
        sweep_dir = Path(resume)
        plan = _read_plan(sweep_dir)
        reports_dir = sweep_dir.parent
    if leaderboard_dir is not None:
        leaderboard.check_output(Path(leaderboard_dir))
    points = plan_points(plan)  # before a new sweep's folder exists: bad input leaves nothing behind
    if resume is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        sweep_dir = within(reports_dir, f"capacity-gap-{stamp}-{secrets.token_hex(3)}")
        sweep_dir.mkdir(parents=True)
    with held(sweep_dir / SWEEP_LOCK, f"sweep {sweep_dir} is running in another kdbench process (it holds "
                                      f"{sweep_dir / SWEEP_LOCK}); resume it only once that process has stopped"):
        if resume is None:
            write_atomic(sweep_dir / PLAN_FILE, json.dumps(plan, indent=2))
            log(f"sweep folder {sweep_dir} (if interrupted: kdbench capacity-gap --resume {sweep_dir})")
        status: dict[str, dict] = {}
        todo = []
        for p in points:
            done = finished_run(within(sweep_dir, "points", p.name), p.suite)
            if done is not None:
                status[p.name] = {"status": "skipped", "run_dir": done}
                log(f"point {p.name}: skipped (finished: run {done.name})")
            else:
                todo.append(p)
        _run_points(todo, plan["seeds"][0], sweep_dir, executor or LocalExecutor(jobs), status, log)
        return _write_outputs(plan, points, status, sweep_dir, reports_dir, leaderboard_dir)


def _read_plan(sweep_dir: Path) -> dict:
    """The plan of the sweep in ``sweep_dir`` (``sweep.json``), or a one-line error."""
    path = sweep_dir / PLAN_FILE
    if not path.is_file():
        raise KdbenchError(f"--resume {sweep_dir}: not a capacity-gap sweep folder (no {PLAN_FILE})")
    try:
        plan = json.loads(path.read_text())
        if not (isinstance(plan, dict) and isinstance(plan["suite"], str) and isinstance(plan["overrides"], list)
                and isinstance(plan["seeds"], list) and all(isinstance(t["model"], str) for t in plan["teachers"])):
            raise ValueError("not a sweep plan")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise KdbenchError(f"--resume {sweep_dir}: {path} cannot be used ({str(e).splitlines()[0] or type(e).__name__}); "
                           "the sweep cannot be resumed") from None
    return plan


def _run_points(todo: list[Point], first_seed: int, sweep_dir: Path, executor, status: dict, log) -> None:
    """Run the unfinished points. The first seed of every teacher fine-tunes it and caches its
    outputs; the teacher's later seeds wait for that point in the job graph, then reuse them."""
    from kdbench.sweeps.executors import Job, run_points

    if not todo:
        return
    firsts = {p.teacher: p.name for p in todo if p.seed == first_seed}
    folder = sweep_dir.resolve()  # absolute: a worker elsewhere (a Ray node) has its own working folder
    jobs = [Job(p.name, run_point, (p.suite, str(within(folder, "points", p.name))),
                (firsts[p.teacher],) if p.seed != first_seed and p.teacher in firsts else (),
                gpu=p.suite["device"].startswith("cuda"))
            for p in todo]

    def done(job, result) -> None:
        status[job.name] = {"status": "ran", "run_dir": Path(result[0]), "wall_s": result[1]}

    run_points(executor, jobs, done, log)


def curve_of(points: list[Point], records: dict[str, dict], status: dict, sweep_dir: Path) -> dict:
    """The curve record's per-task part from the points' run records."""
    from kdbench.metrics.stats import aggregate_seed_results
    from kdbench.report.summary import main_score

    first = records[points[0].name]
    tasks = {}
    for task in first["results"]:
        metric = main_score(first, task)
        by_teacher: dict[Teacher, list[Point]] = {}
        for p in points:
            by_teacher.setdefault(p.teacher, []).append(p)
        rows = []
        for teacher, pts in by_teacher.items():
            recs = [records[p.name] for p in pts]
            student = aggregate_seed_results([r["results"][task]["student"] for r in recs])[metric]
            teacher_scores = [r["results"][task]["teacher"][metric]["value"] for r in recs]
            rows.append({
                "teacher": teacher.label, "model": teacher.model, "layers": teacher.layers,
                "teacher_params": recs[0]["models_by_task"][task]["teacher"]["params"],
                "value": student["value"], "ci": student["ci"], "std": student["std"], "n_seeds": student["n_seeds"],
                "per_seed": student["per_seed"],
                "teacher_value": sum(teacher_scores) / len(teacher_scores),
                "teacher_finetuned_once": len({r["models_by_task"][task]["teacher"].get("cache_key") for r in recs}) == 1,
                "runs": [{"seed": p.seed, "run_id": records[p.name]["run_id"], "status": status[p.name]["status"],
                          "path": os.path.relpath(status[p.name]["run_dir"], sweep_dir),
                          **({"wall_s": status[p.name]["wall_s"]} if "wall_s" in status[p.name] else {})}
                         for p in pts],
            })
        student_params = sorted({r["models_by_task"][task]["student"]["params"] for r in records.values()})
        best = max(rows, key=lambda r: r["value"])
        tasks[task] = {"metric": metric, "student_params": student_params[0], "best_teacher": best["teacher"],
                       "size_ratio_at_best": student_params[0] / best["teacher_params"], "points": rows}
        if len(student_params) > 1:
            raise KdbenchError(f"capacity-gap: the student differs between points ({student_params} parameters)")
    return tasks


def _write_outputs(plan, points, status, sweep_dir: Path, reports_dir, leaderboard_dir) -> SweepResult:
    from kdbench.report import leaderboard, plots
    from kdbench.report.html import environment
    from kdbench.report.record import RECORD_FILE, dumps

    records = {p.name: json.loads((status[p.name]["run_dir"] / RECORD_FILE).read_text()) for p in points}
    tasks = curve_of(points, records, status, sweep_dir)
    student = records[points[0].name]["config"]["student"]
    student_label = student.get("model") or f"config {student.get('config')}"
    curve = {"sweep_id": sweep_dir.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "suite": plan["suite"], "overrides": plan["overrides"], "seeds": plan["seeds"], "student": student,
             "ci_method": CI_METHOD, "tasks": tasks}
    write_atomic(sweep_dir / CURVE_FILE, json.dumps(curve, indent=2))
    figures = []
    for task, c in tasks.items():
        svg = plots.capacity_gap([{"label": student_label, **c}], c["metric"], f"{task}: capacity gap",
                                 png=within(sweep_dir, f"capacity_gap-{task}.png"))
        write_atomic(within(sweep_dir, f"capacity_gap-{task}.svg"), svg)
        figures.append(f"capacity_gap-{task}")
    # the leaderboard's view: the best point's run record under the sweep's id, with the curve
    best_task = next(iter(tasks))
    best = next(p for p in points if p.teacher.label == tasks[best_task]["best_teacher"])
    record = {**records[best.name], "run_id": sweep_dir.name, "created": curve["created"],
              "capacity_gap": {t: {"metric": c["metric"], "student": student_label, "student_params": c["student_params"],
                                   "best_teacher": c["best_teacher"],
                                   "points": [{k: r[k] for k in ("teacher", "teacher_params", "value", "ci", "teacher_value")}
                                              for r in c["points"]]}
                               for t, c in tasks.items()},
              "sweep": {"curve": CURVE_FILE, "best_point": os.path.relpath(status[best.name]["run_dir"], sweep_dir)}}
    write_atomic(sweep_dir / RECORD_FILE, dumps(record))
    page = environment().get_template("capacity_gap.html").render(curve=curve, figures=figures, tasks=tasks)
    write_atomic(sweep_dir / "report.html", page)
    board = leaderboard.build(Path(reports_dir), Path(leaderboard_dir)) if leaderboard_dir is not None else None
    return SweepResult(sweep_dir, curve, board)
