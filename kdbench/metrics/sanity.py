"""Sanity warnings on a run, from its record and samples (so every view shows the same ones, and
the record keeps them under ``warnings``): what makes a distillation result meaningless or its
intervals too wide to read, said in one sentence each.

* ``teacher_at_chance`` — the teacher's main score is no better than a model that learnt nothing
  (the majority class, all ``O`` tags, a constant score, no answer: ``Table.trivial``); distilling
  from it teaches nothing.
* ``teacher_not_better_than_baseline`` — the no-KD baseline scores at least as well as the teacher
  on the main score: the teacher has nothing to add.
* ``student_worse_than_baseline`` — the KD student is significantly worse than the no-KD baseline
  on the main score (its paired test, p < 0.05): distillation hurt.
* ``small_slice`` — too few units for a metric's CI to mean much: fewer than 20 examples per bin
  for the binned calibration metrics (HELM's rule of thumb: ~300 examples for 10-bin ECE; Liang et
  al. 2022) and fewer than 30 units for any other CI.
* ``speculative_not_lossless`` — with a draft, greedy speculative decoding gave other text than the
  teacher alone on some prompts. In fp32 that is a defect of the engine. In bf16 it is expected: the
  verification pass scores γ + 1 tokens in one forward pass, whose bf16 rounding differs from
  one-token decoding, so a near-tie between two tokens can flip and the texts part from there (both
  still valid greedy decodings up to rounding); the speed-up then compares slightly different texts.
"""
from __future__ import annotations

from kdbench.errors import KdbenchError
from kdbench.metrics import spec as metric_spec
from kdbench.metrics.samples import Side, options, tables
from kdbench.metrics.stats import format_p

ALPHA = 0.05
MIN_UNITS = 30
PER_BIN = 20
BINNED = ("ece", "mce", "classwise_ece", "ece_equal_mass", "ts_ece_before", "ts_ece_after")


def _warning(task: str, model: str, code: str, message: str) -> dict:
    return {"task": task, "model": model, "code": code, "message": message}


def _better(spec: metric_spec.MetricSpec, a: float, b: float) -> bool:
    return a > b if spec.higher_is_better else a < b


def run_warnings(record: dict, samples) -> list[dict]:
    """Every warning of the run, task by task, in the record's form ``{task, model, code, message}``."""
    side = Side("run", None, record, samples)
    out = []
    ref = "ensemble" if "ensemble" in record.get("models", {}) and "teacher" not in record["models"] else "teacher"
    for task, by_role in record["results"].items():
        spec_dict = record["config"].get("task_specs", {}).get(task, {})
        main = spec_dict.get("main_score") or next(iter(next(iter(by_role.values()))))
        try:
            kind_name = side.kind(task)
        except KdbenchError:
            continue
        spec = metric_spec.kind(kind_name).find(main)
        if spec is None or not spec.gated:
            continue
        how = metric_spec.Resampling(max(int(options(record, task).get("bootstrap_samples", 1000)), 100), 0.95, 0,
                                     options(record, task))
        value = {role: ms[main]["value"] for role, ms in by_role.items() if main in ms}
        if ref in value:
            trivial = tables(side, task, ref, kind_name).trivial()
            if trivial is not None:
                chance = spec.value(how.context(trivial))
                if not _better(spec, value[ref], chance):
                    out.append(_warning(task, ref, "teacher_at_chance", (
                        f"{task}: the {ref}'s {main} {value[ref]:.4g} is no better than a model that learnt nothing "
                        f"({chance:.4g}); distilling from it teaches nothing.")))
            if "baseline" in value and not _better(spec, value[ref], value["baseline"]):
                out.append(_warning(task, ref, "teacher_not_better_than_baseline", (
                    f"{task}: the {ref}'s {main} {value[ref]:.4g} is not better than the no-KD baseline's "
                    f"{value['baseline']:.4g}; the teacher has nothing to add.")))
        if "student" in value and "baseline" in value:
            ids = list(side.rows(task, "baseline").index)
            t = metric_spec.paired_test(spec, tables(side, task, "student", kind_name, ids),
                                        tables(side, task, "baseline", kind_name, ids), how)
            if t.p_value < ALPHA and _better(spec, value["baseline"], value["student"]):
                out.append(_warning(task, "student", "student_worse_than_baseline", (
                    f"{task}: the KD student's {main} {value['student']:.4g} is significantly worse than the no-KD "
                    f"baseline's {value['baseline']:.4g} ({t.test}, {format_p(t.p_value, how.n_samples, t.test)}); distillation hurt.")))
        out += _small(record, task, kind_name)
    return out + _speculative(record)


def _speculative(record: dict) -> list[dict]:
    exact = record["config"].get("dtype") == "fp32"
    why = ("in fp32 that is a defect of the engine" if exact else
           "expected in bf16, where verifying several tokens in one pass rounds differently from one-token "
           "decoding and flips near-ties; --dtype fp32 checks losslessness")
    return [_warning(task, draft, "speculative_not_lossless", (
                f"{task}: with {draft} as draft, {engine} speculative decoding gave the teacher's own greedy text on "
                f"{d['identical_rows']} of {d['rows']} prompts only; {why}."))
            for task, section in record.get("speculative", {}).items()
            for engine, by_engine in section["engines"].items()
            for draft, d in by_engine["drafts"].items() if not d["identical_outputs"]]


def _small(record: dict, task: str, kind_name: str) -> list[dict]:
    k = metric_spec.kind(kind_name)
    n = record["datasets"].get(task, {}).get("rows")
    if not n:
        return []
    names = list(dict.fromkeys(m for ms in record["results"][task].values() for m in ms))
    bins = int(options(record, task).get("ece_bins", 15))
    binned = [m for m in names if m in BINNED and n < PER_BIN * bins]
    other = [m for m in names if m not in BINNED and n < MIN_UNITS and (s := k.find(m)) is not None and s.gated]
    out = []
    if binned:
        out.append(_warning(task, "", "small_slice", (
            f"{task}: {n} {k.units} is fewer than {PER_BIN} per bin ({bins} bins, {PER_BIN * bins} in all) for "
            f"{', '.join(binned)}: their CIs are wide and the values biased upwards.")))
    if other:
        out.append(_warning(task, "", "small_slice", (
            f"{task}: {n} {k.units} is too few (under {MIN_UNITS}) for the CIs of {', '.join(other)} to mean much.")))
    return out
