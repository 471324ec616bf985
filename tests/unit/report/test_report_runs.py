"""``kdbench.report.load_runs`` and the comparability rules, on synthetic runs."""
from __future__ import annotations

import json
import warnings

import pytest

from kdbench.errors import KdbenchError
from kdbench.fsio import write_atomic
from kdbench.report import ComparabilityWarning, compare, load_runs
from kdbench.report.record import read_record, samples_path, write_record
from tests.helpers.reports import make_run


@pytest.fixture()
def reports(tmp_path):
    root = tmp_path / "reports"
    make_run(root, "run-a", created="2026-01-01T00:00:00+00:00")
    make_run(root, "run-b", seed=3, created="2026-01-02T00:00:00+00:00")
    return root


def test_one_row_per_run_task_role_metric(reports):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all comparable: no warning
        df = load_runs(reports)
    assert not df.duplicated(["run_id", "task", "role", "metric"]).any()
    record = read_record(reports / "run-a")
    n_metrics = sum(len(ms) for ms in record["results"]["sst2"].values()) + sum(
        len(ms) for ms in record["pairs"]["sst2"].values())
    assert len(df) == 2 * n_metrics
    row = df[(df.run_id == "run-a") & (df.role == "student") & (df.metric == "accuracy")].iloc[0]
    acc = record["results"]["sst2"]["student"]["accuracy"]
    assert (row.value, row.ci_low, row.ci_high) == (acc["value"], *acc["ci"])
    assert row.kind == "result" and row.method == "kd (forward_kl)" and row.params == 15_616_130
    assert row.teacher == "sentence-transformers/all-MiniLM-L6-v2" and row.data_rows == 400
    pair = df[(df.kind == "pair") & (df.metric == "probability_loyalty")]
    assert set(pair.role) == {"student|teacher"}
    ts = df[df.metric == "ts_temperature"]
    assert ts.ci_low.isna().all()  # a null CI stays missing
    assert df["comparable"].all() and (df["comparability_note"] == "").all()
    assert str(df["created"].dtype).startswith("datetime64")


def test_not_comparable_runs_are_flagged_and_warned(reports):
    make_run(reports, "run-c", data_seed=5, created="2026-01-03T00:00:00+00:00")
    with pytest.warns(ComparabilityWarning, match="run-c: sst2: evaluation data differ"):
        df = load_runs(reports)
    assert set(df[~df.comparable].run_id) == {"run-c"}
    assert df[df.run_id == "run-c"].comparability_note.str.contains("data-hash mismatch").all()
    assert df.attrs["comparability"] and "run-c" in df.attrs["comparability"][0]


def test_reference_is_the_majority_then_the_newest(tmp_path):
    a = json.loads(json.dumps(read_record(make_run(tmp_path, "a", created="2026-01-01T00:00:00+00:00"))))
    b = read_record(make_run(tmp_path, "b", data_seed=1, created="2026-01-02T00:00:00+00:00"))
    assert compare.reference_keys([a, b])["sst2"] == compare.key(b, "sst2")  # a tie: the newest
    c = read_record(make_run(tmp_path, "c", created="2026-01-03T00:00:00+00:00"))
    assert compare.reference_keys([a, b, c])["sst2"] == compare.key(a, "sst2")  # the majority


def test_what_is_and_is_not_part_of_the_task_configuration(tmp_path):
    a = read_record(make_run(tmp_path, "a"))
    b = json.loads(json.dumps(a))
    b["config"]["task_specs"]["sst2"]["metrics"] = ["accuracy"]  # metric lists: not part of it
    b["config"]["task_specs"]["sst2"]["description"] = "other words"
    b["config"]["data"] = {"train_rows": 10}  # training: not part of it
    assert compare.reason(a, b, "sst2") is None and compare.key(a, "sst2") == compare.key(b, "sst2")
    b["config"]["max_length"] = 128
    assert compare.reason(a, b, "sst2") == "sst2: task configuration differs at max_length (64 vs 128)"
    b["config"]["max_length"] = 64
    b["config"]["task_specs"]["sst2"]["columns"]["text"] = "text"
    assert "task.columns.text" in compare.reason(a, b, "sst2")


def test_unreadable_records_are_skipped_with_a_warning_or_raise_when_strict(reports):
    (reports / "broken").mkdir()
    (reports / "broken" / "report.json").write_text("[]")
    with pytest.warns(UserWarning, match="not a run record"):
        df = load_runs(reports)
    assert df.run_id.nunique() == 2 and df.attrs["skipped"]
    with pytest.raises(KdbenchError, match="not a run record"):
        load_runs(reports, strict=True)
    with pytest.raises(KdbenchError, match="does not exist"):
        load_runs(reports / "nope")


def test_atomic_writes_leave_no_temporary_files_and_validate(tmp_path, reports):
    record = read_record(reports / "run-a")
    (tmp_path / "out").mkdir()
    path = write_record(tmp_path / "out", record)  # a folder gets report.json
    assert path == tmp_path / "out" / "report.json" and read_record(path) == record
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.json"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)
    bad = {**record, "results": {"sst2": {"student": {"accuracy": {"value": float("nan"), "ci": None}}}}}
    with pytest.raises(KdbenchError, match="not a finite number"):
        write_record(path, bad)
    assert read_record(path) == record  # the old file is intact
    write_atomic(tmp_path / "x.txt", "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"


def test_samples_path_convention(tmp_path):
    assert samples_path(tmp_path / "r" / "report.json") == tmp_path / "r" / "samples.parquet"
    assert samples_path(tmp_path / "baselines" / "quickstart.json") == tmp_path / "baselines" / "quickstart.samples.parquet"
