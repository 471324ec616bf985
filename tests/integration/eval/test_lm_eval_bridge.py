"""The lm-eval bridge, both directions, on SmolLM2-135M-Instruct and mirror data (small slices).

* kdbench -> lm-eval: our ``kdbench`` lm-eval model (registered model, object, command line).
* lm-eval -> kdbench: the ``lm_eval`` task family turns lm-eval's per-document samples into
  Predictions, cross-checked against lm-eval's own ``hf`` model, the raw mirror files and direct
  backend calls.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdbench.errors import KdbenchError
from kdbench.tasks.base import RunSettings
from tests.helpers.lm_eval_bridge import _write_task

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SST2_ROWS = 30
FP32 = RunSettings(dtype="fp32")
BF16 = RunSettings(dtype="bf16")


@pytest.fixture(scope="module")
def lm_eval_tasks_dir() -> str:
    from kdbench.tasks.lm_eval_tasks import TASKS_DIR

    return str(TASKS_DIR)


@pytest.fixture(scope="module")
def smol():
    from kdbench.tasks import get_task

    return get_task("lm_eval_sst2").load_model(MODEL)


@pytest.fixture(scope="module")
def sst2_run(data_dir, smol):
    """The built-in lm_eval_sst2 task on the first SST2_ROWS sentences, through the bridge, fp32."""
    from kdbench.tasks import get_task

    task = get_task("lm_eval_sst2")
    data = task.eval_data(SST2_ROWS)
    return task, data, task.predict(smol, data, "teacher", FP32)


def _task_manager(path: str):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=path, include_defaults=False)


def _mirror_rows(data_dir: Path, relative: str, n: int) -> list[dict]:
    with open(data_dir / relative) as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


# --------------------------------------------------------------------------------------------------
# (1) our accuracy = lm-eval's own hf model on the same rows
# --------------------------------------------------------------------------------------------------
def test_multiple_choice_accuracy_matches_lm_eval_hf(sst2_run, lm_eval_tasks_dir):
    import lm_eval

    task, data, preds = sst2_run
    hf = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={MODEL},dtype=float32", device="cpu", batch_size=8,
        tasks=["kdbench_sst2"], task_manager=_task_manager(lm_eval_tasks_dir), limit=SST2_ROWS,
        bootstrap_iters=0, log_samples=True,
    )
    hf_acc = hf["results"]["kdbench_sst2"]["acc,none"]
    scores = task.score(preds, FP32)
    assert scores["accuracy"]["value"] == pytest.approx(hf_acc, abs=1e-6)
    assert scores["acc"]["value"] == pytest.approx(hf_acc, abs=1e-6)
    assert scores["acc_norm"]["value"] == pytest.approx(hf["results"]["kdbench_sst2"]["acc_norm,none"], abs=1e-6)
    # document by document: the same choice log-likelihoods (fp32; batching differs) and verdicts
    hf_samples = sorted(hf["samples"]["kdbench_sst2"], key=lambda s: s["doc_id"])
    hf_lls = np.array([[r[0] for r in s["filtered_resps"]] for s in hf_samples])
    np.testing.assert_allclose(preds.loglikelihoods, hf_lls, atol=1e-4, rtol=0)
    assert (preds.preds == preds.labels).astype(float).tolist() == [s["acc"] for s in hf_samples]
    assert 0.5 < hf_acc <= 1.0  # the model does read the reviews (chance is 0.5)


# --------------------------------------------------------------------------------------------------
# (2) per-document log-likelihoods come back in document order with the gold labels
# --------------------------------------------------------------------------------------------------
AG_NEWS_CHOICES = ["World", "Sports", "Business", "Science"]


def test_loglikelihoods_in_doc_order_with_gold_labels(tmp_path, data_dir, smol):
    """A user's own lm-eval YAML (``dataset_path: json`` on a mirror file) in an include path,
    relative to the kdbench task YAML, four choices."""
    from kdbench.backends.causal_lm import HFCausalLM
    from kdbench.tasks import get_task
    from kdbench.tasks.lm_eval_bridge import LmEvalSpec
    from kdbench.yamlio import read_yaml

    rows = 6
    lm_dir = tmp_path / "lm_tasks"
    lm_dir.mkdir()
    (lm_dir / "ag.yaml").write_text(json.dumps({
        "task": "test_ag_news_mc", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_dir / "fancyzhx/ag_news/default/test.jsonl")}},
        "output_type": "multiple_choice", "test_split": "test",
        "doc_to_text": "Article: {{text}}\nTopic:", "doc_to_target": "label", "doc_to_choice": AG_NEWS_CHOICES,
        "metric_list": [{"metric": "acc"}],
    }))
    kd_dir = tmp_path / "kd_tasks"
    kd_dir.mkdir()
    (kd_dir / "ag.yaml").write_text(
        f"name: ag_news_lm\nfamily: lm_eval\nlm_eval_task: test_ag_news_mc\ninclude_path: {lm_dir}\n"
        f"limit: {rows}\nmetrics: [accuracy, acc, nll]\nmain_score: accuracy\npair_metrics: [label_loyalty]\n")
    task = get_task("ag_news_lm", [kd_dir])
    # a relative include path is resolved against the task file when the loader names it
    relative = {**read_yaml(kd_dir / "ag.yaml"), "include_path": "../lm_tasks"}
    spec = LmEvalSpec.model_validate(relative, context={"path": kd_dir / "ag.yaml"})
    assert spec.include_path == str(lm_dir.resolve())
    data = task.eval_data(None)
    preds = task.predict(smol, data, "student", FP32)

    gold = _mirror_rows(data_dir, "fancyzhx/ag_news/default/test.jsonl", rows)
    assert preds.example_ids == [str(i) for i in range(rows)]
    assert preds.labels.tolist() == [r["label"] for r in gold]
    assert preds.loglikelihoods.shape == (rows, 4)
    # each row is the model's log-likelihood of that document's four answers, computed directly
    backend = HFCausalLM(smol.model, smol.tokenizer, "fp32", batch_size=4)
    for i in (0, rows - 1):
        direct = backend.loglikelihood([(f"Article: {gold[i]['text']}\nTopic:", f" {c}") for c in AG_NEWS_CHOICES])
        np.testing.assert_allclose(preds.loglikelihoods[i], [ll for ll, _ in direct], atol=1e-4, rtol=0)
    lls = preds.loglikelihoods
    softmax = np.exp(lls - lls.max(1, keepdims=True))
    np.testing.assert_allclose(preds.probs, softmax / softmax.sum(1, keepdims=True), rtol=1e-12)
    assert (preds.preds == preds.labels).astype(float).tolist() == preds.sample_metrics["acc"]
    frame = preds.to_frame()
    assert frame["label"].tolist() == preds.labels.tolist() and frame["role"].eq("student").all()
    assert task.dataset_record(data)["rows"] == rows


# --------------------------------------------------------------------------------------------------
# (3) kdbench as an lm-eval model: registry round trip and the command line
# --------------------------------------------------------------------------------------------------
def test_lm_eval_kdbench_model_round_trip(sst2_run, lm_eval_tasks_dir):
    import lm_eval
    from lm_eval.api.registry import get_model

    import kdbench.backends.lm_eval_model  # noqa: F401  (registers "kdbench")

    assert get_model("hf").__name__ == "HFLM"  # lm-eval's own models are still there
    rows = 8
    out = lm_eval.simple_evaluate(
        model="kdbench", model_args=f"pretrained={MODEL},dtype=fp32,batch_size=8", tasks=["kdbench_sst2"],
        task_manager=_task_manager(lm_eval_tasks_dir), limit=rows, bootstrap_iters=0, log_samples=True,
    )
    samples = sorted(out["samples"]["kdbench_sst2"], key=lambda s: s["doc_id"])
    lls = np.array([[r[0] for r in s["filtered_resps"]] for s in samples])
    _, _, bridge = sst2_run  # the same model through the kdbench task
    np.testing.assert_allclose(lls, bridge.loglikelihoods[:rows], atol=1e-4, rtol=0)  # fp32, other batches
    assert out["results"]["kdbench_sst2"]["acc,none"] == pytest.approx(np.mean(bridge.correct[:rows]), abs=1e-12)
    assert out["config"]["kdbench_dtype"] == "fp32"


@pytest.mark.slow  # a fresh process indexes lm-eval's ~15k built-in task YAMLs: a minute on 2 busy cores
def test_lm_eval_command_line(tmp_path, lm_eval_tasks_dir, sst2_run):
    """``python -m kdbench.lm_eval_cli --model kdbench ...`` is lm-eval's CLI with our model."""
    proc = subprocess.run(
        [sys.executable, "-m", "kdbench.lm_eval_cli", "--model", "kdbench",
         "--model_args", f"pretrained={MODEL},dtype=fp32", "--tasks", "kdbench_sst2",
         "--include_path", lm_eval_tasks_dir, "--limit", "4", "--output_path", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = tmp_path.rglob("results_*.json")
    acc = json.loads(result.read_text())["results"]["kdbench_sst2"]["acc,none"]
    assert acc == pytest.approx(np.mean(sst2_run[2].correct[:4]), abs=1e-12)


def test_generation_rejects_sampling(smol, lm_eval_tasks_dir):
    import lm_eval

    from kdbench.backends.lm_eval_model import KdbenchLM

    lm = KdbenchLM.from_model(smol.model, smol.tokenizer, "fp32")
    with pytest.raises(KdbenchError, match="greedy only"):
        lm_eval.simple_evaluate(model=lm, tasks=["kdbench_gsm8k"], task_manager=_task_manager(lm_eval_tasks_dir),
                                limit=1, gen_kwargs="do_sample=True,temperature=0.7", bootstrap_iters=0)


# --------------------------------------------------------------------------------------------------
# (4) a generate_until task through the bridge
# --------------------------------------------------------------------------------------------------
GSM8K_IGNORE = [",", r"\$", r"(?s).*#### ", r"\.$"]  # kdbench_gsm8k.yaml's exact_match settings


def _flexible_extract(text: str) -> str:
    """lm-eval's gsm8k "flexible-extract" filter: the last number-like match ("[invalid]" if none)."""
    matches = re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", text)
    if not matches:
        return "[invalid]"
    return next(m for m in matches[-1] if m)


def _normalise(text: str) -> str:
    for pattern in GSM8K_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def test_generate_until_task(data_dir, smol):
    from kdbench.backends.causal_lm import HFCausalLM
    from kdbench.predictions.lm_eval import LmEvalGenerationPredictions
    from kdbench.tasks import get_task

    task = get_task("lm_eval_gsm8k")
    data = task.eval_data(5)
    # bf16 (AMX) for speed; the direct call below runs the very same batch, so results are identical
    preds = task.predict(smol, data, "teacher", BF16)
    assert isinstance(preds, LmEvalGenerationPredictions) and preds.example_ids == ["0", "1", "2", "3", "4"]

    gold = _mirror_rows(data_dir, "openai/gsm8k/main/test.jsonl", 5)
    assert preds.gold == [r["answer"] for r in gold]
    # the generations are the backend's greedy continuations of the task's prompts, cut at `until`
    direct = HFCausalLM(smol.model, smol.tokenizer, "bf16", BF16.eval.batch_size).generate(
        [f"Question: {r['question']}\nAnswer:" for r in gold], 128, ["Question:", "</s>", "<|im_end|>", "\n\n"])
    assert preds.generations == direct
    # lm-eval's filter and exact match, recomputed independently
    answers = [_flexible_extract(g) for g in direct]
    assert preds.answers == [None if a == "[invalid]" else a for a in answers]  # the filter's fallback: no answer
    em = [float(_normalise(a) == _normalise(r["answer"])) for a, r in zip(answers, gold)]
    assert [float(x) for x in preds.sample_metrics["exact_match"]] == em
    scores = task.score(preds, BF16)
    assert scores["exact_match"]["value"] == pytest.approx(np.mean(em), abs=1e-12)
    lo, hi = scores["exact_match"]["ci"]
    assert lo <= scores["exact_match"]["value"] <= hi
    agree = np.mean([a != "[invalid]" for a in answers])  # an unextracted answer agrees with nothing, as for gsm8k
    assert task.score_pair(preds, preds, BF16)["answer_agreement"]["value"] == pytest.approx(agree)
    frame = preds.to_frame()
    assert frame["generation"].tolist() == direct and frame["correct"].tolist() == [bool(x) for x in em]


@pytest.mark.slow  # an unknown name is looked up in lm-eval's ~15k built-in task YAMLs too (a minute here)
def test_unknown_lm_eval_task_is_one_line_error(tmp_path):
    from kdbench.tasks import get_task

    _write_task(tmp_path, "lm_eval_task: no_such_lm_eval_task\nmetrics: [acc]\nmain_score: acc\n")
    with pytest.raises(KdbenchError) as err:
        get_task("bad_lm", [tmp_path])
    message = str(err.value)
    assert "bad_lm" in message and "unknown lm-eval task 'no_such_lm_eval_task'" in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------------
# end to end: kdbench eval on the lm_eval suite
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def layer_selected_student(tmp_path_factory, smol):
    """SmolLM2 with every other one of its 30 layers, saved as a student folder."""
    from kdbench.models.loading import save_model
    from kdbench.models.students import layer_selection

    folder = tmp_path_factory.mktemp("smol-student")
    save_model(layer_selection(smol.model, list(range(0, 30, 2))), smol.tokenizer, folder)
    return folder


@pytest.mark.slow
def test_kdbench_eval_lm_eval_suite(tmp_path, data_dir, layer_selected_student):
    from tests.helpers.cli import run_kdbench

    rows = 8
    proc = run_kdbench("eval", "--suite", "lm_eval", "--teacher", MODEL, "--student", layer_selected_student,
                       "--eval-rows", rows, "--reports-dir", tmp_path / "reports", "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "reports").iterdir()
    record = json.loads((run_dir / "report.json").read_text())
    samples = pd.read_parquet(run_dir / "samples.parquet")
    assert record["datasets"]["lm_eval_sst2"]["rows"] == rows and record["datasets"]["lm_eval_gsm8k"]["rows"] == rows

    sst2 = samples[samples.task == "lm_eval_sst2"]
    by_role = {role: sst2[sst2.role == role].sort_values("example_id", key=lambda s: s.astype(int)) for role in ("teacher", "student")}
    for role, rows_of in by_role.items():
        res = record["results"]["lm_eval_sst2"][role]
        assert res["accuracy"]["value"] == pytest.approx(rows_of["correct"].astype(float).mean())
        assert res["acc"]["value"] == pytest.approx(res["accuracy"]["value"])
    loyalty = record["pairs"]["lm_eval_sst2"]["student|teacher"]["label_loyalty"]["value"]
    assert loyalty == pytest.approx(np.mean(by_role["student"]["pred"].to_numpy() == by_role["teacher"]["pred"].to_numpy()))

    gsm = samples[samples.task == "lm_eval_gsm8k"]
    assert set(gsm.role) == {"teacher", "student"} and gsm["generation"].notna().all()
    for role in ("teacher", "student"):
        em = record["results"]["lm_eval_gsm8k"][role]["exact_match"]["value"]
        assert em == pytest.approx(gsm[gsm.role == role]["correct"].astype(float).mean())
    assert "answer_agreement" in record["pairs"]["lm_eval_gsm8k"]["student|teacher"]
