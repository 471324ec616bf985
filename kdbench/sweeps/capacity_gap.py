"""``kdbench capacity-gap``: fixed students, each distilled from each of several teachers, over seeds.

Each point (student, teacher, seed) is an ordinary ``train-and-eval`` of the suite with ``student``
(one of ``--students``), ``teacher.model`` (and ``teacher.layers`` for a truncated family member)
overridden and the student's own seed ``distill.seed`` set; the suite's ``seed`` stays fixed, so the
training slice, the fine-tuned teacher and its cached logits are the same for every student and
seed: each teacher is fine-tuned and run once per sweep (its other points wait for its first point
in the job graph, so points running side by side never fine-tune the same teacher twice). A student
at a seed starts from the same weights whatever the teacher; its no-KD baseline, the same for every
teacher, is trained in the first teacher's points only. The points run locally or on a Ray cluster
(:mod:`kdbench.sweeps.executors`); the records, the curve and resume are the same either way.

With a **teacher assistant** (``--assistant``, TAKD: Mirzadeh et al. 2020, "Improved knowledge
distillation via teacher assistant"), each teacher first teaches the assistant (an ordinary point,
once per teacher and seed, with the suite's distill settings), and each student is then also
distilled from that assistant, used as it is (it is trained on the task): per student and teacher
a direct point and a via-assistant point, compared by the same paired test as the best tier.

Layout of a sweep folder ``REPORTS/capacity-gap-<id>/``::

    sweep.json               the plan (suite, overrides, students, teachers, seeds, assistant): what --resume continues
    points/[<student>--]<teacher>-seed<N>/<run id>/report.json   one ordinary run record per point
                             (the student's part only when the sweep has several students)
    points/assistant-<assistant>--<teacher>-seed<N>/...   --assistant: the assistant distilled from the teacher
    points/[<student>--]<teacher>-via-<assistant>-seed<N>/...   the student distilled from that assistant
    capacity_gap.json        the curve record: the grid (per student and teacher: params, student
                             score with its seed-pooled CI, teacher score, the runs), per student
                             the best teacher, its tier and whether any teacher helps, and the law fit
    capacity_gap-TASK.svg/.png, capacity_law-TASK.svg/.png   the curves and the law; report.html the page
    report.json              a run record for the leaderboard: the best point's, with ``capacity_gap``

A point is finished when its folder holds a run record whose config is the point's suite; a resumed
sweep skips finished points and reruns the others from scratch (a via-assistant point's suite names
its assistant's run, so a rerun assistant reruns its via-assistant points too).
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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from kdbench import names
from kdbench.errors import KdbenchError
from kdbench.fsio import held, within, write_atomic

PLAN_FILE, CURVE_FILE = "sweep.json", "capacity_gap.json"
DIRECT, ASSISTANT, VIA = "direct", "assistant", "via"  # a point: student <- teacher, assistant <- teacher, student <- assistant
SWEEP_LOCK = ".lock"  # in a sweep folder: held by the process running the sweep
CI_METHOD = ("95% percentile bootstrap over seeds x examples: seeds resampled, and the examples resampled with the "
             "same draws in every seed (kdbench.metrics.pooled); value: the mean over seeds")


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


def _family(rule: str, option: str) -> tuple[str, list[int]]:
    """``MODEL:K1,K2,...`` -> (MODEL, [K1, K2, ...]) with layer counts >= 1, or a one-line error."""
    model, sep, depths = rule.rpartition(":")
    if not sep or not model or not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", depths) or any(int(k) < 1 for k in depths.split(",")):
        raise KdbenchError(f"{option} '{rule}' is not MODEL:K1,K2,... with layer counts >= 1 "
                           "(e.g. sentence-transformers/all-MiniLM-L6-v2:1,2,4,6)")
    return model, [int(k) for k in depths.split(",")]


def parse_teachers(teachers: str | None, teacher_layers: tuple[str, ...] = ()) -> list[Teacher]:
    """``--teachers A,B`` and ``--teacher-layers MODEL:1,2,4`` (repeatable) -> teachers, in order."""
    out = [Teacher(t.strip()) for t in (teachers or "").split(",") if t.strip()]
    for rule in teacher_layers:
        model, depths = _family(rule, "--teacher-layers")
        out += [Teacher(model, k) for k in depths]
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


def _student_section(spec: str, option: str = "--student") -> dict:
    """One student spec -> its suite ``student`` section: a hub id or folder (``builder: pretrained``),
    or ``config:KEY=V,...`` (a random-init student of the teacher's architecture with those overrides)."""
    if spec.startswith("config:"):
        pairs = [p.partition("=") for p in spec[len("config:"):].split(",")]
        if not pairs or any(not k or not sep or not v for k, sep, v in pairs):
            raise KdbenchError(f"{option} '{spec}' is not config:KEY=VALUE,... (e.g. config:num_hidden_layers=1)")
        try:
            config = {k.strip(): yaml.safe_load(v) for k, _, v in pairs}
        except yaml.YAMLError:
            raise KdbenchError(f"{option} '{spec}': a value is not valid YAML (e.g. config:num_hidden_layers=1)") from None
        return {"builder": "config", "config": config}
    return {"builder": "pretrained", "model": spec}


def student_override(spec: str | None) -> list[str]:
    """``--student``: the ``--set`` item of one student spec (:func:`_student_section`); none = the suite's student."""
    return [f"student={json.dumps(_student_section(spec))}"] if spec else []


@dataclass(frozen=True)
class Student:
    label: str
    section: str  # the suite's ``student`` section, JSON

    @property
    def slug(self) -> str:
        return names.slug(self.label.rstrip("/").rsplit("/", 1)[-1].replace("config:", "config-").replace("layers:", "layers-")
                          .replace("@", "-"))

    @property
    def override(self) -> str:
        return f"student={self.section}"


def _split_specs(text: str) -> list[str]:
    """``--students A,config:k=1,j=2,B``: a piece with ``=`` but no ``config:`` continues the config
    spec before it (a hub id never holds ``=``)."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if out and out[-1].startswith("config:") and "=" in piece and not piece.startswith("config:"):
            out[-1] += "," + piece
        elif piece:
            out.append(piece)
    return out


def parse_students(student: str | None, students: str | None = None, student_layers: tuple[str, ...] = ()) -> list[Student]:
    """``--student S`` (one), ``--students A,B`` and ``--student-layers MODEL:1,2,4`` (repeatable: MODEL's
    first K layers with their pretrained weights, the same whatever the teacher) -> students, in order;
    none given = [] (the suite's own student)."""
    if student and (students or student_layers):
        raise KdbenchError("capacity-gap: --student names one student; for several use --students and/or --student-layers")
    specs = _split_specs(students or "") + ([student] if student else [])
    out = [Student(spec, json.dumps(_student_section(spec))) for spec in specs]
    for rule in student_layers:
        model, depths = _family(rule, "--student-layers")
        out += [Student(f"{model}@L{k}", json.dumps({"builder": "layer_selection", "model": model, "layers": list(range(k))}))
                for k in depths]
    if len({s.slug for s in out}) != len(out) or len({s.section for s in out}) != len(out):
        raise KdbenchError(f"capacity-gap: a student is named twice: {', '.join(s.label for s in out)}")
    return out


def parse_assistant(spec: str | None, students: list[Student] = ()) -> Student | None:
    """``--assistant SPEC``: a student spec (:func:`_student_section`), or ``layers:K``, each teacher's
    first K layers with its fine-tuned weights (``builder: layer_selection`` of the teacher); None: none."""
    if not spec:
        return None
    if spec.startswith("layers:"):
        k = spec[len("layers:"):].strip()
        if not k.isdigit() or int(k) < 1:
            raise KdbenchError(f"--assistant '{spec}' is not layers:K with K >= 1 (e.g. layers:3, each teacher's first 3 layers)")
        section = {"builder": "layer_selection", "layers": list(range(int(k)))}
    else:
        section = _student_section(spec, "--assistant")
    assistant = Student(spec, json.dumps(section))
    if any(s.section == assistant.section or s.slug == assistant.slug for s in students):
        raise KdbenchError(f"capacity-gap: the assistant {spec} is also a student; an assistant sits between the teachers "
                           "and the students")
    return assistant


@dataclass
class Point:
    teacher: Teacher
    seed: int
    suite: dict  # the point's validated suite, JSON form
    student: Student | None = None  # None: the suite's own student
    grid: bool = False  # one of several students: its name starts with the student's (a one-student sweep's does not)
    kind: str = DIRECT  # DIRECT, ASSISTANT (the assistant's distillation: its student is the assistant) or VIA
    assistant: Student | None = None  # ASSISTANT, VIA: the plan's assistant
    source: str | None = None  # VIA: the name of the ASSISTANT point whose assistant teaches it

    @property
    def name(self) -> str:
        if self.kind == ASSISTANT:
            return names.slug(f"assistant-{self.assistant.slug}--{self.teacher.slug}-seed{self.seed}")
        via = f"-via-{self.assistant.slug}" if self.kind == VIA else ""
        return names.slug((f"{self.student.slug}--" if self.grid else "") + f"{self.teacher.slug}{via}-seed{self.seed}")


def plan_students(plan: dict) -> list[Student | None]:
    """The plan's students; [None] for the suite's own student (or a plan from before ``students``)."""
    return [Student(s["label"], s["section"]) for s in plan.get("students", [])] or [None]


def plan_assistant(plan: dict) -> Student | None:
    a = plan.get("assistant")
    return Student(a["label"], a["section"]) if a else None


def _params(config) -> int:
    """The parameters of a config's model, counted without weights (meta device): how sizes compare
    before any model is loaded."""
    from accelerate import init_empty_weights
    from transformers import AutoModel

    with init_empty_weights():
        model = AutoModel.from_config(config)
    return sum(p.numel() for p in model.parameters())


def plan_points(plan: dict) -> list[Point]:
    """Every (student, teacher, seed) point's suite, validated now (against each teacher's config and
    the data too: :mod:`kdbench.preflight`) so bad input fails before any work. The no-KD baseline,
    when the suite trains one, is trained in the first teacher's points only (it does not depend on
    the teacher). With an assistant, the direct points are followed by the ASSISTANT points (per
    teacher and seed) and the VIA points (per student, teacher and seed), without a baseline."""
    from kdbench.config import SuiteConfig, load_suite
    from kdbench.distill import preflight
    from kdbench.tasks import get_task

    teachers = [Teacher(t["model"], t.get("layers")) for t in plan["teachers"]]
    students = plan_students(plan)
    several = len(students) > 1
    points = []
    for student in students:
        for i, teacher in enumerate(teachers):
            for seed in plan["seeds"]:
                overrides = [*plan["overrides"], *([student.override] if student else []),
                             f"teacher.model={json.dumps(teacher.model)}",
                             f"teacher.layers={teacher.layers if teacher.layers else 'null'}",
                             f"distill.seed={seed}", "seeds=null", *(["baseline=false"] if i else [])]
                suite = load_suite(plan["suite"], overrides)
                points.append(Point(teacher, seed, suite.model_dump(mode="json"), student, several))
    direct = list(points)
    assistant = plan_assistant(plan)
    if assistant is not None:
        def point_suite(who: Student | None, teacher: Teacher, seed: int) -> dict:
            overrides = [*plan["overrides"], *([who.override] if who else []), f"teacher.model={json.dumps(teacher.model)}",
                         f"teacher.layers={teacher.layers if teacher.layers else 'null'}",
                         f"distill.seed={seed}", "seeds=null", "baseline=false"]
            return load_suite(plan["suite"], overrides).model_dump(mode="json")

        taught = {(p.teacher, p.seed): Point(p.teacher, p.seed, point_suite(assistant, p.teacher, p.seed), kind=ASSISTANT,
                                             assistant=assistant) for p in direct}
        points += list(taught.values())
        # a via point's suite names the teacher until its assistant is trained (run_via_point puts the assistant in)
        points += [Point(p.teacher, p.seed, point_suite(p.student, p.teacher, p.seed), p.student, several, VIA, assistant,
                         taught[p.teacher, p.seed].name) for p in direct]
    first = SuiteConfig.model_validate(points[0].suite)
    from kdbench import devices

    devices.resolve(first.device)  # a GPU that is not there fails before the sweep folder exists
    from kdbench.registry import BUILDERS

    for point in direct[::len(teachers) * len(plan["seeds"])]:  # each student: fixed across teachers and seeds
        suite = SuiteConfig.model_validate(point.suite)
        who = f"student {point.student.label}: " if point.grid else ""
        for name in suite.tasks:
            st = suite.for_task(name).student
            if st is None:
                raise KdbenchError(f"suite {suite.name}: capacity-gap needs a student (--student MODEL or config:...)")
            derives = BUILDERS.meta(st.builder).get("derives")
            if derives and not st.model:
                if derives == "weights":
                    raise KdbenchError(f"capacity-gap needs a fixed student: {who}student.builder {st.builder} copies "
                                       "layers of each teacher; use --student MODEL, --student config:num_hidden_layers=N "
                                       "or --student-layers MODEL:K")
                if len({t.model for t in teachers}) > 1:
                    raise KdbenchError(f"capacity-gap: {who}a student.builder config student takes the teacher's "
                                       "architecture, so it is fixed only when all teachers are one model truncated "
                                       "(--teacher-layers); use --student MODEL")
    tasks = [get_task(name) for name in first.tasks]
    for point in points:
        if point.seed == plan["seeds"][0] and point.kind != VIA:  # the checks do not depend on the student's seed
            try:
                preflight.check_training(SuiteConfig.model_validate(point.suite), tasks)
            except KdbenchError as e:
                who = f" with student {point.student.label}" if point.grid else ""
                if point.kind == ASSISTANT:
                    who = f" teaching the assistant {point.assistant.label}"
                raise KdbenchError(f"capacity-gap teacher {point.teacher.label}{who}: {e}") from None
    if assistant is not None:
        _check_assistant(points, tasks, plan["seeds"][0])
    return points


def _check_assistant(points: list[Point], tasks: list, seed: int) -> None:
    """Per teacher, the assistant is smaller than the teacher and larger than every student
    (parameters, from the configs), and each student built from the assistant is the student
    built from the teacher (a ``config:`` student takes its teacher's architecture)."""
    from kdbench.config import SuiteConfig
    from kdbench.distill import preflight

    firsts = [p for p in points if p.seed == seed]
    for a in (p for p in firsts if p.kind == ASSISTANT):
        for task in tasks:
            suite = SuiteConfig.model_validate(a.suite).for_task(task.name)
            teacher = preflight.resolved_teacher(suite)
            made = preflight.resolved_student(task, suite, teacher)
            t_size, a_size = _params(teacher), _params(made)
            if a_size >= t_size:
                raise KdbenchError(f"capacity-gap: the assistant {a.assistant.label} ({a_size:,} parameters) is not smaller "
                                   f"than teacher {a.teacher.label} ({t_size:,}): an assistant sits between the teacher "
                                   "and the student")
            for p in (p for p in firsts if p.kind == DIRECT and p.teacher == a.teacher):
                ts = SuiteConfig.model_validate(p.suite).for_task(task.name)
                s_size = _params(preflight.resolved_student(task, ts, teacher))
                who = f"student {p.student.label}" if p.student else "the student"
                if s_size >= a_size:
                    raise KdbenchError(f"capacity-gap: the assistant {a.assistant.label} ({a_size:,} parameters) is not "
                                       f"larger than {who} ({s_size:,}): an assistant sits between the teacher and the "
                                       "student")
                if _params(preflight.resolved_student(task, ts, made)) != s_size:
                    raise KdbenchError(f"capacity-gap: {who} takes its teacher's architecture, so built from the assistant "
                                       f"{a.assistant.label} it is not the student built from teacher {a.teacher.label}; "
                                       "use a fixed student (a hub id, a folder or --student-layers)")


def new_plan(suite: str, overrides: list[str], teachers: list[Teacher], seeds: list[int],
             students: list[Student] = (), assistant: Student | None = None) -> dict:
    return {"suite": suite, "overrides": list(overrides), "seeds": seeds,
            "students": [{"label": s.label, "section": s.section} for s in students],
            "teachers": [{"model": t.model, "layers": t.layers} for t in teachers],
            **({"assistant": {"label": assistant.label, "section": assistant.section}} if assistant else {})}


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


def via_suite(suite: dict, assistant_run: Path) -> dict:
    """A via-assistant point's suite: ``suite`` with each task's teacher replaced by the assistant
    that ``assistant_run`` (the ASSISTANT point's run) saved for it, used as it is: it was distilled
    on the task already."""
    out = json.loads(json.dumps(suite))
    for i, task in enumerate(out["tasks"]):
        teacher = {"model": str(Path(assistant_run).resolve() / "models" / task / "student"), "revision": None,
                   "layers": None, "finetune": None}
        if i == 0:
            out["teacher"] = teacher
        if i or task in out["per_task"]:
            out["per_task"].setdefault(task, {})["teacher"] = teacher
    return out


def _assistant_of(folder: Path, suite: dict) -> Path:
    run = finished_run(folder, suite)
    if run is None:
        raise KdbenchError(f"capacity-gap: the assistant point {folder} has no finished run")
    return run


def run_via_point(suite: dict, folder: str, assistant_suite: dict, assistant_folder: str) -> tuple[str, float]:
    """Train-and-eval a via-assistant point: the student distilled from the assistant trained in ``assistant_folder``."""
    return run_point(via_suite(suite, _assistant_of(Path(assistant_folder), assistant_suite)), folder)


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
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        sweep_dir = within(reports_dir, f"capacity-gap-{stamp}-{secrets.token_hex(3)}")
        sweep_dir.mkdir(parents=True)
    with held(sweep_dir / SWEEP_LOCK, f"sweep {sweep_dir} is running in another kdbench process (it holds "
                                      f"{sweep_dir / SWEEP_LOCK}); resume it only once that process has stopped"):
        if resume is None:
            write_atomic(sweep_dir / PLAN_FILE, json.dumps(plan, indent=2))
            log(f"sweep folder {sweep_dir} (if interrupted: kdbench capacity-gap --resume {sweep_dir})")
        status: dict[str, dict] = {}
        todo = []
        for p in points:  # a via point after its assistant's: finished only on its finished assistant's run
            suite = p.suite
            if p.kind == VIA:
                taught = status.get(p.source, {})
                suite = via_suite(p.suite, taught["run_dir"]) if taught.get("status") == "skipped" else None
            done = finished_run(within(sweep_dir, "points", p.name), suite) if suite is not None else None
            if done is not None:
                status[p.name] = {"status": "skipped", "run_dir": done}
                log(f"point {p.name}: skipped (finished: run {done.name})")
            else:
                todo.append(p)
        _run_points(todo, points, sweep_dir, executor or LocalExecutor(jobs), status, log)
        return _write_outputs(plan, points, status, sweep_dir, reports_dir, leaderboard_dir)


def _read_plan(sweep_dir: Path) -> dict:
    """The plan of the sweep in ``sweep_dir`` (``sweep.json``), or a one-line error."""
    path = sweep_dir / PLAN_FILE
    if not path.is_file():
        raise KdbenchError(f"--resume {sweep_dir}: not a capacity-gap sweep folder (no {PLAN_FILE})")
    try:
        plan = json.loads(path.read_text())
        if not (isinstance(plan, dict) and isinstance(plan["suite"], str) and isinstance(plan["overrides"], list)
                and isinstance(plan["seeds"], list) and all(isinstance(t["model"], str) for t in plan["teachers"])
                and all(isinstance(st["label"], str) and isinstance(st["section"], str)
                        for st in [*plan.get("students", []), *([plan["assistant"]] if plan.get("assistant") else [])])):
            raise ValueError("not a sweep plan")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise KdbenchError(f"--resume {sweep_dir}: {path} cannot be used ({str(e).splitlines()[0] or type(e).__name__}); "
                           "the sweep cannot be resumed") from None
    return plan


def _run_points(todo: list[Point], points: list[Point], sweep_dir: Path, executor, status: dict, log) -> None:
    """Run the unfinished points. A teacher's first point (first student, first seed) fine-tunes it
    and caches its outputs; while that point is still to run, the teacher's other points wait for it
    in the job graph, then reuse them."""
    from kdbench.sweeps.executors import Job, run_points

    if not todo:
        return
    firsts: dict[Teacher, str] = {}
    for p in points:
        if p.kind == DIRECT:
            firsts.setdefault(p.teacher, p.name)
    pending = {p.name for p in todo}
    by_name = {p.name: p for p in points}
    folder = sweep_dir.resolve()  # absolute: a worker elsewhere (a Ray node) has its own working folder

    def job(p: Point) -> Job:
        at, gpu = str(within(folder, "points", p.name)), p.suite["device"].startswith("cuda")
        if p.kind == VIA:  # after its assistant's point, whose run names the assistant
            a = by_name[p.source]
            return Job(p.name, run_via_point, (p.suite, at, a.suite, str(within(folder, "points", a.name))),
                       (a.name,) if a.name in pending else (), gpu=gpu)
        return Job(p.name, run_point, (p.suite, at),
                   (firsts[p.teacher],) if firsts[p.teacher] != p.name and firsts[p.teacher] in pending else (), gpu=gpu)

    jobs = [job(p) for p in todo]

    def done(job, result) -> None:
        status[job.name] = {"status": "ran", "run_dir": Path(result[0]), "wall_s": result[1]}

    run_points(executor, jobs, done, log)


def _student_label(student: Student | None, record: dict) -> str:
    if student is not None:
        return student.label
    st = record["config"]["student"]
    return st.get("model") or f"config {st.get('config')}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def curve_of(plan: dict, points: list[Point], records: dict[str, dict], status: dict, sweep_dir: Path) -> dict:
    """The curve record's per-task part from the points' run records and samples: the grid, each
    student's verdict over its teachers (:func:`capacity_law.best_tier`) and the law fit."""
    from kdbench.metrics import pooled as pool
    from kdbench.metrics import spec as metric_spec
    from kdbench.metrics.samples import options, read_side
    from kdbench.report.summary import main_score
    from kdbench.sweeps import capacity_law

    sides = {p.name: read_side(status[p.name]["run_dir"], p.name) for p in points}
    students, assistant = plan_students(plan), plan_assistant(plan)
    by_name = {p.name: p for p in points}
    points = [p for p in points if p.kind == DIRECT]  # the grid; the assistant's points apart
    teachers = list(dict.fromkeys(p.teacher for p in points))
    first = records[points[0].name]
    tasks = {}
    for task in first["results"]:
        metric = main_score(first, task)
        kind_name = sides[points[0].name].kind(task)
        spec = metric_spec.kind(kind_name).find(metric)
        opts = options(first, task)
        how = metric_spec.Resampling(int(opts.get("bootstrap_samples", 1000)), float(opts.get("confidence", 0.95)), 0, opts)
        rows, verdicts, via = [], [], []
        for student in students:
            mine = [p for p in points if p.student == student]
            label = _student_label(student, records[mine[0].name])
            params = {records[p.name]["models_by_task"][task]["student"]["params"] for p in mine}
            if len(params) > 1:
                raise KdbenchError(f"capacity-gap: student {label} differs between points ({sorted(params)} parameters)")
            ids = list(sides[mine[0].name].rows(task, "student").index)
            pooled, mine_rows = {}, []
            for teacher in teachers:
                pts = [p for p in mine if p.teacher == teacher]
                recs, pts_sides = [records[p.name] for p in pts], [sides[p.name] for p in pts]
                per_seed = [r["results"][task]["student"][metric]["value"] for r in recs]
                pooled[teacher.label] = pool.pooled_table(pts_sides, task, "student", kind_name, ids)
                teacher_scores = [r["results"][task]["teacher"][metric]["value"] for r in recs]
                mine_rows.append({
                    "student": label, "student_params": next(iter(params)),
                    "teacher": teacher.label, "model": teacher.model, "layers": teacher.layers,
                    "teacher_params": recs[0]["models_by_task"][task]["teacher"]["params"],
                    "value": _mean(per_seed),
                    "ci": pool.seed_pooled_ci(spec, pool.seed_tables(pts_sides, task, "student", kind_name, ids), how),
                    "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0, "n_seeds": len(per_seed),
                    "per_seed": per_seed, "teacher_value": _mean(teacher_scores),
                    "teacher_finetuned_once": len({r["models_by_task"][task]["teacher"].get("cache_key") for r in recs}) == 1,
                    "runs": _runs(pts, records, status, sweep_dir),
                })
            # the no-KD baseline: trained in the first teacher's points (the same for every teacher)
            base_pts = [p for p in mine if p.teacher == teachers[0]]
            base_sides = [sides[p.name] for p in base_pts]
            has_baseline = all("baseline" in records[p.name]["results"][task] for p in base_pts)
            baseline = None
            if has_baseline:
                values = [records[p.name]["results"][task]["baseline"][metric]["value"] for p in base_pts]
                baseline = {"value": _mean(values), "per_seed": values,
                            "ci": pool.seed_pooled_ci(spec, pool.seed_tables(base_sides, task, "baseline", kind_name, ids), how)}
            v = capacity_law.best_tier(spec, pooled, pool.pooled_table(base_sides, task, "baseline", kind_name, ids)
                                       if has_baseline else None, how)
            by_teacher = {r["teacher"]: r for r in mine_rows}
            best = by_teacher.get(v["best_teacher"])
            entry = {"student": label, "student_params": next(iter(params)), "baseline": baseline, **v,
                     "optimal_teacher_params": best["teacher_params"] if best else None,
                     "size_ratio_at_best": next(iter(params)) / best["teacher_params"] if best else None}
            entry["verdict"] = capacity_law.verdict(entry, metric, how.n_samples)
            for r in mine_rows:
                r["in_best_tier"] = r["teacher"] in v["best_tier"]
            rows += mine_rows
            verdicts.append(entry)
            if assistant is not None:
                via += _via_rows(by_name, student, teachers, pooled, mine_rows, records, sides, status, sweep_dir, task,
                                 metric, spec, kind_name, ids, how)
        params_range = sorted(r["teacher_params"] for r in rows)
        higher = spec.higher_is_better is not False
        helped = [e for e in verdicts if e["best_teacher"] is not None]
        top = max(helped, key=lambda e: (1 if higher else -1) * next(
            r["value"] for r in rows if r["student"] == e["student"] and r["teacher"] == e["best_teacher"]), default=None)
        tasks[task] = {"metric": metric, "higher_is_better": higher, "ci_method": CI_METHOD, "bootstrap_samples": how.n_samples,
                       "tier_method": capacity_law.TIER_METHOD,
                       "best_student": top["student"] if top else None, "best_teacher": top["best_teacher"] if top else None,
                       "points": rows, "students": verdicts,
                       "fit": capacity_law.fit_law(verdicts, (params_range[0], params_range[-1]))}
        if assistant is not None:
            tasks[task].update(assistant=assistant.label, assistant_method=capacity_law.VIA_METHOD, assistant_points=via)
    return tasks


def _runs(pts: list[Point], records: dict, status: dict, sweep_dir: Path) -> list[dict]:
    return [{"seed": p.seed, "run_id": records[p.name]["run_id"], "status": status[p.name]["status"],
             "path": os.path.relpath(status[p.name]["run_dir"], sweep_dir),
             **({"wall_s": status[p.name]["wall_s"]} if "wall_s" in status[p.name] else {})}
            for p in pts]


def _via_rows(by_name, student, teachers, pooled, direct_rows, records, sides, status, sweep_dir, task, metric, spec,
              kind_name, ids, how) -> list[dict]:
    """One student's via-assistant rows, one per teacher: the student distilled from the assistant that
    teacher taught, its seed-pooled score, the assistant's, and ``vs_direct``, the paired test against
    the student distilled from the teacher directly (:func:`capacity_law.vs_direct`)."""
    from kdbench.metrics import pooled as pool
    from kdbench.sweeps import capacity_law

    label, size = direct_rows[0]["student"], direct_rows[0]["student_params"]
    rows, via_tables = [], {}
    for teacher, direct in zip(teachers, direct_rows):
        pts = [p for p in by_name.values() if p.kind == VIA and p.student == student and p.teacher == teacher]
        taught = [by_name[p.source] for p in pts]
        recs, pts_sides = [records[p.name] for p in pts], [sides[p.name] for p in pts]
        if {r["models_by_task"][task]["student"]["params"] for r in recs} != {size}:
            raise KdbenchError(f"capacity-gap: student {label} distilled from the assistant differs from the one "
                               f"distilled from teacher {teacher.label}")
        per_seed = [r["results"][task]["student"][metric]["value"] for r in recs]
        via_tables[teacher.label] = pool.pooled_table(pts_sides, task, "student", kind_name, ids)
        rows.append({
            "student": label, "student_params": size, "teacher": teacher.label,
            "teacher_params": direct["teacher_params"], "assistant": pts[0].assistant.label,
            "assistant_params": recs[0]["models_by_task"][task]["teacher"]["params"],
            "assistant_value": _mean([r["results"][task]["teacher"][metric]["value"] for r in recs]),
            "value": _mean(per_seed),
            "ci": pool.seed_pooled_ci(spec, pool.seed_tables(pts_sides, task, "student", kind_name, ids), how),
            "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0, "n_seeds": len(per_seed),
            "per_seed": per_seed, "direct_value": direct["value"],
            "runs": _runs(pts, records, status, sweep_dir), "assistant_runs": _runs(taught, records, status, sweep_dir)})
    tests = capacity_law.vs_direct(spec, via_tables, pooled, how)
    for row in rows:
        row["vs_direct"] = tests[row["teacher"]]
    return rows


def _best_point(points: list[Point], tasks: dict, records: dict) -> Point:
    """The point the leaderboard's record is: the first task's best student at its best teacher, or,
    when no teacher helps any student, the grid's best score."""
    c = next(iter(tasks.values()))
    points = [p for p in points if p.kind == DIRECT]
    label = {p.name: _student_label(p.student, records[p.name]) for p in points}
    if c["best_teacher"] is not None:
        row = next(r for r in c["points"] if r["student"] == c["best_student"] and r["teacher"] == c["best_teacher"])
    else:
        row = max(c["points"], key=lambda r: r["value"] if c["higher_is_better"] else -r["value"])
    return next(p for p in points if label[p.name] == row["student"] and p.teacher.label == row["teacher"])


def _write_outputs(plan, points, status, sweep_dir: Path, reports_dir, leaderboard_dir) -> SweepResult:
    from kdbench.report import leaderboard, plots
    from kdbench.report.html import environment
    from kdbench.report.record import RECORD_FILE, dumps

    records = {p.name: json.loads((status[p.name]["run_dir"] / RECORD_FILE).read_text()) for p in points}
    tasks = curve_of(plan, points, records, status, sweep_dir)
    curve = {"sweep_id": sweep_dir.name, "created": datetime.now(UTC).isoformat(timespec="seconds"),
             "suite": plan["suite"], "overrides": plan["overrides"], "seeds": plan["seeds"],
             "students": [s["student"] for s in next(iter(tasks.values()))["students"]],
             "teachers": [t["model"] + (f"@L{t['layers']}" if t.get("layers") else "") for t in plan["teachers"]],
             "assistant": plan["assistant"]["label"] if plan.get("assistant") else None,
             "ci_method": CI_METHOD, "tasks": tasks}
    write_atomic(sweep_dir / CURVE_FILE, json.dumps(curve, indent=2))
    figures = {}
    for task, c in tasks.items():
        lines = [{"label": s["student"], "best_teacher": s["best_teacher"],
                  "points": [r for r in c["points"] if r["student"] == s["student"]]} for s in c["students"]]
        write_atomic(within(sweep_dir, f"capacity_gap-{task}.svg"),
                     plots.capacity_gap(lines, c["metric"], f"{task}: capacity gap",
                                        png=within(sweep_dir, f"capacity_gap-{task}.png")))
        write_atomic(within(sweep_dir, f"capacity_law-{task}.svg"),
                     plots.capacity_law(c["fit"], f"{task}: optimal teacher size", png=within(sweep_dir, f"capacity_law-{task}.png")))
        figures[task] = (f"capacity_gap-{task}", f"capacity_law-{task}")
    # the leaderboard's view: the best point's run record under the sweep's id, with the grid
    best = _best_point(points, tasks, records)
    record = {**records[best.name], "run_id": sweep_dir.name, "created": curve["created"],
              "capacity_gap": {t: leaderboard_entry(c) for t, c in tasks.items()},
              "sweep": {"curve": CURVE_FILE, "best_point": os.path.relpath(status[best.name]["run_dir"], sweep_dir)}}
    write_atomic(sweep_dir / RECORD_FILE, dumps(record))
    page = environment().get_template("capacity_gap.html").render(curve=curve, figures=figures, tasks=tasks)
    write_atomic(sweep_dir / "report.html", page)
    board = leaderboard.build(Path(reports_dir), Path(leaderboard_dir)) if leaderboard_dir is not None else None
    return SweepResult(sweep_dir, curve, board)


def leaderboard_entry(c: dict) -> dict:
    """A task's grid as the run record's ``capacity_gap`` entry (docs/reports.md): one curve per student
    (with ``--assistant``, its via-assistant points and their test against the direct ones), the fit."""
    keep = ("ratio", "ratio_ci", "slope", "slope_ci", "enough_data", "limits", "points")
    return {"metric": c["metric"],
            "curves": [{"student": s["student"], "student_params": s["student_params"], "best_teacher": s["best_teacher"],
                        "best_tier": s["best_tier"], "no_teacher_helps": s["no_teacher_helps"],
                        "points": [{k: r[k] for k in ("teacher", "teacher_params", "value", "ci", "teacher_value")}
                                   for r in c["points"] if r["student"] == s["student"]],
                        **({"via_assistant": [
                            {**{k: v[k] for k in ("teacher", "assistant", "assistant_params", "value", "ci")},
                             **{k: v["vs_direct"][k] for k in ("delta", "p_holm", "finding")}}
                            for v in c["assistant_points"] if v["student"] == s["student"]]} if "assistant_points" in c else {})}
                       for s in c["students"]],
            "fit": {k: c["fit"][k] for k in keep if k in c["fit"]}}
