"""Static leaderboards from synthetic runs (fast): pages, comparability marking, escaping,
capacity-gap curves, unreadable records, stale pages. The real-browser test is in
test_report_real_runs.py."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from kdbench.cli import main
from kdbench.report import leaderboard
from kdbench.report.record import read_record
from tests.helpers.reports import edit_record, make_run

XSS = "<script>alert(1)</script>"


@pytest.fixture()
def reports(tmp_path):
    root = tmp_path / "reports"
    make_run(root, "run-a", seed=0, created="2026-01-01T00:00:00+00:00")
    make_run(root, "run-b", seed=1, accuracies={"teacher": 0.9, "student": 0.7}, created="2026-01-02T00:00:00+00:00",
             params={"teacher": 22_713_986, "student": 9_000_000})
    return root


def _rows(html: str) -> list[str]:
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return re.findall(r"<tr .*?</tr>", body, flags=re.S)


def test_index_suite_and_run_pages(reports, tmp_path):
    out = tmp_path / "lb"
    index = leaderboard.build(reports, out)
    assert index == out / "index.html"
    html = index.read_text()
    assert "run-a" in html and "run-b" in html and 'href="suite-quickstart.html"' in html
    suite = (out / "suite-quickstart.html").read_text()
    rows = _rows(suite)
    assert len(rows) == 4  # two runs × (teacher, student)
    # best accuracy first; each row has a score ± CI, loyalty, ECE and latency
    values = [float(re.findall(r'data-v="([^"]*)"', r)[1]) for r in rows]
    assert values == sorted(values, reverse=True)
    assert "layers 0, 5 of the teacher" in suite and "kd (forward_kl)" in suite and " ± " in suite
    for name in ("run-a", "run-b"):
        assert (out / "runs" / f"{name}.html").exists()
    svgs = sorted(p.name for p in (out / "plots").iterdir())
    assert svgs == ["quickstart-sst2-latency.svg", "quickstart-sst2-params.svg"]
    assert all((out / "plots" / s).read_text().startswith("<svg") for s in svgs)


def test_user_strings_are_escaped_everywhere(reports, tmp_path):
    # suite, task, role and run names are names (test_names.py); model ids are free text
    make_run(reports, "run-x", created="2026-01-03T00:00:00+00:00", suite="hostile",
             model_ids={"teacher": XSS, "student": '"><img src=x onerror=alert(2)>'})
    out = tmp_path / "lb"
    leaderboard.build(reports, out)
    pages = list(out.rglob("*.html"))
    raw = "".join(p.read_text() for p in pages)
    assert XSS not in raw and "<img src=x" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in raw
    # the hostile suite name gets a safe file name of its own
    suites = sorted(p.name for p in out.glob("suite-*.html"))
    assert "suite-quickstart.html" in suites and len(suites) == 2
    assert all(re.fullmatch(r"suite-[A-Za-z0-9._-]+\.html", s) for s in suites)


def test_runs_with_other_data_are_marked_not_comparable(reports, tmp_path):
    make_run(reports, "run-c", data_seed=7, n=300, created="2026-01-03T00:00:00+00:00")
    out = tmp_path / "lb"
    proc = CliRunner().invoke(main, ["leaderboard", str(reports), "-o", str(out)])
    assert proc.exit_code == 0, proc.output
    assert "not comparable: run-c: sst2: evaluation data differ (data-hash mismatch" in proc.stderr
    suite = (out / "suite-quickstart.html").read_text()
    assert 'id="comparability"' in suite and "run-c: sst2: evaluation data differ" in suite
    rows = _rows(suite)
    c_rows = [r for r in rows if "run-c" in r]
    assert len(c_rows) == 2 and all('class="nc"' in r and 'data-v=""' in r for r in c_rows)
    assert all("run-c" not in r for r in rows[:4])  # not-comparable rows sort last
    assert "not comparable with the suite's reference" in (out / "runs" / "run-c.html").read_text()
    assert "not comparable" in (out / "index.html").read_text()


def test_task_config_differences_are_named(reports, tmp_path):
    make_run(reports, "run-d", eval_cfg={"ece_bins": 10}, created="2026-01-03T00:00:00+00:00")
    leaderboard.build(reports, tmp_path / "lb")
    suite = (tmp_path / "lb" / "suite-quickstart.html").read_text()
    assert "run-d: sst2: task configuration differs at eval.ece_bins (15 vs 10)" in suite


def test_capacity_gap_curves_where_present(reports, tmp_path):
    gap = {"sst2": {"metric": "accuracy", "student": "2-layer MiniLM", "student_params": 15_616_130,
                    "best_teacher": "MiniLM-L12",
                    "points": [{"teacher": "MiniLM-L3", "teacher_params": 17_000_000, "value": 0.80, "ci": [0.78, 0.82],
                                "teacher_value": 0.83},
                               {"teacher": "MiniLM-L6", "teacher_params": 22_700_000, "value": 0.82, "ci": None,
                                "teacher_value": 0.86},
                               {"teacher": "MiniLM-L12", "teacher_params": 33_400_000, "value": 0.83, "ci": [0.8, 0.85],
                                "teacher_value": 0.88}]}}
    run = make_run(reports, "run-gap", created="2026-01-03T00:00:00+00:00", extra={"capacity_gap": gap})
    assert read_record(run)["capacity_gap"] == gap  # the optional key validates
    out = tmp_path / "lb"
    leaderboard.build(reports, out)
    assert (out / "plots" / "quickstart-sst2-capacity-gap.svg").exists()
    assert "quickstart-sst2-capacity-gap.svg" in (out / "suite-quickstart.html").read_text()
    run_page = (out / "runs" / "run-gap.html").read_text()
    assert "capacity-gap.svg" in run_page and "MiniLM-L12</code> (best)" in run_page


def test_bad_capacity_gap_is_a_schema_violation(tmp_path):
    from kdbench.errors import KdbenchError

    with pytest.raises(KdbenchError, match="capacity_gap/sst2"):
        make_run(tmp_path, "bad", extra={"capacity_gap": {"sst2": {"metric": "accuracy", "points": []}}})


def test_unreadable_records_are_listed_not_fatal(reports, tmp_path):
    broken = reports / "broken"
    broken.mkdir()
    (broken / "report.json").write_text("{")
    (reports / ".staging.partial").mkdir()
    out = tmp_path / "lb"
    leaderboard.build(reports, out)
    index = (out / "index.html").read_text()
    assert "Records that could not be read" in index and "not valid JSON" in index
    assert ".staging" not in index


def test_pages_of_removed_runs_are_deleted(reports, tmp_path):
    out = tmp_path / "lb"
    leaderboard.build(reports, out)
    assert (out / "runs" / "run-b.html").exists()
    edit_record(reports / "run-b", lambda r: r.update(suite="other"))
    leaderboard.build(reports, out)
    assert (out / "suite-other.html").exists()
    for f in (reports / "run-b").iterdir():
        f.unlink()
    (reports / "run-b").rmdir()
    leaderboard.build(reports, out)
    assert not (out / "runs" / "run-b.html").exists() and not (out / "suite-other.html").exists()


def test_empty_and_missing_reports_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    index = leaderboard.build(tmp_path / "empty", tmp_path / "lb")
    assert "No runs yet" in index.read_text()
    proc = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "nope"), "-o", str(tmp_path / "lb")])
    assert proc.exit_code == 2 and "does not exist" in proc.stderr


def test_foreign_files_in_the_output_folder_are_kept(reports, tmp_path):
    out = tmp_path / "lb"
    foreign = {"notes.txt": "mine", "runs/keep.html": "<p>mine</p>", "plots/diagram.svg": "<svg/>",
               "suite-handmade.html": "<p>mine</p>", "sub/x.html": "x"}
    for rel, text in foreign.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    leaderboard.build(reports, out)
    edit_record(reports / "run-b", lambda r: r.update(suite="other"))
    leaderboard.build(reports, out)
    for f in (reports / "run-b").iterdir():
        f.unlink()
    (reports / "run-b").rmdir()
    leaderboard.build(reports, out)  # run-b's pages and suite-other are its own: removed
    assert not (out / "runs" / "run-b.html").exists() and not (out / "suite-other.html").exists()
    assert {rel: (out / rel).read_text() for rel in foreign} == foreign


def test_someone_elses_page_is_not_replaced(reports, tmp_path):
    out = tmp_path / "lb"
    out.mkdir()
    (out / "index.html").write_text("<p>my site</p>")
    proc = CliRunner().invoke(main, ["leaderboard", str(reports), "-o", str(out)])
    assert proc.exit_code == 2 and "was not written by kdbench" in proc.stderr
    assert (out / "index.html").read_text() == "<p>my site</p>" and not (out / "runs").exists()
    # a run refuses such a folder before any work
    proc = CliRunner().invoke(main, ["eval", "--suite", "quickstart", "--student", "x", "--reports-dir",
                                     str(tmp_path / "r"), "--leaderboard-dir", str(out)])
    assert proc.exit_code == 2 and "was not written by kdbench" in proc.stderr and not (tmp_path / "r").exists()


def test_a_leaderboard_from_before_manifests_is_adopted(reports, tmp_path):
    out = tmp_path / "lb"
    leaderboard.build(reports, out)
    (out / leaderboard.MANIFEST).unlink()  # as an older kdbench left it
    (out / "runs" / "gone.html").write_text("an older run's page")
    leaderboard.build(reports, out)
    assert (out / "runs" / "gone.html").exists()  # not listed anywhere: kept, never guessed to be ours
    assert "runs/run-a.html" in (out / leaderboard.MANIFEST).read_text()


def test_a_malformed_record_is_skipped_with_one_warning(reports, tmp_path):
    """Schema-valid before (``results: {sst2: {}}``), it stopped every leaderboard build."""
    edit_record(reports / "run-b", lambda r: r["results"].update(sst2={}))
    out = tmp_path / "lb"
    proc = CliRunner().invoke(main, ["leaderboard", str(reports), "-o", str(out)])
    assert proc.exit_code == 0, proc.output
    warns = [w for w in proc.stderr.splitlines() if w.startswith("kdbench: warning:")]
    assert len(warns) == 1 and str(reports / "run-b" / "report.json") in warns[0], proc.stderr
    assert (out / "runs" / "run-a.html").exists() and not (out / "runs" / "run-b.html").exists()


# --------------------------------------------------------------------------------------------------
# ranking from the metric registry: main score, significance tiers, % of teacher, identical reruns
# --------------------------------------------------------------------------------------------------
def _board_rows(html: str) -> list[dict]:
    out = []
    for tr in _rows(html):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, flags=re.S)
        out.append({"run": re.sub(r"<[^>]+>", "", cells[0]).strip(), "role": cells[2].strip(),
                    "tier": cells[7].strip(), "of_teacher": cells[8].strip()})
    return out


def test_rows_rank_by_significance_tier_with_percent_of_teacher_and_collapsed_reruns(tmp_path):
    from tests.helpers.reports import make_run

    root = tmp_path / "reports"
    make_run(root, "good", seed=0, n=800, accuracies={"teacher": 0.9, "student": 0.85})
    make_run(root, "good-again", seed=0, n=800, accuracies={"teacher": 0.9, "student": 0.85},
             created="2026-01-02T00:00:00+00:00")
    make_run(root, "close", seed=1, n=800, accuracies={"teacher": 0.9, "student": 0.84},
             created="2026-01-03T00:00:00+00:00")
    make_run(root, "poor", seed=2, n=800, accuracies={"teacher": 0.9, "student": 0.6},
             created="2026-01-04T00:00:00+00:00")
    out = tmp_path / "lb"
    leaderboard.build(root, out)
    rows = _board_rows((out / "suite-quickstart.html").read_text())
    # good and good-again are one row (×2); the three teachers are the same model: tier 1 together
    assert [r["run"] for r in rows].count("good-again ×2") == 2 and not any(r["run"] == "good" for r in rows)
    assert len(rows) == 6
    by = {(r["run"].split()[0], r["role"]): r for r in rows}
    assert {by[(run, "teacher")]["tier"] for run in ("good-again", "close", "poor")} == {"1"}
    tiers = [float(r["tier"]) for r in rows]
    assert tiers == sorted(tiers) and rows[-1]["run"].startswith("poor") and rows[-1]["role"] == "KD student"
    assert tiers[-1] > max(float(by[(run, "KD student")]["tier"]) for run in ("good-again", "close"))
    record = read_record(root / "poor")
    acc = record["results"]["sst2"]
    assert float(by[("poor", "KD student")]["of_teacher"]) == pytest.approx(
        100 * acc["student"]["accuracy"]["value"] / acc["teacher"]["accuracy"]["value"], abs=0.05)
    assert by[("poor", "teacher")]["of_teacher"] == "100.0"


def test_the_run_report_shows_each_familys_own_columns(tmp_path):
    import pandas as pd

    from kdbench.report import html
    from tests.helpers.pinned_runs import write_run

    for run, _task, want, absent in (("ner", "wnut_17", ["f1", "precision", "recall", "token_accuracy",
                                                        "label_loyalty vs teacher", "entity_f1_vs_teacher"], "ECE"),
                                    ("retrieval", "dbpedia_entity_5k", ["ndcg_at_10", "mrr_at_10", "recall_at_100",
                                                                        "overlap_at_10 vs teacher"], "NLL"),
                                    ("lm", "gsm8k_text", ["perplexity", "bits_per_byte", "top1_agreement vs teacher"],
                                     "Brier")):
        folder = write_run(run, tmp_path / run)
        page = html.render_run(read_record(folder), pd.read_parquet(folder / "samples.parquet"))
        header = re.search(r"<tr><th class=\"l\">model</th>.*?</tr>", page, flags=re.S).group(0)
        assert re.findall(r"<th>(.*?)</th>", header)[:len(want)] == want, header
        assert absent not in header
