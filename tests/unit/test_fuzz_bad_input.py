"""A table of careless and hostile inputs to every subcommand: suite overrides (``--set``, flags),
task YAML fields (an ``--include-path`` folder), suite files, records. Each must fail fast with
exit 2, exactly one line on stderr naming the problem, no traceback, no run or ``.partial`` folder
and nothing written anywhere but the named folders (the test runs in a fresh folder that is also
the working directory and holds KDBENCH_CACHE_DIR, and checks that nothing appeared in it).

The CLI runs in-process (click's CliRunner): most cases stop in config validation or the
pre-flight (milliseconds once the first has imported torch and transformers); the few that must
load a model to see its missing weights take a second or two. The whole table: ~1 minute on 2 cores.
"""
from __future__ import annotations

import json
import traceback

import pytest
import yaml
from click.testing import CliRunner

from kdbench.cli import main
from tests.helpers import TEACHER_ID

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
L3 = "sentence-transformers/paraphrase-MiniLM-L3-v2"

# an SST-2 task as a user would copy it into an include folder; the cases below break one field
TASK = yaml.safe_load("""
name: mytask
family: glue
dataset: {id: nyu-mll/glue, config: sst2, train_split: train, eval_split: validation}
columns: {text: sentence, label: label, id: idx}
label_names: [negative, positive]
metrics: [accuracy]
main_score: accuracy
pair_metrics: [label_loyalty]
""")

RETRIEVAL = {"name": "myret", "family": "retrieval", "dataset": {"id": "BeIR/dbpedia-entity-5k", "eval_split": "test"},
             "max_length": 256, "query_max_length": 64, "metrics": ["ndcg_at_10"], "main_score": "ndcg_at_10"}


def _task(**changes) -> dict:
    task = json.loads(json.dumps(TASK))
    for key, value in changes.items():
        node, *path = key.split("__")
        target = task
        for part in [node, *path][:-1]:
            target = target[part]
        target[([node, *path])[-1]] = value
    return task


def _files(t, files: dict) -> None:
    for rel, content in files.items():
        path = t / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, dict):
            path.write_text(yaml.safe_dump(content))
        else:
            path.write_text(content)


def run(*args):
    """train-and-eval with the named folders inside the test folder."""
    return ["train-and-eval", *args, "--reports-dir", "{t}/reports", "--leaderboard-dir", "{t}/lb"]


def ev(*args):
    return ["eval", *args, "--reports-dir", "{t}/reports", "--leaderboard-dir", "{t}/lb"]


def gap(*args):
    return ["capacity-gap", "--suite", "quickstart", *args, "--reports-dir", "{t}/reports", "--leaderboard-dir",
            "{t}/lb"]


def mytask(**changes):
    """train-and-eval of the include folder's task with ``changes`` to its YAML."""
    return run("--set", "tasks=[mytask]", "--include-path", "{t}/tasks"), {"tasks/mytask.yaml": _task(**changes)}


def _make_run(t, name, mismatch=False):
    from tests.helpers.reports import edit_record, make_run

    folder = make_run(t / "runs", name)
    if mismatch:  # a record whose metric the samples do not give (the gate would refuse it later)
        edit_record(folder, lambda r: r["results"]["sst2"]["student"]["accuracy"].update(value=0.99))
    return folder


EVIL_LM_TASK = {
    "lm/t.yaml": "task: evil_sst2\ninclude: base.yaml\n",
    "lm/base.yaml": ("dataset_path: json\noutput_type: multiple_choice\nvalidation_split: validation\n"
                     "process_docs: !function utils.process_docs\ndoc_to_text: '{{sentence}}'\ndoc_to_target: label\n"
                     "doc_to_choice: [negative, positive]\nmetric_list: [{metric: acc}]\n"),
    "lm/utils.py": "import pathlib\npathlib.Path(__file__).with_name('IMPORTED').write_text('x')\n"
                   "def process_docs(ds):\n    return ds\n",
    "tasks/evil.yaml": "name: evil\nfamily: lm_eval\nlm_eval_task: evil_sst2\ninclude_path: ../lm\nmetrics: [accuracy]\nmain_score: accuracy\n",
}

