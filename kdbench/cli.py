"""The ``kdbench`` command: parse, call the library, print. No logic lives here."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from kdbench.errors import KdbenchError


def _user_errors(fn):
    """Bad input: one line on stderr and exit 2; ``--debug`` shows the traceback instead."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KdbenchError as e:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            click.echo(f"kdbench: error: {e}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="kdbench")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """kdbench: benchmark distilled models alone and against their teachers.

    \b
    Examples:
      kdbench train-and-eval                       # the quickstart suite on CPU
      kdbench train-and-eval --set distill.temperature=4 --train-rows 2000
      kdbench leaderboard reports/ -o leaderboards/
      kdbench suites
    """


@main.command("train-and-eval")
@click.option("--suite", default="quickstart", show_default=True, help="Suite name under suites/ or a YAML path.")
@click.option("--teacher", help="Teacher model (hub id or folder); overrides teacher.model.")
@click.option("--layers", help="Student layer map, e.g. 0,5; overrides student.layers.")
@click.option("--train-rows", type=int, help="Training slice size; overrides data.train_rows.")
@click.option("--eval-rows", type=int, help="Evaluation slice size; overrides data.eval_rows.")
@click.option("--epochs", type=float, help="Student epochs (KD and baseline); overrides distill.epochs.")
@click.option("--seed", type=int, help="Seed for data order, initialisation and bootstrap.")
@click.option("--dtype", type=click.Choice(["bf16", "fp32"]), help="Compute dtype.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any suite value by dotted key (repeatable), e.g. distill.alpha=0.7.")
@click.option("--reports-dir", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--leaderboard-dir", default="leaderboards", show_default=True, type=click.Path(file_okay=False))
@click.option("--include-path", multiple=True, type=click.Path(file_okay=False),
              help="Folder of extra task YAML files (overrides built-ins of the same name).")
@_user_errors
def train_and_eval(suite, teacher, layers, train_rows, eval_rows, epochs, seed, dtype, overrides, reports_dir,
                   leaderboard_dir, include_path):
    """Fine-tune a teacher, distil a student, train a no-KD baseline, score all three, write a report.

    \b
    Example:
      kdbench train-and-eval --suite quickstart --layers 0,3,5 --set distill.alpha=0.8
    """
    from kdbench.config import load_suite
    from kdbench.pipeline import train_and_eval as run
    from kdbench.report.table import format_run

    named = {
        "teacher.model": teacher, "student.layers": f"[{layers}]" if layers else None, "data.train_rows": train_rows,
        "data.eval_rows": eval_rows, "distill.epochs": epochs, "seed": seed, "dtype": dtype,
    }
    cfg = load_suite(suite, [f"{k}={v}" for k, v in named.items() if v is not None] + list(overrides))
    result = run(cfg, reports_dir=reports_dir, leaderboard_dir=leaderboard_dir, include_paths=include_path)
    click.echo(format_run(result.record))
    click.echo(f"\nreport:      {result.run_dir / 'report.html'}")
    click.echo(f"record:      {result.run_dir / 'report.json'}")
    if result.leaderboard:
        click.echo(f"leaderboard: {result.leaderboard}")


@main.command()
@click.argument("reports_dir", default="reports", type=click.Path(file_okay=False))
@click.option("-o", "--output", default="leaderboards", show_default=True, type=click.Path(file_okay=False))
@_user_errors
def leaderboard(reports_dir, output):
    """Rebuild the static HTML leaderboard from every run under REPORTS_DIR.

    \b
    Example:
      kdbench leaderboard reports/ -o leaderboards/
    """
    from kdbench.report.leaderboard import build

    if not Path(reports_dir).is_dir():
        raise KdbenchError(f"reports folder {reports_dir} does not exist")
    click.echo(build(Path(reports_dir), Path(output)))


@main.command()
@_user_errors
def suites():
    """List the suites under suites/ and their tasks.

    \b
    Example:
      kdbench suites
    """
    from kdbench.config import SUITES_DIR, load_suite

    for path in sorted(SUITES_DIR.glob("*.yaml")):
        cfg = load_suite(str(path))
        click.echo(f"{cfg.name:<14} tasks: {', '.join(cfg.tasks):<20} {cfg.description}")


@main.command()
@click.option("--include-path", multiple=True, type=click.Path(file_okay=False), help="Folder of extra task YAML files.")
@_user_errors
def tasks(include_path):
    """List the registered tasks: name, family, dataset, metrics.

    \b
    Example:
      kdbench tasks --include-path my_tasks/
    """
    from kdbench.tasks import list_tasks

    for spec in list_tasks(include_path):
        d = spec.dataset
        click.echo(f"{spec.name:<10} {spec.family:<8} {d.id}/{d.config or 'default'}:{d.eval_split:<12} "
                   f"{', '.join(spec.metrics + spec.pair_metrics)}")
