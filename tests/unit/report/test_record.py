import copy
import json

import pytest

from kdbench.errors import KdbenchError
from kdbench.report.record import dumps, read_record, validate_record

RECORD = {
    "schema_version": 1, "kdbench_version": "0.1.0", "git_hash": None, "run_id": "20260101-000000-quickstart-abc123",
    "created": "2026-01-01T00:00:00+00:00", "suite": "quickstart", "config": {"eval": {"ece_bins": 15}},
    "environment": {"dtype": "bf16"}, "seeds": [0],
    "models": {"teacher": {"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "abc", "params": 22713986},
               "student": {"id": "models/sst2/student", "revision": None, "params": 15616130}},
    "datasets": {"sst2": {"id": "nyu-mll/glue", "config": "sst2", "split": "validation", "rows": 872,
                          "sha256": "0" * 64}},
    "results": {"sst2": {"teacher": {"accuracy": {"value": 0.87, "ci": [0.85, 0.89]}},
                         "student": {"accuracy": {"value": 0.82, "ci": [0.80, 0.85]}}}},
    "pairs": {"sst2": {"student|teacher": {"probability_loyalty": {"value": 0.8, "ci": None}}}},
    "efficiency": {"teacher": {"params": 22713986, "latency_ms_b1": 4.0, "latency_ms_b32": 0.5,
                               "throughput_eps": 2000.0, "peak_rss_mb": 700.0}},
}


def test_round_trip(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(dumps(RECORD))
    assert read_record(path) == RECORD
    assert read_record(tmp_path) == RECORD  # a run folder works too


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.pop("pairs"), "'pairs' is a required property"),
    (lambda r: r["results"]["sst2"]["teacher"].update(Accuracy={"value": 1.0, "ci": None}), "results/sst2/teacher"),
    (lambda r: r["models"]["teacher"].update(params=-1), "models/teacher/params"),
    (lambda r: r["pairs"]["sst2"].update({"student-teacher": {}}), "pairs/sst2"),
    (lambda r: r["results"]["sst2"]["student"]["accuracy"].update(value=float("nan")), "not a finite number"),
])
def test_invalid_records_are_rejected_with_the_place(mutate, match):
    bad = copy.deepcopy(RECORD)
    mutate(bad)
    with pytest.raises(KdbenchError, match=match):
        validate_record(bad)


def test_reading_another_schema_version_is_an_error(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({**RECORD, "schema_version": 2}))
    with pytest.raises(KdbenchError, match="schema_version 2"):
        read_record(path)
