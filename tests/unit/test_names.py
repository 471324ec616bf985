"""Names (task, suite, role, run id, baseline, capacity-gap teacher) are checked where they enter,
with the run-record schema's own pattern, and every path built from one stays under the folder the
user named: a bad name is one line, exit 2, before any work, and nothing is written anywhere."""
from __future__ import annotations

import copy
import json
import re

import pytest
from click.testing import CliRunner

from kdbench import names
from kdbench.cli import main
from kdbench.config import SUITES_DIR, load_suite
from kdbench.errors import KdbenchError
from kdbench.fsio import within
from kdbench.report.record import read_record, validate_record
from tests.helpers.reports import make_run

BAD = ["my suite", "süite", "it's", "<script>alert(1)</script>", "../../x", "..", ".hidden", "a/b", "-x", "",
       "x\n", "x" * 5000]
GOOD = ["sst2", "quickstart", "glue_all", "mnli-mismatched", "v1.2", "A9"]


@pytest.mark.parametrize("name", GOOD)
def test_valid_names(name):
    assert names.problem(name) is None and names.check(name) == name


@pytest.mark.parametrize("name", BAD)
def test_invalid_names_get_one_short_line(name):
    why = names.problem(name, "suite name")
    assert why and why.startswith("suite name ") and "\n" not in why and len(why) < 200


def test_the_pattern_is_the_schemas():
    schema = json.loads(names.SCHEMA_PATH.read_text())
    assert schema["properties"]["suite"] == {"$ref": "#/$defs/name"}
    assert names._rule()[0].pattern == schema["$defs"]["name_chars"]["pattern"]


@pytest.mark.parametrize("edit", [
    lambda r: r.update(suite="my suite"),
    lambda r: r.update(run_id="../x"),
    lambda r: r["results"].update({"../x": r["results"].pop("sst2")}),
    lambda r: r["results"]["sst2"].update({"a b": r["results"]["sst2"].pop("student")}),
    lambda r: r["models"].update({"<r>": r["models"].pop("student")}),
    lambda r: r["results"].update(sst2={}),  # schema-valid before: the leaderboard's StopIteration
    lambda r: r["results"]["sst2"].update(student={}),
])
def test_the_record_schema_refuses_what_the_entry_checks_refuse(tmp_path, edit):
    record = read_record(make_run(tmp_path, "run-a"))
    validate_record(copy.deepcopy(record))
    edit(record)
    with pytest.raises(KdbenchError, match="schema violation"):
        validate_record(record)


def test_within_refuses_every_escape(tmp_path):
    assert within(tmp_path, "models", "sst2", "student") == tmp_path / "models" / "sst2" / "student"
    for parts in (("..",), ("../x",), ("a", "../../x"), ("/etc/passwd",), (".",), ("",)):
        with pytest.raises(KdbenchError, match="outside"):
            within(tmp_path, *parts)


def test_slug_is_always_a_valid_distinct_name():
    texts = ["sentence-transformers/all-MiniLM-L6-v2", "./runs/teacher/", ".hidden", "x" * 300, "x" * 301, "a b", "a_b"]
    slugs = [names.slug(t) for t in texts]
    assert all(names.problem(s) is None for s in slugs) and len(set(slugs)) == len(slugs)
    assert names.slug("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdbench: error:") and "Traceback" not in result.output, lines
    for needle in needles:
        assert needle in lines[0], lines[0]


def _suite_file(tmp_path, **changes):
    text = (SUITES_DIR / "quickstart.yaml").read_text()
    for key, value in changes.items():
        text = re.sub(rf"^{key}:.*$", lambda _, key=key, value=value: f"{key}: {json.dumps(value, ensure_ascii=False)}", text, flags=re.M)
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["my suite", "süite", "it's", "<script>", "../../x", "x" * 5000])
@pytest.mark.parametrize("command", ["train-and-eval", "eval"])
def test_bad_suite_name_fails_before_any_work(tmp_path, name, command):
    suite = _suite_file(tmp_path, name=name)
    extra = ["--student", "sentence-transformers/paraphrase-MiniLM-L3-v2"] if command == "eval" else []
    result = _cli(command, "--suite", suite, *extra, "--reports-dir", tmp_path / "r", "--leaderboard-dir",
                  tmp_path / "lb", "--eval-rows", "8", "--set", "eval.efficiency=false")
    _one_line_exit_2(result, f"{suite}:", "key 'name'", "suite name")
    assert _files(tmp_path) == ["suite.yaml"]


