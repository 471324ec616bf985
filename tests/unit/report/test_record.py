import copy
import json

import pytest

from kdbench.errors import KdbenchError
from kdbench.report.record import dumps, read_record, validate_record
from tests.helpers.record import RECORD


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
