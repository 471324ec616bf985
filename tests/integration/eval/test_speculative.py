"""Speculative decoding measured (eval.speculative, kdbench.backends.speculative): the teacher as
target and a draft through transformers' assisted generation and vLLM's draft-model decoding; greedy
outputs identical to the teacher's alone, the target calls and accepted tokens counted (a draft equal
to the target has every token accepted), one-line errors before any work, and `kdbench eval` writing
the record section, the report table and the leaderboard column. SmolLM2-135M-Instruct in fp32, an
8-of-30-layer selection of it as the draft, GSM8K chat prompts."""
import copy
from types import SimpleNamespace

import pytest

from kdbench.backends import speculative
from kdbench.config import SpeculativeConfig
from kdbench.errors import KdbenchError
from kdbench.models.loading import load_for_head
from kdbench.models.students import layer_selection
from kdbench.report.record import read_record
from kdbench.tasks.base import LoadedModel
from tests.helpers import SMOLLM
from tests.helpers.cli import run_kdbench

# fixtures shared with tests/unit/backends/test_speculative.py (pytest finds them as attributes of this module)


LAYERS = [0, 4, 8, 12, 16, 20, 24, 29]
TASK = """name: gsm8k_short
family: reasoning
dataset: {id: openai/gsm8k, config: main, train_split: train, eval_split: test}
generation: {max_new_tokens: 24}
metrics: [exact_match]
main_score: exact_match
pair_metrics: [answer_agreement]
"""


@pytest.fixture(scope="module")
def pair(tok, tmp_path_factory):
    from kdbench.models.loading import save_model

    teacher = load_for_head(SMOLLM, "causal_lm").eval()
    folder = tmp_path_factory.mktemp("draft")
    student = layer_selection(teacher, LAYERS).eval()
    save_model(student, tok, folder)
    return LoadedModel(teacher, tok, SMOLLM), LoadedModel(student, tok, str(folder))


@pytest.fixture(scope="module")
def prompts(tok, data_dir):
    from kdbench.tasks.registry import get_task

    task = get_task("gsm8k")
    return task.speculative_prompts(SimpleNamespace(tokenizer=tok), task.eval_data(2), 2)


def _check_engine(measured, prompts, max_new_tokens, gamma):
    alone = measured["target_alone"]
    assert alone["tokens"] > 0 and alone["tokens_per_s"] == pytest.approx(alone["tokens"] / alone["seconds"], rel=1e-3)
    for role in ("student", "itself"):
        d = measured["drafts"][role]
        assert d["identical_outputs"] and d["identical_rows"] == d["rows"] == len(prompts)  # lossless
        assert d["tokens"] == alone["tokens"]
        assert d["speedup"] == pytest.approx(d["tokens_per_s"] / alone["tokens_per_s"])
        assert 1.0 <= d["tokens_per_target_call"] <= gamma + 1
        assert 0.0 <= d["draft_acceptance_rate"] <= 1.0
    # a draft that is the target itself has every token accepted: γ per full step
    itself = measured["drafts"]["itself"]
    assert itself["draft_acceptance_rate"] > 0.8 and itself["accepted_tokens_per_step"] > 0.8 * gamma
    assert measured["drafts"]["student"]["accepted_tokens_per_step"] < itself["accepted_tokens_per_step"]


@pytest.mark.slow
def test_assisted_generation_is_lossless_and_counted(pair, prompts):
    teacher, student = pair
    cfg = SpeculativeConfig(rows=2, max_new_tokens=24, draft_tokens=4, engines=["hf"])
    itself = LoadedModel(copy.deepcopy(teacher.model), teacher.tokenizer, teacher.source)  # its own calls apart
    out = speculative.measure(teacher, {"student": student, "itself": itself}, prompts, cfg, "fp32", "test")
    _check_engine(out["hf"], prompts, 24, 4)
    assert student.model.generation_config.num_assistant_tokens_schedule != "constant"  # restored after the call


@pytest.mark.slow
def test_vllm_draft_model_decoding_is_lossless_and_counted(pair, prompts):
    from kdbench.backends.vllm_lm import require_vllm

    try:
        require_vllm()
    except KdbenchError as e:
        pytest.skip(str(e))
    teacher, student = pair
    cfg = SpeculativeConfig(rows=2, max_new_tokens=24, draft_tokens=4, engines=["vllm"])
    out = speculative.measure(teacher, {"student": student, "itself": teacher}, prompts, cfg, "fp32", "test")
    _check_engine(out["vllm"], prompts, 24, 4)
    d = out["vllm"]["drafts"]["student"]
    assert d["target_calls"] == d["verification_steps"] + len(prompts)  # vLLM's prefill calls draft nothing


@pytest.mark.parametrize("args, message", [
    (["--suite", "lm", "--teacher", SMOLLM, "--student", SMOLLM], "task gsm8k_text (language_modeling) has no prompts"),
    (["--suite", "reasoning", "--teacher", SMOLLM], "name the target as --teacher and at least one draft"),
    (["--suite", "reasoning", "--student", SMOLLM], "name the target as --teacher and at least one draft"),
])
def test_speculative_setups_that_cannot_work_stop_before_any_work(tmp_path, args, message):
    proc = run_kdbench("eval", *args, "--set", "eval.speculative.rows=1", "--reports-dir", tmp_path / "r",
                       "--leaderboard-dir", tmp_path / "lb")
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_eval_records_speculative_decoding_from_the_cli(tmp_path, data_dir, pair):
    """`kdbench eval --suite reasoning` with eval.speculative (hf): the record's section, the run
    report's table and the leaderboard's "speed-up as a draft" column."""
    _, student = pair
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "gsm8k_short.yaml").write_text(TASK)
    reports, board = tmp_path / "reports", tmp_path / "lb"
    proc = run_kdbench("eval", "--suite", "reasoning", "--include-path", tmp_path / "tasks", "--set", "tasks=[gsm8k_short]",
                       "--teacher", SMOLLM, "--student", student.source, "--eval-rows", "2", "--dtype", "fp32",
                       "--set", "eval.speculative.rows=2", "--set", "eval.speculative.max_new_tokens=16",
                       "--set", "eval.bootstrap_samples=200", "--set", "eval.efficiency=false",
                       "--reports-dir", reports, "--leaderboard-dir", board)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list(reports.iterdir())
    spec = read_record(run)["speculative"]["gsm8k_short"]
    assert spec["target"] == "teacher" and spec["rows"] == 2 and spec["draft_tokens"] == 5
    draft = spec["engines"]["hf"]["drafts"]["student"]
    assert draft["identical_outputs"] and draft["speedup"] > 0 and draft["accepted_tokens_per_step"] >= 0
    assert "Speculative decoding: the teacher as target" in (run / "report.html").read_text()
    page = (board / "suite-reasoning.html").read_text()
    assert "speed-up as a draft" in page and f"{draft['speedup']:.2f}×" in page