# (id, argv, files to create first, environment, what the one line must say)
CASES = [
    # --- train-and-eval: the command's own flags name themselves --------------------------------
    ("epochs-1e30", run("--epochs", "1e30"), {}, {}, "--epochs 1e+30: Input should be less than or equal to 1000"),
    ("epochs-0", run("--epochs", "0"), {}, {}, "--epochs 0.0: Input should be greater than 0"),
    ("epochs-nan", run("--epochs", "nan"), {}, {}, "--epochs nan: Input should be a finite number"),
    ("epochs-text", run("--epochs", "abc"), {}, {}, "Invalid value for '--epochs'"),
    ("train-rows-0", run("--train-rows", "0"), {}, {}, "--train-rows 0: Input should be greater than 0"),
    ("eval-rows-negative", run("--eval-rows", "-5"), {}, {}, "--eval-rows -5: Input should be greater than 0"),
    ("seed-negative", run("--seed", "-1"), {}, {}, "--seed -1: Input should be greater than or equal to 0"),
    ("seed-20-digits", run("--seed", "12345678901234567890"), {}, {}, "--seed 12345678901234567890: Input should be"),
    ("seeds-repeated", run("--seeds", "0,0"), {}, {}, "--seeds 0,0: Value error, repeats a seed"),
    ("seeds-not-ints", run("--seeds", "0,x"), {}, {}, "--seeds '0,x': expected comma-separated integers"),
    ("layers-repeated", run("--layers", "0,0"), {}, {}, "--layers 0,0: Value error, student.layers repeats a layer"),
    ("layers-not-ints", run("--layers", "0,five"), {}, {}, "--layers '0,five': expected comma-separated integers"),
    ("layers-beyond-teacher", run("--layers", "0,9"), {}, {}, "student.layers [9]: the teacher has layers 0..5"),
    ("layers-negative", run("--layers", "-1,2"), {}, {}, "student.layers [-1]: the teacher has layers 0..5"),
    ("teacher-unknown", run("--teacher", "no-such-org/no-such-model"), {}, {},
     "model 'no-such-org/no-such-model': cannot load its config"),
    ("dtype-unknown", run("--dtype", "fp16"), {}, {}, "Invalid value for '--dtype'"),
    ("option-unknown", run("--epoch", "3"), {}, {}, "No such option"),
    ("backend-vllm-classifier", run("--backend", "vllm"), {}, {}, "--backend vllm: task sst2"),
    ("resume-with-flags", ["train-and-eval", "--resume", "{t}", "--epochs", "1"], {}, {},
     "--resume continues the run with its own suite, options and folders; drop ['--epochs']"),
    # --- --set: malformed, out of range, typo-sized -------------------------------------------
    ("set-malformed-yaml", run("--set", "distill.alpha=[0.5"), {}, {}, "--set distill.alpha=[0.5: the value is not valid YAML"),
    ("set-not-key-value", run("--set", "distill.alpha"), {}, {}, "is not KEY=VALUE"),
    ("set-empty-key", run("--set", "=1"), {}, {}, "is not KEY=VALUE"),
    ("set-empty-part", run("--set", "distill..alpha=1"), {}, {}, "is not KEY=VALUE"),
    ("set-not-a-section", run("--set", "distill.alpha.x=1"), {}, {}, "'alpha' is not a section"),
    ("set-unknown-key", run("--set", "distill.alfa=0.3"), {}, {}, "key 'distill.alfa': Extra inputs are not permitted"),
    ("set-alpha-above-1", run("--set", "distill.alpha=2"), {}, {}, "key 'distill.alpha': Input should be less than or equal to 1"),
    ("set-temperature-0", run("--set", "distill.temperature=0"), {}, {}, "key 'distill.temperature': Input should be greater than 0"),
    ("set-temperature-inf", run("--set", "distill.temperature=.inf"), {}, {}, "key 'distill.temperature': Input should be a finite number"),
    ("set-lr-1e30", run("--set", "distill.lr=1e30"), {}, {}, "key 'distill.lr': Input should be less than or equal to 1"),
    ("set-batch-20-digits", run("--set", "distill.batch_size=12345678901234567890"), {}, {},
     "key 'distill.batch_size': Input should be less than or equal to 4096"),
    ("set-batch-0", run("--set", "distill.batch_size=0"), {}, {}, "key 'distill.batch_size': Input should be greater than 0"),
    ("set-batch-text", run("--set", "distill.batch_size=lots"), {}, {}, "key 'distill.batch_size': Input should be a valid integer"),
    ("set-accum-1e6", run("--set", "distill.grad_accum_steps=1000000"), {}, {},
     "key 'distill.grad_accum_steps': Input should be less than or equal to 4096"),
    ("set-accum-above-data", run("--set", "distill.grad_accum_steps=1000"), {}, {},
     "distill: 32000 examples per optimiser step (batch_size 32 × grad_accum_steps 1000 × 1 processes), more than "
     "the 8000 training examples"),
    ("set-batch-above-data", run("--train-rows", "100", "--set", "teacher.finetune.batch_size=128"), {}, {},
     "teacher.finetune.batch_size 128 is more than the 100 training examples"),
    ("set-teacher-layers-50", run("--set", "teacher.layers=50"), {}, {},
     f"teacher.layers 50: model '{TEACHER_ID}' has 6 layers"),
    ("set-teacher-layers-0", run("--set", "teacher.layers=0"), {}, {}, "key 'teacher.layers': Input should be greater than 0"),
    ("set-teacher-layers-no-finetune", run("--set", "teacher.layers=2", "--set", "teacher.finetune=null"), {}, {},
     "teacher.layers truncates a teacher before fine-tuning; it needs teacher.finetune"),
    ("set-max-length-1", run("--set", "max_length=1"), {}, {},
     f"max_length 1 leaves no room for text: model '{TEACHER_ID}' adds 2 special tokens (use at least 3)"),
    ("set-max-length-above-model", run("--set", "max_length=100000"), {}, {},
     f"max_length 100000: model '{TEACHER_ID}' reads at most 512 tokens"),
    ("set-max-length-0", run("--set", "max_length=0"), {}, {}, "key 'max_length': Input should be greater than 0"),
    ("set-per-task-max-length-1", run("--set", "per_task.sst2.max_length=1"), {}, {}, "max_length 1 leaves no room for text"),
    ("set-per-task-unknown", run("--set", "per_task.nope.max_length=32"), {}, {}, "'nope' is not one of the suite's tasks"),
    ("set-latency-batches-0", run("--set", "eval.latency_batches=[0]"), {}, {}, "key 'eval.latency_batches.0': Input should be greater than 0"),
    ("set-latency-batches-empty", run("--set", "eval.latency_batches=[]"), {}, {}, "key 'eval.latency_batches': List should have at least 1 item"),
    ("set-latency-batches-huge", run("--set", "eval.latency_batches=[99999999999]"), {}, {},
     "key 'eval.latency_batches.0': Input should be less than or equal to 4096"),
    ("set-eval-batch-0", run("--set", "eval.batch_size=0"), {}, {}, "key 'eval.batch_size': Input should be greater than 0"),
    ("set-bootstrap-10", run("--set", "eval.bootstrap_samples=10"), {}, {}, "key 'eval.bootstrap_samples': Input should be greater than or equal to 100"),
    ("set-bootstrap-huge", run("--set", "eval.bootstrap_samples=12345678901234567890"), {}, {},
     "key 'eval.bootstrap_samples': Input should be less than or equal to 10000"),
    ("set-confidence-1.5", run("--set", "eval.confidence=1.5"), {}, {}, "key 'eval.confidence': Input should be less than 1"),
    ("set-ece-bins-huge", run("--set", "eval.ece_bins=10000000000"), {}, {}, "key 'eval.ece_bins': Input should be less than or equal to 1000"),
    ("set-loss-unknown", run("--set", "distill.loss=nope"), {}, {}, "key 'distill.loss'"),
    ("set-loss-args-unknown", run("--set", "distill.loss_args.beta=5"), {}, {}, "key 'distill.loss_args'"),
    ("set-feature-pair-out-of-range", run("--set", "distill.features=[{loss: hidden_mse, layer_map: [[0, 9]]}]"), {}, {},
     "distill.features hidden_mse: layer pair (0, 9) out of range (student 0..2, teacher 0..6)"),
    ("set-feature-heads-differ", run("--set", "student={builder: config, config: {num_hidden_layers: 2, num_attention_heads: 4}}",
                                     "--set", "distill.features=[{loss: attention_transfer}]"), {}, {},
     "distill.features attention_transfer: the student has 4 attention heads and the teacher 12"),
    ("set-student-config-too-deep", run("--set", "student={builder: config, config: {num_hidden_layers: 9}}"), {}, {},
     "student.config: num_hidden_layers 9 must be in 1..6"),
    ("set-student-config-unknown", run("--set", "student={builder: config, config: {nope: 1}}"), {}, {},
     "student.config: BertConfig has no setting 'nope'"),
    ("set-student-config-indivisible", run("--set", "student={builder: config, config: {hidden_size: 100}}"), {}, {},
     "student.config: hidden_size 100 is not divisible by num_attention_heads 12"),
    ("set-student-config-text", run("--set", "student={builder: config, config: {hidden_size: wide}}"), {}, {},
     "student.config: hidden_size 'wide': TypeError: Field 'hidden_size' expected int, got str"),
    ("set-student-rule-too-deep", run("--set", "student={layer_rule: tinybert, num_layers: 9}"), {}, {},
     "a student of 9 layers needs 1..6"),
    ("set-student-layers-and-rule", run("--set", "student.layer_rule=tinybert"), {}, {},
     "student.layers and student.layer_rule both given"),
    ("set-student-pretrained-no-model", run("--set", "student.builder=pretrained"), {}, {}, "builder pretrained needs student.model"),
    ("set-tasks-empty", run("--set", "tasks=[]"), {}, {}, "key 'tasks': List should have at least 1 item"),
    ("set-tasks-unknown", run("--set", "tasks=[nope]"), {}, {}, "unknown task 'nope'"),
    ("set-seed-negative", run("--set", "distill.seed=-1"), {}, {}, "key 'distill.seed': Input should be greater than or equal to 0"),
    ("set-dtype-unknown", run("--set", "dtype=fp16"), {}, {}, "key 'dtype'"),
    ("set-two-teacher-sections", run("--set", f"teachers=[{{model: {TEACHER_ID}}}, {{model: {L3}}}]"), {}, {},
     "teacher and teachers both given"),
    ("teacher-without-trained-head", run("--set", "teacher.finetune=null", "--train-rows", "64"), {}, {},
     f"model '{TEACHER_ID}' as a classification model (BertForSequenceClassification): weights not in the checkpoint "
     "would be random: classifier.bias, classifier.weight"),
    # --- suite files ----------------------------------------------------------------------------
    ("suite-not-utf8", run("--suite", "{t}/s.yaml"), {"s.yaml": b"name: s\ndescription: \xff\xfe caf\xe9\n"}, {},
     "s.yaml: not UTF-8 text (byte 0xff at offset 21)"),
    ("suite-bad-yaml", run("--suite", "{t}/s.yaml"), {"s.yaml": "name: [s\n"}, {}, "s.yaml:2: invalid YAML"),
    ("suite-a-list", run("--suite", "{t}/s.yaml"), {"s.yaml": "- a\n- b\n"}, {}, "expected a mapping at the top level"),
    ("suite-missing", run("--suite", "{t}/none.yaml"), {}, {}, "suite file not found"),
    ("suite-unknown", run("--suite", "nope"), {}, {}, "unknown suite 'nope'"),
    ("suite-a-folder", run("--suite", "{t}/d.yaml"), {"d.yaml/x": ""}, {}, "suite file not found"),
    # --- task YAML fields, through --include-path --------------------------------------------------
    ("task-max-length-0", *mytask(max_length=0), {}, "mytask.yaml:15: key 'max_length': Input should be greater than 0"),
    ("task-max-length-1", *mytask(max_length=1), {}, "task mytask: the task's max_length 1 leaves no room for text"),
    ("task-one-label", *mytask(label_names=["only"]), {}, "key 'label_names': List should have at least 2 items"),
    ("task-unknown-metric", *mytask(metrics=["accuracy", "nope"]), {}, "key 'metrics.1': unknown classifier metric 'nope'"),
    ("task-unknown-family", *mytask(family="nope"), {}, "key 'family': unknown family 'nope'"),
    ("task-unknown-key", *mytask(colums={"text": "sentence"}), {}, "key 'colums': Extra inputs are not permitted"),
    ("task-missing-column", *mytask(columns__text="no_such_column"), {}, "no column 'no_such_column' (columns: sentence, label, idx)"),
    ("task-missing-dataset", *mytask(dataset__id="nobody/nothing"), {}, "dataset nobody/nothing/sst2/train (not in KDBENCH_DATA_DIR="),
    ("task-missing-eval-split", *mytask(dataset__eval_split="nope"), {}, "no split 'nope'"),
    ("task-not-utf8", run("--set", "tasks=[mytask]", "--include-path", "{t}/tasks"),
     {"tasks/mytask.yaml": b"name: mytask\n# \xe9\n"}, {}, "mytask.yaml: not UTF-8 text"),
    ("task-python-tag-in-kdbench-yaml", run("--set", "tasks=[mytask]", "--include-path", "{t}/tasks"),
     {"tasks/mytask.yaml": "name: !!python/name:os.system mytask\n"}, {}, "mytask.yaml:1: invalid YAML"),
    ("task-include-path-missing", run("--include-path", "{t}/none"), {}, {}, "include path"),
    ("task-empty-dataset-file", *mytask(dataset={"id": "me/empty", "train_split": "train", "eval_split": "validation"}),
     {"KDBENCH_DATA_DIR": "{t}/mirror"},
     "dataset me/empty/default/train: cannot load (StopIteration; is the file empty?)"),
    ("lm-eval-task-runs-python", ev("--suite", "lm_eval", "--teacher", SMOL, "--set", "tasks=[evil]",
                                    "--include-path", "{t}/tasks"), EVIL_LM_TASK, {},
     "lm/base.yaml:4 (!function utils.process_docs) would run Python from a task folder; task files are data unless "
     "you opt in: --allow-code (or KDBENCH_ALLOW_CODE=1)"),
    # --- kdbench eval ----------------------------------------------------------------------------
    ("eval-no-model", ev("--suite", "quickstart"), {}, {}, "name at least one model"),
    ("eval-model-not-role-id", ev("--suite", "quickstart", "--model", "baseline"), {}, {}, "is not ROLE=ID"),
    ("eval-eval-rows-0", ev("--suite", "quickstart", "--teacher", TEACHER_ID, "--eval-rows", "0"), {}, {},
     "--eval-rows 0: Input should be greater than 0"),
    ("eval-max-length-1", ev("--suite", "quickstart", "--teacher", TEACHER_ID, "--set", "max_length=1"), {}, {},
     "task sst2, teacher: max_length 1 leaves no room for text"),
    ("eval-query-length-above-model", ev("--suite", "retrieval", "--teacher", TEACHER_ID, "--set", "tasks=[myret]",
                                         "--include-path", "{t}/tasks"),
     {"tasks/myret.yaml": {**RETRIEVAL, "query_max_length": 4096}}, {},
     f"task myret, teacher: the task's query_max_length 4096: model '{TEACHER_ID}' reads at most 512 tokens"),
    ("eval-doc-length-1", ev("--suite", "retrieval", "--teacher", TEACHER_ID, "--set", "tasks=[myret]",
                             "--include-path", "{t}/tasks"), {"tasks/myret.yaml": {**RETRIEVAL, "max_length": 1}}, {},
     "task myret, teacher: the task's max_length 1 leaves no room for text"),
    ("eval-encoder-as-classifier", ev("--suite", "quickstart", "--teacher", TEACHER_ID, "--eval-rows", "8"), {}, {},
     f"model '{TEACHER_ID}' as a classification model (BertForSequenceClassification): weights not in the checkpoint"),
    ("eval-causal-lm-as-classifier", ev("--suite", "quickstart", "--teacher", SMOL, "--eval-rows", "8"), {}, {},
     f"model '{SMOL}' as a classification model (LlamaForSequenceClassification): weights not in the checkpoint "
     "would be random: score.weight"),
    ("eval-encoder-as-ner", ev("--suite", "ner", "--teacher", TEACHER_ID, "--eval-rows", "8"), {}, {},
     "as a token_classification model (BertForTokenClassification): weights not in the checkpoint"),
    ("eval-encoder-as-causal-lm", ev("--suite", "lm", "--teacher", TEACHER_ID, "--eval-rows", "4"), {}, {},
     "as a causal_lm model (BertLMHeadModel): weights not in the checkpoint would be random: cls.predictions.bias"),
    # --- capacity-gap ----------------------------------------------------------------------------
    ("gap-no-suite", ["capacity-gap", "--teachers", TEACHER_ID], {}, {}, "--suite is required"),
    ("gap-seeds-repeated", gap("--teachers", TEACHER_ID, "--seeds", "1,1"), {}, {}, "--seeds '1,1' repeats a seed"),
    ("gap-layers-0", gap("--teacher-layers", f"{TEACHER_ID}:0,2"), {}, {}, "is not MODEL:K1,K2"),
    ("gap-layers-beyond-teacher", gap("--teacher-layers", f"{TEACHER_ID}:1,9", "--student", "config:num_hidden_layers=1"),
     {}, {}, f"teacher.layers 9: model '{TEACHER_ID}' has 6 layers"),
    ("gap-student-bad-yaml", gap("--teachers", TEACHER_ID, "--student", "config:num_hidden_layers=[1"), {}, {},
     "--student 'config:num_hidden_layers=[1': a value is not valid YAML"),
    ("gap-student-too-deep", gap("--teacher-layers", f"{TEACHER_ID}:2,4", "--student", "config:num_hidden_layers=3"),
     {}, {}, "student.config: num_hidden_layers 3 must be in 1..2"),
    ("gap-jobs-0", gap("--teachers", TEACHER_ID, "--jobs", "0"), {}, {}, "Invalid value for '--jobs'"),
    ("gap-max-length-1", gap("--teacher-layers", f"{TEACHER_ID}:1,2", "--student", "config:num_hidden_layers=1",
                             "--set", "max_length=1"), {}, {}, "max_length 1 leaves no room for text"),
    # --- gate, baseline promote, tasks --------------------------------------------------------------
    ("gate-bootstrap-huge", ["gate", "--baseline", "a", "--candidate", "b", "--bootstrap-samples", "12345678901234567890"],
     {}, {}, "Invalid value for '--bootstrap-samples'"),
    ("gate-alpha-2", ["gate", "--baseline", "{t}/runs/base", "--candidate", "{t}/runs/base", "--alpha", "2"],
     {"runs/base": "run"}, {}, "--alpha 2.0: must be between 0 and 1"),
    ("gate-tolerance-text", ["gate", "--baseline", "{t}/runs/base", "--candidate", "{t}/runs/base", "--tolerance",
                             "accuracy=x"], {"runs/base": "run"}, {}, "--tolerance 'accuracy=x'"),
    ("gate-missing-record", ["gate", "--baseline", "{t}/none.json", "--candidate", "{t}/none.json"], {}, {},
     "no such run record"),
    ("promote-metrics-disagree-with-samples", ["baseline", "promote", "{t}/runs/bad", "--name", "b", "--baselines-dir",
                                               "{t}/baselines"], {"runs/bad": "mismatch"}, {},
     "not promoted, the gate would refuse it as a baseline: baseline "),
    ("promote-bad-name", ["baseline", "promote", "{t}/runs/base", "--name", "../x", "--baselines-dir", "{t}/baselines"],
     {"runs/base": "run"}, {}, "baseline name '../x'"),
    ("tasks-include-path-missing", ["tasks", "--include-path", "{t}/none"], {}, {}, "include path"),
    ("tasks-not-utf8", ["tasks", "--include-path", "{t}/tasks"], {"tasks/x.yaml": b"\xff"}, {}, "x.yaml: not UTF-8 text"),
    ("losses-level-unknown", ["losses", "--level", "nope"], {}, {}, "Invalid value for '--level'"),
]


