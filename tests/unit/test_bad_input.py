"""Silent wrong results and code in task files (issue 13), beyond the one-line table of
test_fuzz_bad_input.py: transformers' loading report decides whether a model may be scored, the
pre-flight accepts every shipped suite, task folders run Python only when the user opts in, and a
training whose loss is not finite stops. Real models (config and weights from the HF cache) on
tiny inputs; seconds each."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from kdbench.cli import main
from kdbench.errors import KdbenchError
from tests.helpers import TEACHER_ID

L3 = "sentence-transformers/paraphrase-MiniLM-L3-v2"  # its checkpoint has no BERT pooler
SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


# --------------------------------------------------------------------------------------------------
# loading: every weight from the checkpoint, or exactly a fresh head that is about to be trained
# --------------------------------------------------------------------------------------------------
def test_a_plain_encoder_is_not_a_classifier_unless_its_head_is_trained_here():
    from kdbench.models.loading import load_for_head

    with pytest.raises(KdbenchError, match=r"weights not in the checkpoint would be random: classifier.bias, "
                                           r"classifier.weight; give a model fine-tuned with this head"):
        load_for_head(TEACHER_ID, "classification", num_labels=2)
    model = load_for_head(TEACHER_ID, "classification", fresh_head=True, num_labels=2)  # the fine-tune path
    assert model.config.num_labels == 2


def test_a_fresh_head_allows_exactly_the_head():
    from kdbench.models.loading import load_for_head

    # a sequence head reads the pooler: a checkpoint without one gets it fresh with the classifier
    load_for_head(L3, "classification", fresh_head=True, num_labels=2)
    load_for_head(TEACHER_ID, "token_classification", fresh_head=True, num_labels=3)
    # truncating keeps weights (the dropped layers are unexpected keys, which are fine) ...
    assert load_for_head(TEACHER_ID, "classification", fresh_head=True, num_labels=2,
                         num_hidden_layers=3).config.num_hidden_layers == 3
    # ... but more layers than the checkpoint has are random layers, never a "head"
    with pytest.raises(KdbenchError, match=r"bert.encoder.layer.6.* only the head is initialised for fine-tuning"):
        load_for_head(TEACHER_ID, "classification", fresh_head=True, num_labels=2, num_hidden_layers=8)


def test_weights_a_head_never_reads_may_be_missing():
    from kdbench.models.loading import load_for_head

    # kdbench's bi-encoder embedding is the mean of the last hidden states: L3's missing pooler is unused
    assert load_for_head(L3, "embedding").config.hidden_size == 384
    with pytest.raises(KdbenchError, match=r"'sentence-transformers/paraphrase-MiniLM-L3-v2' as a token_classification"):
        load_for_head(L3, "token_classification")


def test_a_causal_lm_is_scored_as_a_causal_lm_only(tmp_path):
    from kdbench.models.loading import load_for_head

    assert load_for_head(SMOL, "causal_lm").config.num_hidden_layers == 30
    with pytest.raises(KdbenchError, match=r"LlamaForSequenceClassification\): weights not in the checkpoint would "
                                           r"be random: score.weight"):
        load_for_head(SMOL, "classification")


def test_ner_teacher_used_as_is_must_carry_a_trained_head(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["train-and-eval", "--suite", "ner", "--set", "teacher.finetune=null",
                                       "--train-rows", "32", "--reports-dir", "r", "--leaderboard-dir", "lb"])
    assert result.exit_code == 2, result.output
    assert "as a token_classification model (BertForTokenClassification): weights not in the checkpoint" in result.stderr
    assert not any((tmp_path / "r").iterdir()) and not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------------------------------
# the pre-flight accepts what ships, and fails before anything is written
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suite", ["quickstart", "glue", "ner", "retrieval", "lm", "reasoning", "multi_teacher", "full"])
def test_every_local_suite_passes_the_preflight(suite, data_dir):
    from kdbench.config import load_suite
    from kdbench.distill import preflight
    from kdbench.tasks import get_task

    cfg = load_suite(suite)
    preflight.check_training(cfg, [get_task(n) for n in cfg.tasks])


def test_eval_suites_pass_the_preflight_with_their_models(data_dir):
    from kdbench import preflight
    from kdbench.config import load_suite
    from kdbench.tasks import get_task

    cfg = load_suite("lm_eval")
    tasks = [get_task(n) for n in cfg.tasks]
    preflight.check_evaluation(cfg, tasks, {t.name: {"teacher": SMOL} for t in tasks}, {})


# --------------------------------------------------------------------------------------------------
# code in task files
# --------------------------------------------------------------------------------------------------
LM_TASK = ("task: {name}\n{extra}output_type: multiple_choice\nvalidation_split: validation\n"
           "doc_to_text: '{{{{sentence}}}}'\ndoc_to_target: label\ndoc_to_choice: [negative, positive]\n"
           "metric_list: [{{metric: acc}}]\n")
MIRROR = ("custom_dataset: !function kdbench.tasks.lm_eval_tasks.mirror_dataset\n"
          "dataset_kwargs: {hub_id: nyu-mll/glue, hub_config: sst2, splits: [validation]}\n")


def _lm_folder(tmp_path, extra: str, files: dict | None = None):
    lm, kd = tmp_path / "lm", tmp_path / "kd"
    lm.mkdir()
    kd.mkdir()
    (lm / "t.yaml").write_text(LM_TASK.format(name="user_sst2", extra=extra))
    for rel, text in (files or {}).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (kd / "u.yaml").write_text("name: user\nfamily: lm_eval\nlm_eval_task: user_sst2\ninclude_path: ../lm\n"
                               "metrics: [accuracy]\nmain_score: accuracy\n")
    return kd


UTILS = "import pathlib\npathlib.Path(__file__).with_name('IMPORTED').touch()\ndef docs(ds):\n    return ds\n"


def test_python_in_a_task_folder_needs_an_opt_in(tmp_path, monkeypatch, data_dir):
    from kdbench.tasks import get_task

    monkeypatch.delenv("KDBENCH_ALLOW_CODE", raising=False)
    kd = _lm_folder(tmp_path, MIRROR + "process_docs: !function utils.docs\n", {"lm/utils.py": UTILS})
    with pytest.raises(KdbenchError, match=r"task user: .*lm/t.yaml:4 \(!function utils.docs\) would run Python from "
                                           r"a task folder; .*--allow-code \(or KDBENCH_ALLOW_CODE=1\)"):
        get_task("user", [kd])
    assert not (tmp_path / "lm" / "IMPORTED").exists()
    assert get_task("user", [kd], allow_code=True).runs_code()  # opted in: built (the code runs when scored)
    monkeypatch.setenv("KDBENCH_ALLOW_CODE", "1")
    assert get_task("user", [kd]).name == "user"


def test_code_reached_through_an_include_outside_the_folder_is_found(tmp_path, monkeypatch, data_dir):
    from kdbench.tasks import get_task

    monkeypatch.delenv("KDBENCH_ALLOW_CODE", raising=False)
    kd = _lm_folder(tmp_path, MIRROR + "include: ../elsewhere/base.yaml\n",
                    {"elsewhere/base.yaml": "process_results: !function helpers.score\n"})
    with pytest.raises(KdbenchError, match=r"elsewhere/base.yaml:1 \(!function helpers.score\)"):
        get_task("user", [kd])


def test_the_mirror_loader_is_data_unless_a_local_file_shadows_it(tmp_path, monkeypatch, data_dir):
    from kdbench.tasks import get_task

    monkeypatch.delenv("KDBENCH_ALLOW_CODE", raising=False)
    kd = _lm_folder(tmp_path, MIRROR)
    assert get_task("user", [kd]).runs_code() is None
    # lm-eval imports lm/kdbench/tasks/lm_eval_tasks.py first when it exists
    (tmp_path / "lm" / "kdbench" / "tasks").mkdir(parents=True)
    (tmp_path / "lm" / "kdbench" / "tasks" / "lm_eval_tasks.py").write_text(UTILS)
    with pytest.raises(KdbenchError, match=r"!function kdbench.tasks.lm_eval_tasks.mirror_dataset"):
        get_task("user", [kd])


def test_tasks_lists_an_lm_eval_task_without_a_dataset(tmp_path, data_dir):
    (tmp_path / "mine.yaml").write_text("name: mine\nfamily: lm_eval\nlm_eval_task: kdbench_sst2\nmetrics: [accuracy]\nmain_score: accuracy\n")
    result = CliRunner().invoke(main, ["tasks", "--include-path", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("mine ") and "lm-eval task kdbench_sst2" in line for line in result.stdout.splitlines())


# --------------------------------------------------------------------------------------------------
# a diverged training is not scored
# --------------------------------------------------------------------------------------------------
def test_a_non_finite_loss_stops_training(tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    from kdbench.config import TrainConfig
    from kdbench.distill.trainer import train

    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=64))
    features = [dict(tokenizer(f"sentence {i}")) for i in range(8)]

    def nan_loss(outputs, idx, batch):
        return outputs.logits.sum() * float("nan")

    with pytest.raises(KdbenchError, match=r"the loss is nan at step 1: training diverged"):
        train(model, tokenizer, features, TrainConfig(epochs=1, batch_size=4), nan_loss, dtype="fp32")
    assert torch.isnan(next(model.parameters())).any()  # what would have been scored
