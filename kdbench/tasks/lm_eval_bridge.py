"""lm-evaluation-harness tasks as kdbench tasks (family ``lm_eval``, causal LMs).

A kdbench YAML names an lm-eval task (from lm-eval's registry, kdbench's bundled folder
``kdbench/tasks/lm_eval_tasks``, or its own ``include_path`` of lm-eval YAMLs). ``predict`` runs
``lm_eval.simple_evaluate`` on the loaded model (wrapped as :class:`KdbenchLM`) with
``log_samples=True`` and turns lm-eval's per-document samples into Predictions:

* ``multiple_choice``: per document the log-likelihood of every choice;
  p_j = exp(ll_j) / Σ_k exp(ll_k), the softmax over the choices, is the class distribution
  (:class:`ChoicePredictions`). Its argmax is lm-eval's ``acc`` prediction; kdbench's classifier
  metrics (accuracy, ECE, Brier, NLL...) and pair metrics (label/probability loyalty, KL, TVD,
  acceptance rate) use it. Every document must offer the same number of choices.
* ``generate_until``: the greedy generations, the answers lm-eval's filter extracted and lm-eval's
  per-document metric values (:class:`LmEvalGenerationPredictions`); ``answer_agreement`` compares a
  student's answers with its teacher's as for the reasoning family (an answer the filter could not
  extract, its fallback ``[invalid]``, is no answer: two of them do not agree).

A name in ``metrics`` that is not a kdbench classifier metric is one of lm-eval's metrics for the task
(``acc``, ``acc_norm``, ``exact_match``...), for the chosen filter: its value is what lm-eval reported,
its CI as :mod:`kdbench.metrics.lm_eval` describes.

Prompt lengths: the suite's ``max_length`` (a classifier setting) does not truncate lm-eval prompts;
the task's own ``max_length`` does, else the model's context size. Few-shot sampling and seeds are
lm-eval's defaults, so numbers match a plain ``lm_eval`` run of the same task and rows.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path

import numpy as np
import yaml
from pydantic import Field, ValidationInfo, field_validator

from kdbench.errors import KdbenchError
from kdbench.metrics import spec as metric_spec
from kdbench.predictions.lm_eval import ChoicePredictions, LmEvalGenerationPredictions
from kdbench.registry import FAMILIES, unknown_name
from kdbench.tasks.base import DatasetRef, LoadedModel, RunSettings, Task, TaskSpecBase
from kdbench.tasks.lm_eval_tasks import TASKS_DIR
from kdbench.yamlio import beside_file

OUTPUT_TYPES = ("multiple_choice", "generate_until")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class LmEvalSpec(TaskSpecBase):
    dataset: DatasetRef | None = Field(
        None, description="what the run record names as the dataset; from the lm-eval task's config when null")
    lm_eval_task: str = Field(..., description="a task name in lm-eval's registry or in an include path")
    include_path: str | None = Field(
        None, description="folder of lm-eval task YAMLs, relative to this file or absolute (kdbench's bundled "
                          "folder kdbench/tasks/lm_eval_tasks is always searched)")
    num_fewshot: int | None = Field(None, ge=0, description="the lm-eval task's own default (else 0) when null")
    limit: int | None = Field(None, gt=0, description="at most this many documents (the first ones, lm-eval's --limit)")
    filter: str | None = Field(None, description="which of the task's filters to score; its first when null")

    def data_label(self) -> str:
        return super().data_label() if self.dataset is not None else f"lm-eval task {self.lm_eval_task}"

    @field_validator("include_path")
    @classmethod
    def _resolve_include_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        # relative to the task YAML when the loader passes its path as validation context, else cwd
        return None if value is None else str(beside_file(value, info.context))


@dataclass
class LmEvalTrainData:
    """The documents of an lm-eval task's training split, shuffled, that a causal LM is distilled on."""

    docs: list[dict]
    split: str
    sha256: str


@dataclass
class LmEvalData:
    """The documents an lm-eval task will score (its evaluation split, first ``limit``)."""

    output_type: str
    docs: list[dict]
    prompts: list[str]
    limit: int | None
    split: str
    dataset: dict  # id, config
    filter: str


