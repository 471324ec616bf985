"""The metric registry: the generic Registry (templates, did-you-mean, discovery), `kdbench
metrics`, the reference pages of docs/ (metrics, losses, tasks, suites) generated from the registries, every built-in task's names resolving, and a new
metric added as one file that then appears in the listing, the docs, the task checks and the gate."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from kdbench import reference
from kdbench.cli import main
from kdbench.errors import KdbenchError
from kdbench.metrics.spec import KINDS, all_metrics, kind
from kdbench.registry import Registry
from kdbench.tasks import list_tasks
from tests.helpers import ROOT


def test_registry_templates_exact_names_first_and_did_you_mean():
    r: Registry[int] = Registry("widget")
    r.add("ndcg_at_{k}", 1)
    r.add("ndcg_at_best", 2)
    assert r.find("ndcg_at_10") == (1, {"k": "10"}) and r.find("ndcg_at_best") == (2, {})
    assert r.find("mrr_at_10") is None
    with pytest.raises(ValueError, match="registered twice"):
        r.add("ndcg_at_best", 3)
    with pytest.raises(KdbenchError, match=r"^task x: unknown widget 'ndgc_at_best'; did you mean 'ndcg_at_best'"):
        r.get("ndgc_at_best", "task x")


def test_every_metric_has_a_complete_spec():
    specs = all_metrics()
    assert len(specs) >= 40
    for spec in specs:
        assert spec.formula and spec.per_unit and spec.kind in KINDS, spec.name
        assert spec.values is not None or spec.point is not None, spec.name
        if spec.higher_is_better is not None and spec.template != "{metric}":
            assert spec.gated, spec.name  # anything with a direction has a paired test
    assert kind("classifier").metric("ts_temperature").gated is False


def test_builtin_tasks_name_registered_metrics_and_a_main_score():
    for spec in list_tasks():
        assert spec.main_score in spec.metrics, spec.name


def test_kdbench_metrics_lists_the_registry_and_names_a_wrong_kind():
    out = CliRunner().invoke(main, ["metrics"])
    assert out.exit_code == 0
    for spec in all_metrics():
        assert any(line.startswith(spec.name + " ") for line in out.stdout.splitlines()), spec.name
    ner = CliRunner().invoke(main, ["metrics", "--kind", "ner"]).stdout
    names = [line.split()[0] for line in ner.splitlines()[1:] if not line.startswith(" ")]
    assert "f1_{type}" in names and "accuracy" not in names
    bad = CliRunner().invoke(main, ["metrics", "--kind", "nerr"])
    assert bad.exit_code == 2 and "did you mean 'ner'" in bad.stderr


@pytest.mark.parametrize("page", sorted(reference.PAGES))
def test_docs_reference_pages_are_generated_from_the_registries(page):
    """docs/{losses,tasks,suites,metrics}.md are what `kdbench CMD --markdown` prints (`make docs`)."""
    command = Path(page).stem
    out = CliRunner().invoke(main, [command, "--markdown"])
    assert out.exit_code == 0 and out.stdout == reference.PAGES[page](), out.output
    path = ROOT / page
    assert path.exists() and path.read_text() == out.stdout, f"{page} is out of date: run `make docs`"


NEW_METRIC = '''
from kdbench.metrics.spec import metric


@metric("error_rate", "classifier", higher_is_better=False, percent=True, binary=True, per_unit="1 − c_i")
def error_rate(ctx):
    """(1/N) Σ_i (1 − c_i): the share of examples whose most probable class is not the gold one."""
    return 1.0 - ctx.correct
'''

DRIVER = '''
import json, sys
from pathlib import Path
import kdbench.metrics
kdbench.metrics.__path__.append(sys.argv[1])  # as if error_rate.py were a new file in kdbench/metrics/
import tests.helpers.reports as report_helpers
from click.testing import CliRunner
from kdbench import gate
from kdbench import reference
from kdbench.cli import main
from kdbench.metrics import docs
from kdbench.tasks.registry import load_spec

report_helpers.METRICS.append("error_rate")
base = report_helpers.make_run(sys.argv[2], "base")
worse = report_helpers.make_run(sys.argv[2], "worse", seed=2, accuracies={"teacher": 0.9, "student": 0.65})
check = next(c for c in gate.run_gate(base, worse).checks if (c.model, c.metric) == ("student", "error_rate"))
print(json.dumps({
    "listing": CliRunner().invoke(main, ["metrics", "--kind", "classifier"]).stdout,
    "docs": docs.markdown(),
    "task": load_spec(Path(sys.argv[3])).metrics,
    "check": [check.verdict, check.test, check.higher_is_better, check.baseline],
}))
'''


def test_a_new_metric_is_one_file(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "error_rate.py").write_text(NEW_METRIC)
    task = tmp_path / "ag.yaml"
    task.write_text(textwrap.dedent("""\
        name: ag_news_topics
        family: classification
        dataset: {id: fancyzhx/ag_news, config: default, train_split: null, eval_split: test}
        columns: {text: text}
        label_names: [world, sports, business, sci_tech]
        metrics: [accuracy, error_rate]
        main_score: error_rate
        """))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(plugin), str(tmp_path / "runs"), str(task)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert any(line.startswith("error_rate ") and "exact McNemar" in line for line in out["listing"].splitlines())
    assert "| **error_rate** | lower ↓ | % | 1 − c_i | exact McNemar |" in out["docs"]
    assert out["task"] == ["accuracy", "error_rate"]
    verdict, test, higher, baseline = out["check"]
    assert verdict == "regression" and test.startswith("exact McNemar") and higher is False and 0 < baseline < 0.3
