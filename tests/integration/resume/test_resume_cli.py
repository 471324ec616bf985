"""`kdbench train-and-eval --resume`: a real run killed (SIGKILL) while its student trains is
resumed from its staging folder and ends with the same student and baseline weights as an
uninterrupted run; misuse of --resume is a one-line error."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.cli import run_kdbench

ARGS = ["--train-rows", "64", "--eval-rows", "32", "--layers", "0", "--epochs", "1", "--set", "distill.batch_size=8",
        "--set", "distill.checkpoint_every=2", "--set", "teacher.finetune.epochs=0.25", "--set", "eval.efficiency=false"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_models(tmp_path, data_dir):
    env = {**os.environ, "KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    ref = run_kdbench("train-and-eval", *ARGS, "--reports-dir", tmp_path / "a", "--leaderboard-dir", tmp_path / "lb",
                      env={"KDBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen([sys.executable, "-m", "kdbench", "train-and-eval", *ARGS, "--reports-dir", str(tmp_path / "b"),
                             "--leaderboard-dir", str(tmp_path / "lb")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not list((tmp_path / "b").glob(".*.partial/checkpoints/sst2/train-student-on-sst2/latest.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the student's first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (staging,) = (tmp_path / "b").glob(".*.partial")
    latest = json.loads((staging / "checkpoints/sst2/train-student-on-sst2/latest.json").read_text())
    assert latest["step"] < 8  # killed mid-training (8 steps)

    # from another folder, with no folders named: the run's own reports and leaderboard folders
    resumed = subprocess.run([sys.executable, "-m", "kdbench", "train-and-eval", "--resume", str(staging)], env=env,
                             cwd=tmp_path / "b", capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not staging.exists()
    (a,), (b,) = (tmp_path / "a").glob("2*"), (tmp_path / "b").glob("2*")
    assert (tmp_path / "lb" / "runs" / f"{b.name}.html").is_file() and not (tmp_path / "b" / "leaderboards").exists()
    assert b.name == staging.name[1:-len(".partial")] and not (b / "checkpoints").exists()
    for role in ("student", "baseline"):
        wa, wb = (load_file(str(d / "models/sst2" / role / "model.safetensors")) for d in (a, b))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), role
    record = json.loads((b / "report.json").read_text())
    assert record["models"]["student"]["training"] == {"batch_size": 8, "grad_accum_steps": 1, "effective_batch_size": 8}


def test_resume_takes_no_other_options_and_needs_a_staging_folder(tmp_path):
    staging = tmp_path / ".20260101-000000-quickstart-abcdef.partial"
    staging.mkdir()
    proc = run_kdbench("train-and-eval", "--resume", staging, "--epochs", "2")
    assert proc.returncode == 2 and "drop ['--epochs']" in proc.stderr
    proc = run_kdbench("train-and-eval", "--resume", staging)
    assert proc.returncode == 2 and "not an interrupted run folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _staging_with_resume_state(tmp_path, text: str | None = None):
    from kdbench.config import load_suite

    staging = tmp_path / "reports" / ".20260101-000000-quickstart-abcdef.partial"
    staging.mkdir(parents=True)
    suite = load_suite("quickstart", ["data.train_rows=16", "data.eval_rows=8", "eval.efficiency=false"])
    (staging / "resume.json").write_text(text if text is not None else json.dumps(
        {"suite": suite.model_dump(mode="json"), "include_paths": [], "leaderboard_dir": str(tmp_path / "lb")}))
    return staging


def _cli(*args):
    from click.testing import CliRunner

    from kdbench.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("text", ["{", "[]", '{"suite": {"name": "x"}}', '{"include_paths": []}', "\xff"])
def test_a_corrupt_resume_state_is_one_line(tmp_path, text):
    staging = _staging_with_resume_state(tmp_path, text)
    proc = _cli("train-and-eval", "--resume", staging)
    assert proc.exit_code == 2 and "resume.json cannot be used" in proc.stderr, proc.output[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and staging.is_dir()


def test_a_run_killed_after_its_record_was_written_is_completed(tmp_path, monkeypatch):
    """The window between dropping the checkpoints and the rename: the staging folder holds the
    whole run (the record is written last); --resume renames it into place, nothing is redone, and
    the leaderboard is the run's own (resume.json), not ./leaderboards."""
    from tests.helpers.reports import make_run

    staging = _staging_with_resume_state(tmp_path)
    done = make_run(tmp_path / "made", "20260101-000000-quickstart-abcdef")
    for f in done.iterdir():
        f.rename(staging / f.name)
    record = (staging / "report.json").read_text()
    monkeypatch.chdir(tmp_path)
    proc = _cli("train-and-eval", "--resume", staging)
    assert proc.exit_code == 0, proc.output[-2000:]
    final = tmp_path / "reports" / "20260101-000000-quickstart-abcdef"
    assert not staging.exists() and (final / "report.json").read_text() == record
    assert sorted(p.name for p in final.iterdir()) == ["report.json", "samples.parquet"]
    assert (tmp_path / "lb" / "runs" / f"{final.name}.html").is_file() and not (tmp_path / "leaderboards").exists()


def test_resume_names_the_options_it_does_not_take(tmp_path):
    staging = _staging_with_resume_state(tmp_path)
    for args in (["--reports-dir", "x"], ["--leaderboard-dir", "x"], ["--suite", "quickstart"]):
        proc = _cli("train-and-eval", "--resume", staging, *args)
        assert proc.exit_code == 2 and args[0] in proc.stderr, proc.output


KILL_AT_RENAME = """
import os, sys
real = os.replace
def replace(src, dst, *a, **k):
    if str(src).endswith(".partial"):  # the run folder's final rename: die as kill -9 would
        os._exit(137)
    return real(src, dst, *a, **k)
os.replace = replace
from kdbench.cli import main
sys.argv = ["kdbench", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_killed_at_the_final_rename_resumes(tmp_path, data_dir):
    args = ["train-and-eval", "--train-rows", "32", "--eval-rows", "16", "--layers", "0", "--epochs", "0.5",
            "--set", "teacher.finetune.epochs=0.5", "--set", "eval.efficiency=false", "--set", "baseline=false",
            "--reports-dir", str(tmp_path / "reports"), "--leaderboard-dir", str(tmp_path / "lb")]
    env = {**os.environ, "KDBENCH_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, *args], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 137, proc.stderr[-2000:]
    (staging,) = (tmp_path / "reports").glob(".*.partial")
    assert (staging / "report.json").is_file() and not (staging / "checkpoints").exists()
    resumed = run_kdbench("train-and-eval", "--resume", staging, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = tmp_path / "reports" / staging.name[1:-len(".partial")]
    assert not staging.exists() and (final / "models" / "sst2" / "student").is_dir()
    assert not (final / "resume.json").exists() and not (final / ".lock").exists()
    assert (tmp_path / "lb" / "runs" / f"{final.name}.html").is_file()