# the predictions kind is the lm-eval task's output type's (lm_eval_choice, lm_eval_generation)
@FAMILIES.register("lm_eval", head="causal_lm")
class LmEvalTask(Task):
    Spec = LmEvalSpec
    spec: LmEvalSpec

    def __init__(self, spec: LmEvalSpec):
        super().__init__(spec)
        # find the lm-eval task now, so a wrong name fails before any model is loaded
        self._paths = _include_paths(spec)
        self._defaults = _resolve(spec, self._paths)

    @classmethod
    def check_spec(cls, spec: LmEvalSpec):
        if spec.include_path is not None and not Path(spec.include_path).is_dir():
            return ("include_path",), f"no folder {spec.include_path}"
        if spec.dataset is not None and spec.dataset.path is not None:
            return ("dataset", "path"), "lm-eval loads its task's own data; dataset here only names it (dataset.id)"
        for name in spec.metrics:
            if not _NAME.match(name):
                return ("metrics",), f"'{name}' is not a metric name (kdbench's, or lm-eval's as it names them: acc, acc_norm...)"
        known = [*metric_spec.kind("classifier_pair").names(), *metric_spec.kind("generation_pair").names()]
        for i, name in enumerate(spec.pair_metrics):
            if name not in known:
                return ("pair_metrics", i), unknown_name("pair metric", name, known)
        if spec.main_score not in spec.metrics:
            return ("main_score",), f"{spec.main_score!r} is not one of the task's metrics ({', '.join(spec.metrics)})"
        return None

    # data ---------------------------------------------------------------------------------------
    def _lm_task(self):
        """A fresh lm-eval Task object (simple_evaluate mutates the ones it runs)."""
        tm = _task_manager(self._paths, self._defaults)
        with _quiet_lm_eval():
            try:
                loaded = tm.load([self.spec.lm_eval_task])
            except KdbenchError:
                raise
            except Exception as e:
                raise KdbenchError(f"task {self.name}: lm-eval task '{self.spec.lm_eval_task}' cannot be built "
                                   f"({type(e).__name__}: {_first_line(e)})") from None
        tasks = loaded["tasks"]
        if loaded["groups"] or len(tasks) != 1:
            raise KdbenchError(f"task {self.name}: lm-eval name '{self.spec.lm_eval_task}' is a group or tag of "
                               f"{len(tasks)} tasks ({', '.join(sorted(tasks))}); name one task")
        return next(iter(tasks.values()))

    def eval_data(self, rows: int | None) -> LmEvalData:
        lm_task = self._lm_task()
        output_type = lm_task.OUTPUT_TYPE
        if output_type not in OUTPUT_TYPES:
            raise KdbenchError(f"task {self.name}: lm-eval task '{self.spec.lm_eval_task}' has output type "
                               f"{output_type}; the bridge runs {', '.join(OUTPUT_TYPES)}")
        self._check_metrics(lm_task)
        limits = [n for n in (rows, self.spec.limit) if n is not None]
        limit = min(limits) if limits else None
        docs = list(islice(lm_task.eval_docs, limit))
        if not docs:
            raise KdbenchError(f"task {self.name}: lm-eval task '{self.spec.lm_eval_task}' has no evaluation documents")
        filters = [f.name for f in getattr(lm_task, "_filters", [])] or ["none"]
        chosen = self.spec.filter or filters[0]
        if chosen not in filters:
            raise KdbenchError(f"task {self.name}: lm-eval task '{self.spec.lm_eval_task}' has no filter '{chosen}' "
                               f"(filters: {', '.join(filters)})")
        cfg = lm_task.config
        split = cfg.test_split if lm_task.has_test_docs() else cfg.validation_split
        return LmEvalData(output_type, docs, [str(lm_task.doc_to_text(d)) for d in docs], limit, split,
                          _dataset_of(self.spec, cfg), chosen)

    def train_data(self, rows: int | None, seed: int) -> LmEvalTrainData:
        """The lm-eval task's own training documents (its ``training_split``), shuffled with ``seed``."""
        lm_task = self._lm_task()
        if not lm_task.has_training_docs():
            raise KdbenchError(f"task {self.name}: lm-eval task '{self.spec.lm_eval_task}' has no training split "
                               "(training_split) to distil on")
        docs = lm_task.training_docs().shuffle(seed=seed)
        docs = list(docs.select(range(min(rows, len(docs)))) if rows is not None else docs)
        return LmEvalTrainData(docs, lm_task.config.training_split, _docs_sha256(docs))

    def train_record(self, data: LmEvalTrainData) -> dict:
        return {"split": data.split, "rows": len(data.docs), "sha256": data.sha256}

    def training_texts(self, data: LmEvalTrainData, tokenizer=None) -> list[tuple[str, str]]:
        """(prompt, completion) pairs as lm-eval writes a worked example: ``doc_to_text``, the task's
        target delimiter and ``doc_to_target`` (a multiple-choice target's text), closed by EOS so the
        student learns to stop."""
        lm_task = self._lm_task()
        eos = getattr(tokenizer, "eos_token", None) or ""
        delimiter = lm_task.config.target_delimiter
        pairs = []
        for doc in data.docs:
            target = lm_task.doc_to_target(doc)
            if isinstance(target, int) and lm_task.OUTPUT_TYPE == "multiple_choice":
                target = lm_task.doc_to_choice(doc)[target]
            if isinstance(target, list):
                target = target[0]
            pairs.append((str(lm_task.doc_to_text(doc)), f"{delimiter}{target}{eos}"))
        return pairs

    def _check_metrics(self, lm_task) -> None:
        """Every requested metric is kdbench's (multiple choice) or one the lm-eval task computes."""
        lm_names = list(lm_task.aggregation())
        mc = lm_task.OUTPUT_TYPE == "multiple_choice"
        ours = metric_spec.kind("classifier").names() if mc else []
        for name in self.spec.metrics:
            if name not in ours and name not in lm_names:
                raise KdbenchError(f"task {self.name}: unknown metric '{name}' for lm-eval task "
                                   f"'{self.spec.lm_eval_task}' ({lm_task.OUTPUT_TYPE}; lm-eval metrics: "
                                   f"{', '.join(lm_names)}{'; or kdbench classifier metrics' if ours else ''})")
        allowed = metric_spec.kind("classifier_pair" if mc else "generation_pair").names()
        for name in self.spec.pair_metrics:
            if name not in allowed:
                raise KdbenchError(f"task {self.name}: pair metric '{name}' does not apply to {lm_task.OUTPUT_TYPE} "
                                   f"tasks (use: {', '.join(allowed)})")

    def dataset_record(self, data: LmEvalData) -> dict:
        return {**data.dataset, "split": data.split, "rows": len(data.docs), "sha256": _docs_sha256(data.docs),
                "source": f"lm-eval task {self.spec.lm_eval_task}"}

    def token_limits(self, settings: RunSettings) -> dict[str, int]:
        # the suite's max_length does not truncate lm-eval prompts (module docstring)
        return {"the task's max_length": self.spec.max_length} if self.spec.max_length else {}

    def runs_code(self) -> str | None:
        for folder in self._paths:
            found = python_in_folder(Path(folder))
            if found:
                return found
        return None

    def efficiency_inputs(self, data: LmEvalData) -> tuple[list[str], None]:
        return data.prompts, None

    # models and predictions ----------------------------------------------------------------------
    def load_model(self, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
        from kdbench.models.loading import load_for_head, load_tokenizer

        model = load_for_head(model_id, self.head, revision, device)
        return LoadedModel(model.eval(), load_tokenizer(model_id, revision), model_id)

    def predict(self, model: LoadedModel, data: LmEvalData, role: str, settings: RunSettings):
        import lm_eval

        from kdbench.backends import engines
        from kdbench.backends.lm_eval_model import KdbenchLM

        backend = engines.for_task(model, settings, self.spec.max_length)
        lm = KdbenchLM.from_backend(backend, name=model.source)
        lm_task = self._lm_task()
        with backend, _quiet_lm_eval():
            out = lm_eval.simple_evaluate(
                model=lm, tasks=[lm_task], task_manager=_task_manager(self._paths, self._defaults),
                num_fewshot=self.spec.num_fewshot, limit=data.limit, log_samples=True,
                bootstrap_iters=settings.eval.bootstrap_samples,
            )
        name = lm_task.task_name
        return predictions_from_samples(self.name, role, out["samples"][name], out["results"][name], lm_task,
                                        data.filter, data.docs)


# --------------------------------------------------------------------------------------------------
# lm-eval samples -> Predictions
# --------------------------------------------------------------------------------------------------
def predictions_from_samples(task: str, role: str, samples: list[dict], results: dict, lm_task, filter_key: str,
                             docs: list[dict]):
    """lm-eval's logged samples of one task (``simple_evaluate(..., log_samples=True)["samples"][name]``)
    for one filter, in document order, as kdbench Predictions; ``docs`` are the documents expected
    (those of ``eval_data``, which the run record names)."""
    rows = sorted((s for s in samples if s["filter"] == filter_key), key=lambda s: s["doc_id"])
    if [s["doc_id"] for s in rows] != list(range(len(docs))) or \
            [_canonical(s["doc"]) for s in rows] != [_canonical(d) for d in docs]:
        raise KdbenchError(f"task {task}: lm-eval scored other documents than the {len(docs)} expected "
                           f"(filter {filter_key}): has the task's data changed meanwhile?")
    ids = [str(s["doc_id"]) for s in rows]
    metric_names = list(lm_task.aggregation())
    sample_metrics = {m: [s[m] for s in rows] for m in metric_names if all(m in s for s in rows)}
    reported = {}
    for m in metric_names:
        if f"{m},{filter_key}" in results:
            reported[m] = results[f"{m},{filter_key}"]
            reported[f"{m}_stderr"] = results.get(f"{m}_stderr,{filter_key}")
    if lm_task.OUTPUT_TYPE == "multiple_choice":
        lls, labels = [], []
        for s in rows:
            choices = lm_task.doc_to_choice(s["doc"])
            lls.append([float(r[0]) for r in s["filtered_resps"][: len(choices)]])
            labels.append(_gold_index(task, lm_task, s, choices))
        counts = {len(x) for x in lls}
        if len(counts) != 1:
            raise KdbenchError(f"task {task}: documents have {min(counts)} to {max(counts)} choices; the bridge needs "
                               "the same number for every document (class probabilities)")
        return ChoicePredictions.from_loglikelihoods(task, role, ids, np.array(lls), np.array(labels, dtype=np.int64),
                                                     sample_metrics, reported)
    fallbacks = _fallbacks(lm_task, filter_key)
    answers = [str(s["filtered_resps"][0]) for s in rows]
    return LmEvalGenerationPredictions(
        task, role, ids,
        generations=[str(s["resps"][0][0]) for s in rows],
        answers=[None if a in fallbacks else a for a in answers],
        gold=[str(s["target"]) for s in rows],
        sample_metrics=sample_metrics, reported=reported,
    )


def _fallbacks(lm_task, filter_key: str) -> set[str]:
    """What the task's filter answers when it extracts nothing (lm-eval's regex filters: "[invalid]")."""
    out = set()
    for ensemble in getattr(lm_task, "_filters", []):
        if ensemble.name == filter_key:
            for factory in ensemble.filters:
                fallback = getattr(factory(), "fallback", None)
                if isinstance(fallback, str):
                    out.add(fallback)
    return out


def _docs_sha256(docs: list[dict]) -> str:
    digest = hashlib.sha256()
    for doc in docs:  # canonical JSON lines, as LoadedSplit.sha256
        digest.update(_canonical(doc).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _gold_index(task: str, lm_task, sample: dict, choices: list[str]) -> int:
    """The gold choice as lm-eval's process_results finds it: an index, or a choice's text."""
    gold = lm_task.doc_to_text(sample["doc"]) if lm_task.multiple_input else sample["target"]
    if isinstance(gold, str) and gold in choices:
        gold = choices.index(gold)
    if isinstance(gold, (list, tuple)):
        raise KdbenchError(f"task {task}: document {sample['doc_id']} has several gold answers; the bridge "
                           "scores single-answer multiple choice")
    if not isinstance(gold, (int, np.integer)) or not 0 <= gold < len(choices):
        raise KdbenchError(f"task {task}: document {sample['doc_id']}: gold {gold!r} is not one of its "
                           f"{len(choices)} choices")
    return int(gold)


# --------------------------------------------------------------------------------------------------
# finding lm-eval tasks
# --------------------------------------------------------------------------------------------------
def _include_paths(spec: LmEvalSpec) -> tuple[str, ...]:
    # the spec's folder last: lm-eval lets later paths override earlier ones
    return (str(TASKS_DIR),) + ((spec.include_path,) if spec.include_path else ())


@lru_cache(maxsize=8)
def _task_manager(paths: tuple[str, ...], include_defaults: bool):
    """lm-eval's TaskManager; indexing its ~15k built-in YAMLs takes seconds to tens of seconds, so
    it is built once per process, and only when the include paths do not hold the task."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise KdbenchError("the lm_eval task family needs lm-evaluation-harness: pip install 'lm-eval>=0.4.13,<0.5'") from None

    with _quiet_lm_eval():
        return TaskManager(include_path=list(paths), include_defaults=include_defaults)


def _resolve(spec: LmEvalSpec, paths: tuple[str, ...]) -> bool:
    """Whether lm-eval's built-in tasks are needed to find ``spec.lm_eval_task``."""
    if spec.lm_eval_task in _task_manager(paths, False).all_tasks:
        return False
    if spec.lm_eval_task in _task_manager(paths, True).all_tasks:
        return True
    raise KdbenchError(f"task {spec.name}: unknown lm-eval task '{spec.lm_eval_task}' (searched lm-eval's "
                       f"built-in tasks and {', '.join(paths)})")


# --------------------------------------------------------------------------------------------------
# code in task folders: lm-eval YAML runs Python through its `!function` tag (a .py file beside the
# YAML, else any importable function), so a folder of them is code, not data
# --------------------------------------------------------------------------------------------------
# kdbench's own mirror loader: data-only tasks name it to read KDBENCH_DATA_DIR
TRUSTED_FUNCTIONS = ("kdbench.tasks.lm_eval_tasks.mirror_dataset",)


def _trusted_dirs() -> list[Path]:
    """Task folders that ship with installed packages (lm-eval's own, kdbench's): their code is
    the packages' code."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    return [TASKS_DIR] + ([Path(spec.origin).resolve().parent] if spec and spec.origin else [])


def _python_in_yaml(path: Path, trusted: list[Path], seen: set[Path]) -> str | None:
    """``FILE:LINE (what)`` of the first thing in ``path`` (or a file it includes) that makes lm-eval
    run Python: a ``!function`` tag (but a trusted function no local file shadows) or a PyYAML
    ``!!python`` tag. Files lm-eval cannot parse are skipped, as lm-eval skips them."""
    path = path.resolve()
    if path in seen or any(path.is_relative_to(d) for d in trusted):
        return None
    seen.add(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    nodes, includes = [root] if root is not None else [], []
    while nodes:
        node = nodes.pop()
        where = f"{path}:{node.start_mark.line + 1}"
        if node.tag == "!function":
            target = str(node.value)
            module = target.rpartition(".")[0].replace(".", "/")
            if target not in TRUSTED_FUNCTIONS or (path.parent / f"{module}.py").exists():
                return f"{where} (!function {target})"
        elif node.tag.startswith("tag:yaml.org,2002:python/"):
            return f"{where} ({node.tag.rsplit(':', 1)[-1]})"
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                nodes += [key, value]
                if node is root and getattr(key, "value", None) == "include":
                    items = value.value if isinstance(value, yaml.SequenceNode) else [value]
                    includes += [str(i.value) for i in items if isinstance(i, yaml.ScalarNode)]
        elif isinstance(node, yaml.SequenceNode):
            nodes += node.value
    for inc in includes:  # lm-eval merges included files, relative to the including one
        found = _python_in_yaml(path.parent / Path(inc).expanduser(), trusted, seen)
        if found:
            return found
    return None


def python_in_folder(folder: Path) -> str | None:
    """The first place in an lm-eval task folder (every YAML under it, as lm-eval indexes them)
    that runs Python, or None."""
    trusted, seen = _trusted_dirs(), set()
    for path in sorted(Path(folder).glob("**/*.yaml")):
        if "__pycache__" not in path.parts:
            found = _python_in_yaml(path, trusted, seen)
            if found:
                return found
    return None


def _dataset_of(spec: LmEvalSpec, cfg) -> dict:
    if spec.dataset is not None:
        return {"id": spec.dataset.id, "config": spec.dataset.config}
    kwargs = cfg.dataset_kwargs or {}
    if cfg.custom_dataset is not None and "hub_id" in kwargs:  # kdbench's mirror_dataset loader
        return {"id": kwargs["hub_id"], "config": kwargs.get("hub_config")}
    return {"id": cfg.dataset_path or cfg.task, "config": cfg.dataset_name}


@contextlib.contextmanager
def _quiet_lm_eval():
    """lm-eval logs every step at INFO/WARNING (custom-dataset hints, seeds, chat-template advice);
    kdbench reports its own progress and errors, so only lm-eval's errors are shown meanwhile."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _canonical(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""
