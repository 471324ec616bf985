"""The library API (`kdbench.load_suite`, `kdbench.train_and_eval` / `kdbench.distill`, `kdbench.evaluate`)
on a real, smoke-sized quickstart run: typed results agree with the record the run wrote, and evaluating the
saved models again through the library gives the same scores."""
import json

import pytest

import kdbench
from kdbench.errors import KdbenchError
from kdbench.models.cache import finetuned_dir

pytestmark = pytest.mark.slow

SMOKE = ["data.train_rows=300", "data.eval_rows=120", "teacher.finetune.epochs=1", "distill.epochs=1",
         "eval.efficiency=false", "eval.bootstrap_samples=200"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    suite = kdbench.load_suite("quickstart", SMOKE)
    return kdbench.train_and_eval(suite, reports_dir=reports, leaderboard_dir=None), reports


def test_load_suite_applies_overrides_and_types_them():
    suite = kdbench.load_suite("quickstart", SMOKE)
    assert suite.data.train_rows == 300 and suite.data.eval_rows == 120
    assert suite.distill.epochs == 1 and suite.eval.efficiency is False
    with pytest.raises(KdbenchError, match="distill.epochz"):
        kdbench.load_suite("quickstart", ["distill.epochz=1"])


def test_train_and_eval_result_is_the_record_it_wrote(trained):
    result, reports = trained
    assert result.run_dir.parent == reports and result.leaderboard is None
    on_disk = json.loads((result.run_dir / "report.json").read_text())
    assert on_disk == result.record
    assert result.tasks == ["sst2"] and result.roles("sst2") == ["teacher", "student", "baseline"]
    accuracy = result.score("sst2", "student", "accuracy")
    entry = on_disk["results"]["sst2"]["student"]["accuracy"]
    assert accuracy.value == entry["value"] and accuracy.ci == tuple(entry["ci"])
    assert 0.0 <= accuracy.ci[0] <= accuracy.value <= accuracy.ci[1] <= 1.0
    assert set(result.scores("sst2", "teacher")) >= {"accuracy", "nll", "ece"}
    assert result.pair("sst2")["probability_loyalty"].value == \
        on_disk["pairs"]["sst2"]["student|teacher"]["probability_loyalty"]["value"]
    assert result.model("student")["params"] < result.model("teacher")["params"]
    with pytest.raises(KdbenchError, match="no metric 'acuracy'"):
        result.score("sst2", "student", "acuracy")
    with pytest.raises(KdbenchError, match="no results for task 'mnli'"):
        result.scores("mnli", "student")


def test_distill_calls_train_and_eval(monkeypatch):
    import kdbench.distill.run

    calls = []
    monkeypatch.setattr(kdbench.distill.run, "train_and_eval", lambda *a, **k: calls.append((a, k)) or "result")
    assert kdbench.distill("suite", reports_dir="r") == "result"
    assert calls == [(("suite",), {"reports_dir": "r"})]


def test_evaluate_the_saved_models_reproduces_their_scores(trained, tmp_path):
    result, _ = trained
    models = {role: str(result.run_dir / "models" / "sst2" / role) for role in ("student", "baseline")}
    # the fine-tuned teacher is not saved in the run folder: it is the model cache's entry the record names
    models["teacher"] = str(finetuned_dir(result.model("teacher", "sst2")["cache_key"]))
    scored = kdbench.evaluate(kdbench.load_suite("quickstart", SMOKE), models, reports_dir=tmp_path / "r",
                              leaderboard_dir=None)
    assert scored.run_dir.parent == tmp_path / "r"
    for role in ("teacher", "student", "baseline"):
        assert scored.score("sst2", role, "accuracy").value == result.score("sst2", role, "accuracy").value
