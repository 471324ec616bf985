"""Speculative decoding measured (eval.speculative, kdbench.backends.speculative): the teacher as
target and a draft through transformers' assisted generation and vLLM's draft-model decoding; greedy
outputs identical to the teacher's alone, the target calls and accepted tokens counted (a draft equal
to the target has every token accepted), one-line errors before any work, and `kdbench eval` writing
the record section, the report table and the leaderboard column. SmolLM2-135M-Instruct in fp32, an
8-of-30-layer selection of it as the draft, GSM8K chat prompts."""

import pytest

from kdbench.backends import speculative
from kdbench.config import load_suite
from kdbench.errors import KdbenchError
from kdbench.models.loading import load_tokenizer
from kdbench.tasks.base import LoadedModel
from tests.helpers import SMOLLM


def test_a_draft_with_another_tokenizer_is_refused_in_one_line(tok):
    other = LoadedModel(None, load_tokenizer("sentence-transformers/all-MiniLM-L6-v2"), "all-MiniLM-L6-v2")
    with pytest.raises(KdbenchError, match="the draft student .* tokenise differently") as e:
        speculative.check("task gsm8k", LoadedModel(None, tok, SMOLLM), other, "student")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value, key", [("eval.speculative.draft_tokens=0", "draft_tokens"),
                                        ("eval.speculative.engines=[tgi]", "engines"),
                                        ("eval.speculative.rows=0", "rows")])
def test_bad_speculative_values_are_one_line_errors(value, key):
    with pytest.raises(KdbenchError, match=f"eval.speculative.{key}"):
        load_suite("reasoning", [value])