def test_a_suite_name_is_not_a_path_out_of_suites():
    with pytest.raises(KdbenchError, match="unknown suite '../suites/quickstart'"):
        load_suite("../suites/quickstart")


def test_task_named_like_a_path_in_an_include_path_is_refused(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    spec = (names.SCHEMA_PATH.parent.parent / "tasks/builtin/sst2.yaml").read_text()
    (tasks / "escape.yaml").write_text(re.sub(r"^name:.*$", "name: ../../../../X", spec, flags=re.M))
    _one_line_exit_2(_cli("tasks", "--include-path", tasks), "escape.yaml", "key 'name'", "task name")
    suite = _suite_file(tmp_path, tasks=["sst2"])
    result = _cli("train-and-eval", "--suite", suite, "--include-path", tasks, "--reports-dir", tmp_path / "r",
                  "--leaderboard-dir", tmp_path / "lb", "--train-rows", "16", "--eval-rows", "8",
                  "--set", "eval.efficiency=false", "--set", "teacher.finetune.epochs=0.1", "--epochs", "0.1")
    _one_line_exit_2(result, "escape.yaml", "task name '../../../../X'")
    assert _files(tmp_path) == ["suite.yaml", "tasks", "tasks/escape.yaml"]
    # the suite cannot name such a task either
    suite = _suite_file(tmp_path, tasks=["../../../../X"])
    _one_line_exit_2(_cli("train-and-eval", "--suite", suite, "--reports-dir", tmp_path / "r"), "key 'tasks.0'")


@pytest.mark.parametrize("role", ["a b", "../x", "<b>", "x" * 100])
def test_eval_model_role_is_a_name(tmp_path, role):
    result = _cli("eval", "--suite", "quickstart", "--model", f"{role}=sentence-transformers/paraphrase-MiniLM-L3-v2",
                  "--reports-dir", tmp_path / "r", "--leaderboard-dir", tmp_path / "lb")
    _one_line_exit_2(result, "--model", "role")
    assert _files(tmp_path) == []


def test_library_evaluate_checks_roles_too(tmp_path):
    from kdbench.pipeline import evaluate

    with pytest.raises(KdbenchError, match="role '../x'"):
        evaluate(load_suite("quickstart"), {"../x": "m"}, reports_dir=tmp_path / "r", leaderboard_dir=None)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("name", ["../x", "a b", ".x"])
def test_baseline_name_is_a_name(tmp_path, name):
    make_run(tmp_path / "reports", "run-a")
    result = _cli("baseline", "promote", tmp_path / "reports" / "run-a", "--name", name,
                  "--baselines-dir", tmp_path / "b")
    _one_line_exit_2(result, "--name", "baseline name")
    assert not (tmp_path / "b").exists()


def test_promote_by_run_id_stays_in_the_reports_folder(tmp_path):
    make_run(tmp_path / "elsewhere", "run-a")
    (tmp_path / "reports").mkdir()
    result = _cli("baseline", "promote", "../elsewhere/run-a", "--name", "ok", "--reports-dir", tmp_path / "reports",
                  "--baselines-dir", tmp_path / "b")
    assert result.exit_code == 2 and not (tmp_path / "b").exists()


def test_resume_folder_must_be_named_like_a_run(tmp_path):
    staging = tmp_path / ". bad name.partial"
    staging.mkdir()
    (staging / "resume.json").write_text("{}")
    _one_line_exit_2(_cli("train-and-eval", "--resume", staging), "not an interrupted run folder")


def test_capacity_gap_point_folders_are_names():
    from kdbench.sweeps.capacity_gap import Point, Teacher

    for model in ("./runs/teacher/", "..", "x" * 300, "models/.hidden"):
        teacher = Teacher(model, 2)
        assert names.problem(teacher.slug) is None
        assert names.problem(Point(teacher, 10 ** 30, {}).name) is None
