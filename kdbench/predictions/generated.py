"""A causal LM's own greedy generations on a slice of the evaluation prompts, and the per-token
teacher–student values on those tokens against each model it is compared with
(``eval.generated_text``). The pair metrics on generated text are aggregated from two of these (a
student's and the teacher's), never by re-running a model."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GeneratedText:
    """``tokens[i]``: the ids ``role`` generated after ``prompt_ids[i]`` (greedy, up to and
    including the first end-of-sequence token); ``compared[other]``: per-token values on those
    tokens against model ``other`` (``top1_agreement``, ``forward_kl``, ``reverse_kl``, ``tvd``,
    ``acceptance_rate``; one array per example), the teacher always the target."""

    role: str
    example_ids: list[str]
    prompt_ids: list[list[int]]
    tokens: list[np.ndarray]
    compared: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)
