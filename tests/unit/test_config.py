import re

import pytest

from kdbench.config import SUITES_DIR, load_suite
from kdbench.errors import KdbenchError


def test_quickstart_suite_loads_with_its_documented_defaults():
    cfg = load_suite("quickstart")
    assert cfg.tasks == ["sst2"]
    assert cfg.teacher.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert cfg.student.layers == [0, 5]
    assert cfg.distill.loss == "forward_kl" and cfg.distill.t2_scaling
    assert cfg.data.train_rows == 8000 and cfg.data.eval_rows is None
    assert cfg.eval.ece_bins == 15


def test_overrides_reach_any_value_and_are_typed():
    cfg = load_suite("quickstart", ["distill.alpha=0.8", "student.layers=[1, 3, 5]", "data.eval_rows=null",
                                    "teacher.finetune.lr=3e-5"])
    assert cfg.distill.alpha == 0.8
    assert cfg.student.layers == [1, 3, 5]
    assert cfg.teacher.finetune.lr == 3e-5


def test_unknown_suite_lists_known_ones():
    with pytest.raises(KdbenchError, match=r"unknown suite 'nope' \(known: .*quickstart"):
        load_suite("nope")


def test_bad_value_names_file_line_and_key(tmp_path):
    path = tmp_path / "s.yaml"
    text = (SUITES_DIR / "quickstart.yaml").read_text()
    path.write_text(re.sub(r"alpha: [0-9.]+", "alpha: 1.5", text))
    with pytest.raises(KdbenchError) as e:
        load_suite(str(path))
    msg = str(e.value)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "alpha: 1.5" in text)
    assert f"{path}:{line}: key 'distill.alpha'" in msg and "\n" not in msg


def test_unknown_key_and_bad_override_are_errors(tmp_path):
    with pytest.raises(KdbenchError, match="distill.alfa"):
        load_suite("quickstart", ["distill.alfa=0.3"])
    with pytest.raises(KdbenchError, match="not KEY=VALUE"):
        load_suite("quickstart", ["distill.alpha"])
    with pytest.raises(KdbenchError, match="repeats a layer"):
        load_suite("quickstart", ["student.layers=[1, 1]"])


def test_every_shipped_suite_loads_with_its_per_task_settings():
    for path in SUITES_DIR.glob("*.yaml"):
        suite = load_suite(str(path))
        for task in suite.tasks:
            assert suite.for_task(task).tasks == suite.tasks


def test_per_task_overrides_merge_deeply_and_bad_ones_name_their_key(tmp_path):
    text = (SUITES_DIR / "quickstart.yaml").read_text().replace("tasks: [sst2]", "tasks: [sst2, cola]")
    good = tmp_path / "mixed.yaml"
    good.write_text(text + "per_task:\n  cola:\n    max_length: 32\n    distill:\n      alpha: 0.5\n")
    suite = load_suite(str(good))
    cola, sst2 = suite.for_task("cola"), suite.for_task("sst2")
    assert (cola.max_length, cola.distill.alpha, cola.distill.temperature) == (32, 0.5, 4.0)
    assert (sst2.max_length, sst2.distill.alpha) == (64, 0.9)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "per_task:\n  cola:\n    distill:\n      alpha: 7\n")
    with pytest.raises(KdbenchError, match=r"bad.yaml:\d+: key 'per_task.cola.distill.alpha'"):
        load_suite(str(bad))
    bad.write_text(text + "per_task:\n  rte:\n    max_length: 32\n")
    with pytest.raises(KdbenchError, match=r"key 'per_task.rte': 'rte' is not one of the suite's tasks"):
        load_suite(str(bad))
