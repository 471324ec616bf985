"""kdbench capacity-gap: plan parsing and bad input (fast), and a tiny real grid: two students (the first
1 and 2 layers of all-MiniLM-L6-v2) × two truncations of it as teachers × two seeds: each teacher
fine-tuned once, each student's baseline trained once per seed, the verdicts and the fit in the curve
record, the grid on the leaderboard, and an interrupted sweep resumed without recomputing its
finished points (slow). The statistics on constructed outcomes: tests/unit/sweeps/test_capacity_law.py."""
from __future__ import annotations

import json

import pytest

from kdbench.errors import KdbenchError
from kdbench.sweeps import capacity_gap as sweep
from tests.helpers.capacity_gap import MINILM


def test_teacher_and_seed_parsing():
    teachers = sweep.parse_teachers("a/b", (f"{MINILM}:1, 2",))
    assert [(t.model, t.layers) for t in teachers] == [("a/b", None), (MINILM, 1), (MINILM, 2)]
    assert [t.slug for t in teachers] == ["b", "all-MiniLM-L6-v2-L1", "all-MiniLM-L6-v2-L2"]
    for bad in (f"{MINILM}:1,x", f"{MINILM}:", "1,2", f"{MINILM}:0,2"):
        with pytest.raises(KdbenchError, match="is not MODEL:K1,K2"):
            sweep.parse_teachers(None, (bad,))
    with pytest.raises(KdbenchError, match="named twice"):
        sweep.parse_teachers(f"{MINILM},{MINILM}")
    assert sweep.parse_seeds("0,1,2") == [0, 1, 2]
    with pytest.raises(KdbenchError, match="--seeds"):
        sweep.parse_seeds("0,a")
    assert sweep.student_override("config:num_hidden_layers=1") == [
        'student={"builder": "config", "config": {"num_hidden_layers": 1}}']
    with pytest.raises(KdbenchError, match="config:KEY=VALUE"):
        sweep.student_override("config:num_hidden_layers")


def test_student_parsing():
    students = sweep.parse_students(None, "a/b,config:num_hidden_layers=1,intermediate_size=64", (f"{MINILM}:1,2",))
    assert [s.label for s in students] == ["a/b", "config:num_hidden_layers=1,intermediate_size=64",
                                           f"{MINILM}@L1", f"{MINILM}@L2"]
    assert [json.loads(s.section) for s in students] == [
        {"builder": "pretrained", "model": "a/b"},
        {"builder": "config", "config": {"num_hidden_layers": 1, "intermediate_size": 64}},
        {"builder": "layer_selection", "model": MINILM, "layers": [0]},
        {"builder": "layer_selection", "model": MINILM, "layers": [0, 1]}]
    assert students[2].slug == "all-MiniLM-L6-v2-L1"
    assert sweep.parse_students(None) == []  # the suite's own student
    assert [s.label for s in sweep.parse_students("a/b")] == ["a/b"]
    with pytest.raises(KdbenchError, match="a student is named twice"):
        sweep.parse_students(None, "a/b,x/b")  # two folders named b would share the points' folders
    with pytest.raises(KdbenchError, match="a student is named twice"):
        sweep.parse_students(None, f"{MINILM}", (f"{MINILM}:1,1",))
    with pytest.raises(KdbenchError, match="--student-layers 'm:0' is not MODEL:K1,K2"):
        sweep.parse_students(None, None, ("m:0",))
    with pytest.raises(KdbenchError, match="--student names one student"):
        sweep.parse_students("a/b", "c/d")
