"""Sanity warnings, on run folders made from the pinned predictions of real runs: a teacher that
learnt nothing (the tiny WNUT-17 teacher tags everything O), a teacher no better than the no-KD
baseline, a KD student significantly worse than the baseline, and slices too small for a CI; in
the record, the HTML report and the terminal line."""
from __future__ import annotations

import pandas as pd
from pinned_runs import write_run
from report_helpers import make_run
from test_gate_families import _degrade

from kdbench.metrics.sanity import run_warnings
from kdbench.report import html
from kdbench.report.record import read_record


def _warnings(folder):
    record = read_record(folder)
    return record, run_warnings(record, pd.read_parquet(folder / "samples.parquet"))


def test_a_teacher_that_tags_everything_o_is_at_chance(tmp_path):
    record, found = _warnings(write_run("ner", tmp_path / "ner"))
    codes = {(w["task"], w["code"]) for w in found}
    assert ("wnut_17", "teacher_at_chance") in codes
    (w,) = [w for w in found if w["code"] == "teacher_at_chance"]
    assert "teacher's f1 0 is no better than a model that learnt nothing (0)" in w["message"]
    assert ("wnut_17", "teacher_not_better_than_baseline") in codes  # both tag everything O
    page = html.render_run({**record, "warnings": found}, pd.read_parquet(tmp_path / "ner" / "samples.parquet"))
    assert "Sanity warnings" in page and w["message"].replace("'", "&#39;") in page


def test_a_kd_student_significantly_worse_than_its_baseline(tmp_path):
    _, found = _warnings(write_run("glue", tmp_path / "glue", _degrade))
    worse = [w for w in found if w["code"] == "student_worse_than_baseline"]
    assert {w["task"] for w in worse} >= {"cola", "mrpc"}
    assert all("significantly worse than the no-KD baseline" in w["message"] and "p " in w["message"] for w in worse)
    small = [w for w in found if w["code"] == "small_slice"]
    assert any("96 examples is fewer than 20 per bin (15 bins, 300 in all) for ece" in w["message"] for w in small)


def test_a_sound_run_has_no_warnings_but_its_slice_sizes(tmp_path):
    run = make_run(tmp_path, "fine", n=400, accuracies={"teacher": 0.9, "student": 0.85})
    _, found = _warnings(run)
    assert found == []
    few = make_run(tmp_path, "few", n=20, accuracies={"teacher": 0.9, "student": 0.85})
    _, found = _warnings(few)
    assert {w["code"] for w in found} == {"small_slice"}
    assert any("under 30" in w["message"] and "accuracy" in w["message"] for w in found)
