"""Reports, leaderboard and gate on real runs: three small quickstart runs through the real CLI
(MiniLM-L6 teacher fine-tuned once, a 2-layer KD student twice with the same config, and a
degraded 1-layer student), then

* the gate: the re-run passes, the degraded student fails with exact-McNemar p < 0.05, and each
  kind of unusable input exits 2 with one line;
* the leaderboard: rendered and driven in headless Chromium over loopback — sort a column and
  read the top row, filter by text and by role, open from disk, and an escaping check.
"""
from __future__ import annotations

import functools
import http.server
import json
import math
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from kdbench.report import load_runs
from kdbench.report.record import read_record
from tests.helpers.cli import run_kdbench

pytestmark = pytest.mark.slow

XSS = "<script>alert(1)</script>"
kdbench = run_kdbench


@pytest.fixture(scope="module")
def real(small_runs):
    baselines = small_runs["root"] / "baselines"
    proc = kdbench("baseline", "promote", small_runs["first"], "--name", "small", "--baselines-dir", baselines)
    assert proc.returncode == 0, proc.stderr
    return {**small_runs, "baseline": baselines / "small.json"}


# --------------------------------------------------------------------------------------------------
# gate
# --------------------------------------------------------------------------------------------------
def test_gate_passes_a_rerun_of_the_same_config(real):
    md = real["root"] / "rerun.md"
    proc = kdbench("gate", "--baseline", real["baseline"], "--candidate", real["rerun"] / "report.json",
                   "--markdown", md)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("### kdbench gate: ✅ PASS") and md.read_text() == proc.stdout


def test_gate_fails_a_student_with_one_layer_fewer(real):
    proc = kdbench("gate", "--baseline", real["baseline"], "--candidate", real["degraded"] / "report.json")
    print(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| sst2 | student | accuracy"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-1] == "❌ regression" and cells[9].startswith("exact McNemar")
    assert float(cells[5]) < 0 and float(cells[8]) < 0.05  # Holm-corrected
    # the teacher is the same cached model on the same data: unchanged
    teacher = [line for line in proc.stdout.splitlines() if line.startswith("| sst2 | teacher |")]
    assert teacher and all(line.rstrip().endswith("| unchanged |") for line in teacher)


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("models"))
    return dest


def _edit(run_dir: Path, fn) -> None:
    path = run_dir / "report.json"
    record = json.loads(path.read_text())
    fn(record)
    path.write_text(json.dumps(record))


def _nan_samples(d: Path) -> None:
    s = pd.read_parquet(d / "samples.parquet")
    s.at[0, "probs"] = [math.nan] * len(s.at[0, "probs"])
    s.to_parquet(d / "samples.parquet", index=False)


