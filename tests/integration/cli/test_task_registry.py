"""The task registry: built-ins, external folders that add or override tasks, one-line errors."""
from __future__ import annotations

import pytest

from kdbench.errors import KdbenchError
from kdbench.tasks import get_task, list_tasks
from tests.helpers.cli import run_kdbench

AG_NEWS = """\
name: ag_news_topics
family: classification
description: "AG News topic of a news article (a user's own task, from outside the package)."
dataset:
  id: fancyzhx/ag_news
  config: default
  train_split: null
  eval_split: test
columns:
  text: text
label_names: [world, sports, business, sci_tech]
metrics: [accuracy, ece]
main_score: accuracy
pair_metrics: [label_loyalty, top_k_overlap]
"""


def test_include_path_adds_a_task_and_overrides_a_builtin(tmp_path, data_dir):
    (tmp_path / "ag.yaml").write_text(AG_NEWS)
    sst2 = (get_task("sst2").spec.model_dump(mode="json"))
    sst2["description"] = "my own SST-2"
    import yaml

    (tmp_path / "sst2.yaml").write_text(yaml.safe_dump(sst2))
    assert get_task("sst2", [tmp_path]).spec.description == "my own SST-2"
    task = get_task("ag_news_topics", [tmp_path])
    data = task.eval_data(rows=20)
    assert task.num_labels == 4 and len(task.labels(data)) == 20
    assert set(task.labels(data)) <= {0, 1, 2, 3}
    listed = run_kdbench("tasks", "--include-path", tmp_path)
    assert listed.returncode == 0 and "ag_news_topics" in listed.stdout
    with pytest.raises(KdbenchError, match="unknown task 'ag_news_topics'"):
        get_task("ag_news_topics")


@pytest.mark.parametrize("text, message", [
    ("family: nope\n", r"bad.yaml:1: key 'family': unknown family 'nope'"),
    (AG_NEWS.replace("metrics: [accuracy, ece]", "metrics: [accuracy, eec]"),
     r"bad.yaml:12: key 'metrics.1': unknown classifier metric 'eec'; did you mean 'ece'\?"),
    (AG_NEWS.replace("main_score: accuracy", "main_score: f1"),
     r"bad.yaml:13: key 'main_score': 'f1' is not one of the task's metrics \(accuracy, ece\)"),
    (AG_NEWS.replace("  text: text", "  txt: text"), r"bad.yaml:9: key 'columns.text': Field required"),
])
def test_malformed_task_file_names_file_line_and_key(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(KdbenchError, match=message):
        list_tasks([tmp_path])
    proc = run_kdbench("tasks", "--include-path", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"kdbench: error: {proc.stderr.strip().split('error: ', 1)[1]}"]
