"""Sanity warnings, on run folders made from the pinned predictions of real runs: a teacher that
learnt nothing (the tiny WNUT-17 teacher tags everything O), a teacher no better than the no-KD
baseline, a KD student significantly worse than the baseline, and slices too small for a CI; in
the record, the HTML report and the terminal line."""
from __future__ import annotations

import pandas as pd

from kdbench.metrics.sanity import run_warnings
from kdbench.report import html
from kdbench.report.record import read_record
from tests.helpers.pinned_runs import _degrade, write_run
from tests.helpers.reports import make_run


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


def _with_speculative(record: dict, dtype: str, identical: dict[str, int]) -> dict:
    """The record's speculative section as eval.speculative writes it (the counts of a real bf16 run of
    SmolLM2-135M-Instruct with an 8-of-30-layer student and an untrained one as drafts: 2 and 3 of 8)."""
    drafts = {draft: {"identical_rows": n, "rows": 8, "identical_outputs": n == 8, "speedup": 0.45}
              for draft, n in identical.items()}
    return {**record, "config": {**record["config"], "dtype": dtype},
            "speculative": {"gsm8k": {"target": "teacher", "engines": {"hf": {"drafts": drafts}}}}}


def test_speculative_decoding_that_was_not_lossless_is_named_with_its_likely_cause(tmp_path):
    record, _ = _warnings(make_run(tmp_path, "fine", n=400, accuracies={"teacher": 0.9, "student": 0.85}))
    samples = pd.read_parquet(tmp_path / "fine" / "samples.parquet")
    found = run_warnings(_with_speculative(record, "bf16", {"student": 2, "untrained": 3, "same": 8}), samples)
    spec = [w for w in found if w["code"] == "speculative_not_lossless"]
    assert [(w["task"], w["model"]) for w in spec] == [("gsm8k", "student"), ("gsm8k", "untrained")]
    assert "teacher's own greedy text on 2 of 8 prompts only" in spec[0]["message"]
    assert "expected in bf16" in spec[0]["message"] and "--dtype fp32" in spec[0]["message"]
    (exact,) = [w for w in run_warnings(_with_speculative(record, "fp32", {"student": 7}), samples)
                if w["code"] == "speculative_not_lossless"]
    assert "in fp32 that is a defect of the engine" in exact["message"]
    assert not [w for w in run_warnings(_with_speculative(record, "fp32", {"student": 8}), samples)
                if w["code"] == "speculative_not_lossless"]