UNUSABLE = {
    "missing metric": (lambda d: _edit(d, lambda r: r["results"]["sst2"]["student"].pop("nll")),
                       "candidate has no metric sst2/student/nll (missing metric"),
    "NaN metric": (lambda d: _edit(d, lambda r: r["results"]["sst2"]["student"]["accuracy"].update(value=math.nan)),
                   "results.sst2.student.accuracy.value is not a finite number"),
    "NaN in samples": (_nan_samples, "NaN or infinite probability in the samples"),
    "schema mismatch": (lambda d: _edit(d, lambda r: r.update(schema_version=2)), "schema_version 2, this kdbench reads 1"),
    "data-hash mismatch": (lambda d: _edit(d, lambda r: r["datasets"]["sst2"].update(sha256="0" * 64)),
                           "data-hash mismatch"),
    "missing samples": (lambda d: (d / "samples.parquet").unlink(), "missing samples (no file"),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_gate_exits_2_with_one_line_for_unusable_input(real, tmp_path, case):
    edit, expected = UNUSABLE[case]
    cand = _copy(real["rerun"], tmp_path / "cand")
    edit(cand)
    proc = kdbench("gate", "--baseline", real["baseline"], "--candidate", cand / "report.json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdbench: error: ") and expected in lines[0], proc.stderr
    print(f"{case}: {lines[0]}")


def test_load_runs_gives_one_row_per_run_task_role_metric(real):
    frame = load_runs(real["reports"])
    assert frame["run_id"].nunique() == 3
    assert not frame.duplicated(["run_id", "task", "role", "metric"]).any()
    assert frame["comparable"].all()
    acc = frame[(frame.metric == "accuracy") & (frame.role == "student")].set_index("run_id")["value"]
    for name in ("first", "rerun", "degraded"):
        assert acc[name_to_id(real, name)] == read_record(real[name])["results"]["sst2"]["student"]["accuracy"]["value"]
    assert acc[name_to_id(real, "first")] == acc[name_to_id(real, "rerun")] > acc[name_to_id(real, "degraded")]


def name_to_id(real, name):
    return real[name].name


# --------------------------------------------------------------------------------------------------
# leaderboard in headless Chromium
# --------------------------------------------------------------------------------------------------
def _chromium() -> tuple[str, str]:
    """(browser, driver) paths, or skip with the reason."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("no Chromium + chromedriver on this machine (Debian: apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    browser_path, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser_path
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(real):
    """The leaderboard of the three runs plus one copy whose teacher id and suite are hostile strings,
    served on 127.0.0.1 only."""
    reports = real["root"] / "reports-lb"
    shutil.copytree(real["reports"], reports, ignore=shutil.ignore_patterns("models"))
    hostile = _copy(real["first"], reports / "hostile-run")

    def poison(r):
        r["run_id"] = "hostile-run"
        r["created"] = "2000-01-01T00:00:00+00:00"
        r["suite"] = "hostile-suite"  # a suite name is a name (test_names.py): the hostile strings are model ids
        r["models"]["teacher"]["id"] = XSS
        r["models"]["student"]["id"] = XSS

    _edit(hostile, poison)
    out = real["root"] / "leaderboards"
    proc = kdbench("leaderboard", reports, "-o", out)
    assert proc.returncode == 0, proc.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _rows(browser):
    from selenium.webdriver.common.by import By

    return [tr for tr in browser.find_elements(By.CSS_SELECTOR, "#board tbody tr") if tr.is_displayed()]


def _header(browser, text):
    from selenium.webdriver.common.by import By

    return next(th for th in browser.find_elements(By.CSS_SELECTOR, "#board thead th") if th.text.startswith(text))


def test_leaderboard_sorts_and_filters_in_chromium(real, served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, url = served
    browser.get(f"{url}/index.html")
    browser.find_element(By.LINK_TEXT, "quickstart").click()
    assert browser.title == "kdbench · quickstart"
    # three runs × (teacher, KD student, baseline), the re-run of the first collapsed into its row (×2)
    assert len(_rows(browser)) == 6

    # sort by parameters: first click descending (a teacher), second ascending (the 1-layer student)
    _header(browser, "params").click()
    assert _rows(browser)[0].find_element(By.CSS_SELECTOR, "td:nth-child(3)").text == "teacher"
    _header(browser, "params").click()
    top = _rows(browser)[0]
    assert top.find_element(By.CSS_SELECTOR, "td:first-child").text == real["degraded"].name
    assert "layers 0 of the teacher" in top.text

    # sort by accuracy, best first: the top row carries the best comparable accuracy of all records
    _header(browser, "sst2 accuracy").click()
    best = max(v["accuracy"]["value"] for name in ("first", "rerun", "degraded")
               for v in read_record(real[name])["results"]["sst2"].values())
    cells = [tr.find_elements(By.TAG_NAME, "td")[6] for tr in _rows(browser)]
    values = [float(c.get_attribute("data-v")) for c in cells]
    assert values[0] == pytest.approx(best) and values == sorted(values, reverse=True)
    _header(browser, "sst2 accuracy").click()
    assert float(_rows(browser)[0].find_elements(By.TAG_NAME, "td")[6].get_attribute("data-v")) == min(values)

    # filter: by text, by role, both
    box = browser.find_element(By.ID, "filter")
    box.send_keys(real["degraded"].name)
    assert {tr.find_element(By.CSS_SELECTOR, "td:first-child").text for tr in _rows(browser)} == {real["degraded"].name}
    assert len(_rows(browser)) == 3
    box.clear()
    box.send_keys("x")  # clear() fires no input event: type and delete to re-run the filter
    box.send_keys("\b")
    Select(browser.find_element(By.ID, "role-filter")).select_by_value("student")
    assert len(_rows(browser)) == 2
    assert all("KD student" in tr.text for tr in _rows(browser))
    box.send_keys(f"{real['degraded'].name[-6:]} layers")  # every word must match
    assert [tr.find_element(By.CSS_SELECTOR, "td:first-child").text for tr in _rows(browser)] == [real["degraded"].name]
    assert browser.find_element(By.ID, "shown").text == "1 of 6 rows"

    # the run page and its plots load; the Pareto plots are real SVG images
    browser.find_element(By.LINK_TEXT, real["degraded"].name).click()
    assert real["degraded"].name in browser.find_element(By.TAG_NAME, "h1").text
    browser.back()
    imgs = browser.find_elements(By.CSS_SELECTOR, ".figs img")
    assert len(imgs) == 2 and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in imgs)


def test_hostile_strings_render_as_text_in_chromium(served, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    out, url = served
    hostile_suite = [p.name for p in out.glob("suite-*.html") if p.name != "suite-quickstart.html"]
    assert len(hostile_suite) == 1
    for page in ["index.html", hostile_suite[0], "runs/hostile-run.html"]:
        browser.get(f"{url}/{page}")
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - a script that ran would have opened one
        assert XSS in browser.find_element(By.TAG_NAME, "body").text, page
    raw = "".join(p.read_text() for p in out.rglob("*.html"))
    assert XSS not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw


def test_leaderboard_opens_from_disk(served, browser):
    from selenium.webdriver.common.by import By

    out, _ = served
    browser.get((out / "index.html").as_uri())
    browser.find_element(By.LINK_TEXT, "quickstart").click()
    assert len(_rows(browser)) == 6
    _header(browser, "params").click()
    assert _rows(browser)[0].find_element(By.CSS_SELECTOR, "td:nth-child(3)").text == "teacher"