def _tree(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize("argv, files, env, expected", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_fails_fast_with_one_line(argv, files, env, expected, tmp_path, monkeypatch, data_dir):
    t = tmp_path
    (t / "cache").mkdir()
    runs = {k: v for k, v in files.items() if v in ("run", "mismatch")}
    _files(t, {k: v for k, v in files.items() if k not in runs})
    for rel, kind in runs.items():
        _make_run(t, rel.split("/")[-1], mismatch=kind == "mismatch")
    if "KDBENCH_DATA_DIR" in env:  # a mirror holding one empty training file
        _files(t, {"mirror/me/empty/default/train.jsonl": "", "mirror/me/empty/default/validation.jsonl": ""})
    monkeypatch.chdir(t)
    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(t / "cache"))
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace("{t}", str(t)))
    before = _tree(t)

    result = CliRunner().invoke(main, [a.replace("{t}", str(t)) for a in argv])

    if result.exception is not None and not isinstance(result.exception, SystemExit):
        pytest.fail("".join(traceback.format_exception(*result.exc_info)))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("kdbench: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    new = _tree(t) - before
    assert new <= {"reports"} and not any(".partial" in p for p in _tree(t)), sorted(new)
    assert not (t / "lm" / "IMPORTED").exists()  # task-folder Python never ran
