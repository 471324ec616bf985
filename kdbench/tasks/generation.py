"""Generative reasoning tasks (GSM8K and any question/answer set with a numeric final answer):
greedy generation from a prompt, final-answer extraction, exact match.

Prompt (``prompt`` in the YAML):
* ``style: chat`` — the model's chat template (``tokenizer.apply_chat_template``) with an optional
  system message and a user message ``user`` with ``{question}`` filled in; ``shots`` worked
  examples from the train split come first as user/assistant turns.
* ``style: fewshot`` — plain text: ``shots`` train examples formatted ``template`` + " " + answer,
  joined by ``separator``, then the question's ``template`` ("Question: ...\\nAnswer:").
Shots are drawn once from the shuffled train split with ``shot_seed`` (the same for every model).

Answers (:mod:`kdbench.metrics.answers`): gold = the number after ``####``; prediction = the
number after the last ``####`` / "the answer is", else the last number of the generation.

Metrics (:mod:`kdbench.metrics.generation`): ``exact_match`` = mean 1[pred = gold];
``extraction_rate`` = share of generations with a number at all. Pair metric ``answer_agreement`` =
mean 1[student and teacher extracted the same answer] (an unextracted answer agrees with nothing).
Every CI is a percentile bootstrap over questions.

With ``eval.generated_text``, the pair metrics on generated text (:mod:`kdbench.tasks.generated_text`)
are added from the first ``rows`` generations of each model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field

from kdbench.backends import engines
from kdbench.backends.causal_lm import CausalLMBackend
from kdbench.data import LoadedSplit
from kdbench.errors import KdbenchError
from kdbench.metrics.answers import extract_answer, gold_answer
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.predictions.generated import GeneratedText
from kdbench.predictions.generation import GenerationPredictions
from kdbench.registry import FAMILIES
from kdbench.tasks.base import LoadedModel, RunSettings, Task, TaskSpecBase, unknown_metric
from kdbench.yamlio import StrictModel

QUESTION = "{question}"


class QAColumns(StrictModel):
    question: str = "question"
    answer: str = Field("answer", description="the gold solution, ending with '#### <number>'")
    id: str | None = Field(None, description="stable example id column; row number when absent")


class PromptSpec(StrictModel):
    style: Literal["chat", "fewshot"] = "chat"
    system: str | None = Field(None, description="chat: system message; null keeps the chat template's default")
    user: str = Field(QUESTION, description="chat: the user message, {question} filled in")
    template: str = Field("Question: {question}\nAnswer:", description="fewshot: how a question is written")
    separator: str = Field("\n\n", description="fewshot: between examples")
    shots: int = Field(0, ge=0, description="worked examples from the train split before the question")
    shot_seed: int = Field(1234, description="which train examples are the shots (shuffle seed)")


class GenerationSettings(StrictModel):
    max_new_tokens: int = Field(256, gt=0)
    stop: list[str] = Field(default_factory=list, description="generation is cut before the first of these")


class GenerationSpec(TaskSpecBase):
    columns: QAColumns = Field(default_factory=QAColumns)
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)


@dataclass
class GenerationData:
    split: LoadedSplit
    questions: list[str]
    solutions: list[str]  # the gold solution texts
    gold: list[str | None]  # normalised gold answers
    ids: list[str]
    shots: list[tuple[str, str]] = field(default_factory=list)  # (question, solution) shown before each question
    shot_ids: list[str] = field(default_factory=list)


@FAMILIES.register("reasoning", head="causal_lm", kind="generation")
class GenerationTask(Task):
    Spec = GenerationSpec

    @classmethod
    def check_spec(cls, spec: GenerationSpec) -> tuple[tuple, str] | None:
        problem = unknown_metric(spec)
        if problem:
            return problem
        key = "user" if spec.prompt.style == "chat" else "template"
        if QUESTION not in getattr(spec.prompt, key):
            return ("prompt", key), f"needs the placeholder {QUESTION}"
        if spec.prompt.shots and spec.dataset.train_split is None:
            return ("prompt", "shots"), "shots are drawn from dataset.train_split, which is null"
        return None

    # data ---------------------------------------------------------------------------------------
    def load_data(self, split: str, rows: int | None = None, shuffle_seed: int | None = None) -> GenerationData:
        cols = self.spec.columns
        loaded = self.load(split, rows, shuffle_seed, [cols.question, cols.answer, cols.id])
        questions = [str(q) for q in loaded.rows[cols.question]]
        solutions = [str(a) for a in loaded.rows[cols.answer]]
        ids = [str(x) for x in (loaded.rows[cols.id] if cols.id else range(len(questions)))]
        return GenerationData(loaded, questions, solutions, [gold_answer(s) for s in solutions], ids)

    def train_data(self, rows: int | None, seed: int) -> GenerationData:
        if self.spec.dataset.train_split is None:
            raise KdbenchError(f"task {self.name}: no training split is defined (dataset.train_split)")
        return self.load_data(self.spec.dataset.train_split, rows, shuffle_seed=seed)

    def eval_data(self, rows: int | None) -> GenerationData:
        data = self.load_data(self.spec.dataset.eval_split, rows)
        missing = [i for i, g in zip(data.ids, data.gold) if g is None]
        if missing:
            raise KdbenchError(f"task {self.name}: example {missing[0]} of {self.spec.dataset.eval_split} has no "
                               f"'#### <number>' gold answer in column {self.spec.columns.answer!r}")
        if self.spec.prompt.shots:
            pool = self.load_data(self.spec.dataset.train_split, self.spec.prompt.shots,
                                  shuffle_seed=self.spec.prompt.shot_seed)
            data.shots = list(zip(pool.questions, pool.solutions))
            data.shot_ids = pool.ids
        return data

    def dataset_record(self, data: GenerationData) -> dict:
        d = self.spec.dataset
        record = {**data.split.reference(), "rows": len(data.questions)}
        if data.shots:
            record["shots"] = {"split": d.train_split, "seed": self.spec.prompt.shot_seed, "ids": data.shot_ids}
        return record

    def training_texts(self, split: GenerationData, tokenizer=None) -> list[tuple[str, str]]:
        """(prompt, completion) pairs for KD training, prompted exactly as at evaluation (no shots):
        the completion is the gold solution closed by the end of the turn (chat) or EOS (fewshot)."""
        eos = getattr(tokenizer, "eos_token", None) or ""
        if self.spec.prompt.style == "chat":
            if tokenizer is None:
                raise KdbenchError(f"task {self.name}: chat prompts need the tokenizer (training_texts(split, tokenizer))")
            return [(self.prompt(tokenizer, q, []), f"{a}{eos}") for q, a in zip(split.questions, split.solutions)]
        return [(self.prompt(tokenizer, q, []), f" {a}{eos}") for q, a in zip(split.questions, split.solutions)]

    def stop_strings(self) -> list[str]:
        return list(self.spec.generation.stop)

    # prompts ------------------------------------------------------------------------------------
    def prompt(self, tokenizer, question: str, shots: list[tuple[str, str]]) -> str:
        """The text the model continues (see the module docstring)."""
        p = self.spec.prompt
        if p.style == "fewshot":
            def ask(q: str) -> str:
                return p.template.replace(QUESTION, q)
            return p.separator.join([f"{ask(q)} {a}" for q, a in shots] + [ask(question)])
        if getattr(tokenizer, "chat_template", None) is None:
            raise KdbenchError(f"task {self.name}: prompt.style chat, but the tokenizer has no chat template "
                               "(use prompt.style: fewshot)")
        messages = [{"role": "system", "content": p.system}] if p.system is not None else []
        for q, a in shots:
            messages += [{"role": "user", "content": p.user.replace(QUESTION, q)}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": p.user.replace(QUESTION, question)})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # models and predictions ----------------------------------------------------------------------
    def load_model(self, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
        return LoadedModel(load_for_head(model_id, self.head, revision, device).eval(), load_tokenizer(model_id, revision), model_id)

    def backend(self, model: LoadedModel, settings: RunSettings) -> CausalLMBackend:
        return engines.for_task(model, settings, self.max_length(settings))

    def predict(self, model: LoadedModel, data: GenerationData, role: str, settings: RunSettings) -> GenerationPredictions:
        with self.backend(model, settings) as backend:
            return self._predict(backend, model, data, role, settings)

    def _predict(self, backend: CausalLMBackend, model: LoadedModel, data: GenerationData,
                 role: str, settings: RunSettings) -> GenerationPredictions:
        prompts = [self.prompt(model.tokenizer, q, data.shots) for q in data.questions]
        gen = self.spec.generation
        longest = max((len(backend.encode(p)) for p in prompts), default=0)
        if longest + gen.max_new_tokens > backend.max_length:
            raise KdbenchError(
                f"task {self.name}: a prompt of {longest} tokens plus max_new_tokens {gen.max_new_tokens} exceeds "
                f"max_length {backend.max_length} (raise max_length in the suite or task, or use fewer shots)")
        outputs = backend.generations(prompts, gen.max_new_tokens, gen.stop)
        texts = [g.text for g in outputs]
        preds = GenerationPredictions(self.name, role, data.ids, texts, [extract_answer(t) for t in texts], data.gold)
        if settings.eval.generated_text is not None:  # token ids, compared with the teacher's in the pair step
            rows = settings.eval.generated_text.rows or len(outputs)
            preds.generated = GeneratedText(role, data.ids[:rows], [g.prompt_ids for g in outputs[:rows]],
                                            [np.asarray(g.ids, dtype=np.int64) for g in outputs[:rows]])
        return preds

    def speculative_prompts(self, model: LoadedModel, data: GenerationData, rows: int | None) -> list[list[int]]:
        """``eval.speculative``: the first ``rows`` evaluation prompts as token ids (as generation encodes them)."""
        tok = model.tokenizer
        return [tok(self.prompt(tok, q, data.shots), add_special_tokens=False)["input_ids"]
                for q in data.questions[:rows]]

    def efficiency_inputs(self, data: GenerationData) -> tuple[list[str], list[str] | None]:
        """The questions (the prompt pass, not generation, is what the efficiency figures time)."""
        return data.questions, None
