"""The regression gate on synthetic, self-consistent runs (fast): verdicts, tolerance, Markdown,
promotion, and exit 2 with one line for each kind of unusable input. The real-model cases
(a degraded student fails, a re-run passes) are in test_report_real_runs.py."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from kdbench import gate
from kdbench.cli import main
from kdbench.errors import KdbenchError
from tests.helpers.reports import edit_record, make_run


def cli(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    return {
        "base": make_run(root, "base", seed=0),
        "same": make_run(root, "same", seed=0, created="2026-01-02T00:00:00+00:00"),
        "noise": make_run(root, "noise", seed=1, created="2026-01-03T00:00:00+00:00"),
        "worse": make_run(root, "worse", seed=2, accuracies={"teacher": 0.9, "student": 0.65},
                          created="2026-01-04T00:00:00+00:00"),
        "root": root,
    }


def test_identical_runs_pass_with_p_one(runs):
    result = gate.run_gate(runs["base"], runs["same"])
    assert result.exit_code == 0
    assert all(c.p_value == 1.0 and c.delta == 0 for c in result.checks)
    assert {c.metric for c in result.checks} == {"accuracy", "ece", "brier", "nll", "ts_ece_after", "label_loyalty",
                                                 "probability_loyalty"}
    assert "ts_temperature" in " ".join(result.not_gated)


def test_a_much_worse_student_is_a_significant_regression(runs):
    result = gate.run_gate(runs["base"], runs["worse"])
    assert result.exit_code == 1
    acc = next(c for c in result.checks if (c.model, c.metric) == ("student", "accuracy"))
    assert acc.verdict == "regression" and acc.p_value < 1e-4 and acc.test.startswith("exact McNemar")
    assert acc.delta == pytest.approx(acc.candidate - acc.baseline) and acc.delta < -0.1
    assert acc.ci[0] <= acc.delta <= acc.ci[1]
    # the teacher is the same model on the same data: unchanged
    teacher = [c for c in result.checks if c.model == "teacher"]
    assert teacher and all(c.verdict == "unchanged" for c in teacher)


def test_tolerance_turns_a_small_significant_drop_into_a_pass(runs):
    result = gate.run_gate(runs["base"], runs["worse"])
    bad = result.regressions
    tolerances = {c.metric: abs(c.delta) + 0.001 for c in bad}
    relaxed = gate.run_gate(runs["base"], runs["worse"], tolerances)
    assert relaxed.exit_code == 0
    assert all(c.verdict == "worse, within tolerance" for c in relaxed.checks
               if (c.model, c.metric) in {(b.model, b.metric) for b in bad})


def test_noise_between_two_seeds_is_not_a_regression_on_accuracy(runs):
    result = gate.run_gate(runs["base"], runs["noise"], roles=["student"])
    assert {c.model for c in result.checks} == {"student", "student|teacher"}
    acc = next(c for c in result.checks if c.metric == "accuracy")
    assert acc.p_value > 0.05 and acc.verdict != "regression"


def test_markdown_is_a_table_fit_for_a_pr_comment(runs, tmp_path):
    out = tmp_path / "gate.md"
    proc = cli("gate", "--baseline", runs["base"] / "report.json", "--candidate", runs["worse"], "--markdown", out)
    assert proc.exit_code == 1, proc.output
    text = out.read_text()
    assert text == proc.stdout
    assert text.startswith("### kdbench gate: ❌ FAIL")
    header = next(line for line in text.splitlines() if line.startswith("| task |"))
    assert header.count("|") == 13
    rows = [line for line in text.splitlines() if line.startswith("| sst2 |")]
    assert rows[0].endswith("❌ regression |")  # regressions first
    assert all(line.count("|") - line.count("\\|") == 13 for line in rows)  # pipes in model keys are escaped
    assert "student\\|teacher" in text


def test_pass_exits_0(runs):
    proc = cli("gate", "--baseline", runs["base"], "--candidate", runs["same"] / "report.json")
    assert proc.exit_code == 0 and "✅ PASS" in proc.stdout


def test_markdown_cells_escape_html_and_pipes():
    assert gate._md("<script>a|b</script>") == "&lt;script&gt;a\\|b&lt;/script&gt;"


def test_promote_writes_record_and_samples_and_refuses_to_overwrite(runs, tmp_path):
    out = tmp_path / "baselines"
    proc = cli("baseline", "promote", runs["base"], "--name", "quick", "--baselines-dir", out)
    assert proc.exit_code == 0, proc.output
    record = json.loads((out / "quick.json").read_text())
    assert record["run_id"] == "base" and record["promoted"]["name"] == "quick"
    assert len(pd.read_parquet(out / "quick.samples.parquet")) == 800
    again = cli("baseline", "promote", runs["base"], "--name", "quick", "--baselines-dir", out)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert cli("baseline", "promote", runs["worse"], "--name", "quick", "--baselines-dir", out, "--force").exit_code == 0
    # a promoted baseline is gated like a run; a bare run id resolves under --reports-dir
    assert cli("gate", "--baseline", out / "quick.json", "--candidate", runs["worse"]).exit_code == 0
    assert cli("baseline", "promote", "same", "--name", "by-id", "--baselines-dir", out, "--reports-dir",
               runs["root"]).exit_code == 0


def test_promote_rejects_bad_names_and_runs_without_samples(runs, tmp_path):
    assert "baseline name" in cli("baseline", "promote", runs["base"], "--name", "../x", "--baselines-dir",
                                  tmp_path).stderr
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "report.json").write_text((runs["base"] / "report.json").read_text())
    proc = cli("baseline", "promote", lonely, "--name", "x", "--baselines-dir", tmp_path / "b")
    assert proc.exit_code == 2 and "missing samples" in proc.stderr


# --------------------------------------------------------------------------------------------------
# unusable input: exit 2, one line, and the reason in the --markdown file too
# --------------------------------------------------------------------------------------------------
def _copy(run_dir, dest):
    dest.mkdir()
    for f in run_dir.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def _drop_metric(r):
    del r["results"]["sst2"]["student"]["ece"]


def _nan_metric(r):
    r["results"]["sst2"]["student"]["brier"]["value"] = math.nan


def _schema_version(r):
    r["schema_version"] = 2


def _schema_violation(r):
    r["models"]["student"]["params"] = "many"


def _data_hash(r):
    r["datasets"]["sst2"]["sha256"] = "f" * 64


def _task_config(r):
    r["config"]["eval"]["ece_bins"] = 10


def _drop_role(r):
    del r["results"]["sst2"]["student"]


def _drop_task(r):
    r["results"]["mrpc"] = r["results"].pop("sst2")


def _nan_samples(run_dir):
    s = pd.read_parquet(run_dir / "samples.parquet")
    s.at[3, "probs"] = [math.nan, math.nan]
    s.to_parquet(run_dir / "samples.parquet", index=False)


def _missing_samples(run_dir):
    (run_dir / "samples.parquet").unlink()


def _samples_without_student(run_dir):
    s = pd.read_parquet(run_dir / "samples.parquet")
    s[s.role != "student"].to_parquet(run_dir / "samples.parquet", index=False)


def _samples_swapped(run_dir):
    s = pd.read_parquet(run_dir / "samples.parquet")
    s.loc[s.role == "student", "probs"] = s.loc[s.role == "teacher", "probs"].to_numpy()
    s.to_parquet(run_dir / "samples.parquet", index=False)


def _duplicate_example(run_dir):
    s = pd.read_parquet(run_dir / "samples.parquet")
    pd.concat([s, s.iloc[[0]]]).to_parquet(run_dir / "samples.parquet", index=False)


def _labels_differ(run_dir):
    s = pd.read_parquet(run_dir / "samples.parquet")
    s["label"] = 1 - s["label"]
    s.to_parquet(run_dir / "samples.parquet", index=False)


def _not_json(run_dir):
    (run_dir / "report.json").write_text("{nope")


@pytest.mark.parametrize("record_edit, files_edit, expected", [
    (_drop_metric, None, "candidate has no metric sst2/student/ece (missing metric"),
    (_nan_metric, None, "results.sst2.student.brier.value is not a finite number"),
    (_schema_version, None, "schema_version 2, this kdbench reads 1"),
    (_schema_violation, None, "schema violation at models/student/params"),
    (_data_hash, None, "data-hash mismatch"),
    (_task_config, None, "task configuration differs at eval.ece_bins (15 vs 10)"),
    (_drop_role, None, "candidate has no model 'student' on sst2"),
    (_drop_task, None, "candidate has no results for task 'sst2'"),
    (None, _nan_samples, "NaN or infinite probability in the samples"),
    (None, _missing_samples, "missing samples (no file"),
    (None, _samples_without_student, "missing samples for sst2/student"),
    (None, _samples_swapped, "samples do not match the record: sst2/student/"),
    (None, _not_json, "not valid JSON"),
    (None, _duplicate_example, "appears twice in the samples of sst2/"),
    (None, _labels_differ, "gold labels differ"),
], ids=["missing-metric", "nan-metric", "schema-version", "schema-violation", "data-hash", "task-config",
        "missing-role", "missing-task", "nan-samples", "missing-samples", "samples-without-role",
        "samples-not-matching", "not-json", "duplicate-example", "labels-differ"])
def test_unusable_candidate_exits_2_with_one_line(runs, tmp_path, record_edit, files_edit, expected):
    cand = _copy(runs["same"], tmp_path / "cand")
    if record_edit:
        edit_record(cand, record_edit)
    if files_edit:
        files_edit(cand)
    md = tmp_path / "gate.md"
    proc = cli("gate", "--baseline", runs["base"], "--candidate", cand, "--markdown", md)
    assert proc.exit_code == 2, proc.output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdbench: error: "), proc.stderr
    assert expected in lines[0]
    assert proc.stdout == ""
    assert md.read_text().startswith("### kdbench gate: ⚠️ unusable input")


@pytest.mark.parametrize("args, expected", [
    (["--tolerance", "accuracy"], "expected METRIC=DELTA"),
    (["--tolerance", "accuracy=-1"], "expected METRIC=DELTA"),
    (["--tolerance", "accuracy=nan"], "expected METRIC=DELTA"),
    (["--tolerance", "f1=0.1"], "the baseline has no metric 'f1'"),
    (["--role", "assistant"], "--role assistant: the baseline has no model 'assistant'"),
    (["--alpha", "1.5"], "--alpha 1.5"),
])
def test_bad_options_exit_2_with_one_line(runs, args, expected):
    proc = cli("gate", "--baseline", runs["base"], "--candidate", runs["same"], *args)
    assert proc.exit_code == 2, proc.output
    assert proc.stderr.strip().count("\n") == 0 and expected in proc.stderr


def test_missing_baseline_file_exits_2(runs, tmp_path):
    proc = cli("gate", "--baseline", tmp_path / "nope.json", "--candidate", runs["same"])
    assert proc.exit_code == 2 and "baseline: " in proc.stderr and "no such run record" in proc.stderr


def test_an_unknown_metric_is_not_silently_passed(runs, tmp_path):
    base = _copy(runs["base"], tmp_path / "base")
    cand = _copy(runs["same"], tmp_path / "cand")
    for d in (base, cand):
        edit_record(d, lambda r: r["results"]["sst2"]["student"].update(bleu={"value": 0.3, "ci": None}))
    with pytest.raises(KdbenchError, match="no paired test for metric 'bleu'.*--ignore bleu"):
        gate.run_gate(base, cand)
    assert gate.run_gate(base, cand, ignore=["bleu"]).exit_code == 0


def test_paired_resamples_of_ece_equal_the_loop_over_resampled_examples():
    """Two runs are tested on the same draws of example indices: each side's vectorised ECE replicate
    is the ECE of exactly those examples."""
    import numpy as np

    from kdbench.metrics import calibration
    from kdbench.metrics.classification import ClassifierContext
    from kdbench.metrics.stats import paired_draws

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    draws = paired_draws(200, 20, seed=3)
    for probs in (rng.dirichlet([1, 1, 1], 200), rng.dirichlet([3, 1, 1], 200)):
        fast = ClassifierContext(probs, labels, n_samples=20, seed=3, draws=draws).ece()
        slow = [calibration.expected_calibration_error(probs[i], labels[i], 15) for i in draws]
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
