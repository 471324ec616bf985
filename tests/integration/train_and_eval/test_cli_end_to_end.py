"""The quickstart slice through the real CLI on a small slice of SST-2 with the real MiniLM."""
from __future__ import annotations

import pandas as pd
import pytest

from kdbench.report.record import read_record
from tests.helpers.cli import SMALL, run_kdbench

kdbench = run_kdbench


@pytest.mark.slow
def test_run_writes_a_valid_record_samples_and_html(small_runs):
    run, first = small_runs["first"], small_runs["procs"]["first"]
    record = read_record(run)  # validates against the JSON Schema
    assert set(record["results"]["sst2"]) == {"teacher", "student", "baseline"}
    assert record["datasets"]["sst2"]["rows"] == 300
    assert record["models"]["student"]["layer_map"] == [0, 5]
    assert record["models"]["student"]["params"] < record["models"]["teacher"]["params"]
    for role in ("teacher", "student", "baseline"):
        acc = record["results"]["sst2"][role]["accuracy"]
        assert acc["ci"][0] <= acc["value"] <= acc["ci"][1]
        eff = record["efficiency"][role]
        assert eff["latency_ms_b1"] > 0 and eff["throughput_eps"] > 0 and eff["peak_rss_mb"] > 100
    samples = pd.read_parquet(run / "samples.parquet")
    assert list(samples.columns) == ["task", "example_id", "role", "label", "pred", "probs", "correct"]
    assert len(samples) == 3 * 300
    student = samples[samples.role == "student"]
    assert student["correct"].mean() == pytest.approx(record["results"]["sst2"]["student"]["accuracy"]["value"])
    html = (run / "report.html").read_text()
    assert "<svg" in html and "Reliability" in html and "KD student" in html
    assert "KD student" in first.stdout and "baseline (no KD)" in first.stdout


@pytest.mark.slow
def test_kd_student_is_more_loyal_than_the_baseline(small_runs):
    record = read_record(small_runs["first"])
    pairs = record["pairs"]["sst2"]
    kd = pairs["student|teacher"]["probability_loyalty"]["value"]
    base = pairs["baseline|teacher"]["probability_loyalty"]["value"]
    assert kd > base


@pytest.mark.slow
def test_second_run_reuses_the_cached_teacher(small_runs):
    first, second = read_record(small_runs["first"]), read_record(small_runs["rerun"])
    assert first["models"]["teacher"]["reused_from_cache"] is False
    assert second["models"]["teacher"]["reused_from_cache"] is True
    assert second["durations"]["sst2"]["teacher_finetune_s"] == 0.0
    assert second["models"]["teacher"]["train_logits_reused"] is True
    # the same seed on the same cached teacher and logits: the whole run is reproduced exactly
    assert second["results"]["sst2"] == first["results"]["sst2"]
    index = (small_runs["root"] / "leaderboards" / "index.html").read_text()
    assert first["run_id"] in index and second["run_id"] in index


def _one_line_error(proc):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdbench: error:"), proc.stderr
    return lines[0]


def test_unknown_suite_exits_2_with_one_line(tmp_path):
    line = _one_line_error(kdbench("train-and-eval", "--suite", "nope", "--reports-dir", str(tmp_path)))
    assert "unknown suite 'nope'" in line


def test_missing_data_file_exits_2_and_writes_nothing(tmp_path):
    empty = tmp_path / "mirror"
    (empty / "nyu-mll/glue/sst2").mkdir(parents=True)
    (empty / "nyu-mll/glue/sst2/validation.jsonl").write_text("")
    proc = kdbench("train-and-eval", *SMALL, "--reports-dir", str(tmp_path / "reports"),
                   env={"KDBENCH_DATA_DIR": str(empty)})
    assert "no split 'train'" in _one_line_error(proc)
    assert not (tmp_path / "reports").exists()  # found by the pre-flight, before any folder exists


def test_unloadable_model_exits_2_and_writes_nothing(tmp_path, data_dir):
    proc = kdbench("train-and-eval", *SMALL, "--teacher", "nobody/no-such-model", "--reports-dir",
                   str(tmp_path / "reports"), env={"HF_HUB_OFFLINE": "1"})
    assert "model 'nobody/no-such-model'" in _one_line_error(proc)
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_a_small_quickstart_in_a_log_prints_fewer_than_300_lines(small_runs):
    # the CLI in a subprocess, stdout and stderr pipes: not a terminal, as in a CI job
    proc = small_runs["procs"]["first"]
    lines = (proc.stdout + proc.stderr).splitlines()  # "\r" redraws count as lines, as a CI log shows them
    assert len(lines) < 300, "\n".join(lines[:40])
    assert any(line.startswith("train student on sst2: 100%") for line in lines)  # progress is still shown
