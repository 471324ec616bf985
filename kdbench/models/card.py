"""Model cards in the Hugging Face Hub's format for the students and baselines a run saves.

A card is the README.md beside the weights: YAML metadata made with ``huggingface_hub``'s
``ModelCardData`` and ``EvalResult`` (``base_model`` = the teacher, ``library_name``,
``tags``, ``datasets``, a ``model-index`` with the run's results on the task: metric, value, CI),
then a short text — how the model was made, what KD bought with its paired test, loyalty to the
teacher, size and latency against it. Everything comes from the run record (DESIGN.md: data
flows one way); nothing is measured here.
"""
from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from kdbench.models.heads import head
from kdbench.registry import FAMILIES
from kdbench.report.summary import ROLE_LABELS, fmt_params, main_score, percent
from kdbench.roles import BASELINE, STUDENT, TEACHER

CARD_FILE = "README.md"
TAGS = ["knowledge-distillation", "kdbench"]
_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"


# How a card shows the record's metrics; the one place that follows the metric registry (display
# names, which metrics are fractions shown as percentages, the task's main score).
def metric_name(record: dict, metric: str) -> str:
    """How a card names a metric: the record's display name for it where it has one, else its key."""
    return record.get("metric_names", {}).get(metric, metric)


def _percent(record: dict, task: str, metric: str) -> bool:
    """Whether the metric (or, for ``X_difference``, X) shows as a percent: the metric registry's say."""
    base = metric.removesuffix("_difference")
    return percent(record, task, base) or percent(record, task, base, pair=True)


def task_models(record: dict, task: str) -> dict:
    """Each role's record entry on ``task`` (a record without ``models_by_task``: ``models``)."""
    return record.get("models_by_task", {}).get(task) or record["models"]


def saved_models(record: dict) -> list[tuple[str, str, str]]:
    """(task, role, folder relative to the run) of every model the run saved: its students and
    baselines, which the recipes save under ``models/TASK/ROLE``."""
    return [(task, role, info["id"]) for task in record["results"] for role, info in task_models(record, task).items()
            if str(info.get("id", "")).startswith(f"models/{task}/")]


def _hub_id(model_id: str) -> bool:
    """A Hub model id (``base_model`` must be one), not a folder on this machine."""
    return "/" in model_id and not os.path.exists(model_id) and not model_id.startswith((".", "/", "~"))


def _teachers(record: dict, task: str) -> list[str]:
    return [info["id"] for role, info in task_models(record, task).items()
            if role == TEACHER or role.startswith(f"{TEACHER}_")]


def _value(v: dict | None, metric: str, pct: bool) -> str:
    """``72.3 % [67.3, 77.3]``, ``0.8545 [0.8345, 0.8729]``; a difference of percentages in points, signed."""
    if v is None:
        return "–"
    difference = metric.endswith("_difference")
    scale, spec = (100.0, ".1f") if pct else (1.0, ".4f")
    spec = ("+" if difference else "") + spec
    ci = f" [{format(v['ci'][0] * scale, spec)}, {format(v['ci'][1] * scale, spec)}]" if v.get("ci") else ""
    unit = (" points" if difference else " %") if pct else ""
    return f"{format(v['value'] * scale, spec)}{unit}{ci}"


def _bought(record: dict, task: str, pair: dict) -> str:
    """What KD bought over the baseline, each paired figure, and whether its test says it is real."""
    figures = "; ".join(f"{metric_name(record, m)} {_value(v, m, _percent(record, task, m))}" for m, v in pair.items())
    p = next((v["value"] for m, v in pair.items() if m.endswith("p_value")), None)
    verdict = "" if p is None else (" — significant at p < 0.05" if p < 0.05 else " — not significant at p < 0.05")
    return (f"The KD student against the no-KD baseline (same initialisation, budget and seed; paired over the "
            f"same examples): {figures}{verdict}.")


def _eval_results(record: dict, task: str, role: str, pipeline_tag: str) -> list[EvalResult]:
    d, spec = record["datasets"][task], record["config"]["task_specs"][task]["dataset"]
    confidence = round(record["config"]["eval"]["confidence"] * 100)
    hub = spec.get("id")
    return [EvalResult(
        task_type=pipeline_tag, task_name=task, dataset_type=hub or task,
        dataset_name=f"{hub or 'local data'} ({task})", dataset_config=d.get("config"), dataset_split=d["split"],
        dataset_revision=d.get("revision"), metric_type=metric, metric_value=v["value"],
        metric_name=metric_name(record, metric) + (f" ({confidence}% CI [{v['ci'][0]:.4f}, {v['ci'][1]:.4f}])"
                                                   if v.get("ci") else ""),
    ) for metric, v in record["results"][task][role].items()]


def _how_made(info: dict, distill: dict, teachers: list[str]) -> list[str]:
    lines = [f"- teacher: {', '.join(f'`{t}`' for t in teachers)}"]
    builder = info.get("builder")
    if builder == "layer_selection":
        source = "the teacher" if info.get("init_from", TEACHER) == TEACHER else f"`{info['init_from']}`"
        lines.append(f"- builder: layer selection from {source}, layer map {info.get('layer_map')} "
                     "(student layer i ← layer map[i])")
    elif builder == "config":
        lines.append(f"- builder: the teacher's architecture with {info.get('config_overrides')}, randomly initialised")
    elif builder:
        lines.append(f"- builder: {builder} (`{info.get('init_from')}`)")
    steps = f"{info.get('train_steps')} optimiser steps ({distill['epochs']:g} epochs, effective batch " \
            f"{info.get('training', {}).get('effective_batch_size', distill['batch_size'])}, lr {distill['lr']:g})"
    if info.get("method") == "kd":
        args = "".join(f", {k} = {v}" for k, v in (info.get("loss_args") or {}).items())
        lines.append(f"- loss: {info.get('loss')}{args} at temperature T = {distill['temperature']:g}"
                     f"{' (T² scaling)' if distill['t2_scaling'] else ''}, α = {distill['alpha']:g} "
                     f"({distill['alpha']:g}·KD + {1 - distill['alpha']:g}·labels); {steps}")
        for feature in distill.get("features") or []:
            lines.append(f"- feature term: {feature['loss']} × {feature['weight']:g}")
    else:
        lines.append(f"- no KD: labels only, the KD student's initialisation, budget and seed; {steps}")
    return lines


def _size_and_latency(record: dict, task: str, role: str, teacher_role: str) -> list[str]:
    models = task_models(record, task)
    mine, theirs = models[role].get("params"), models.get(teacher_role, {}).get("params")
    lines = [f"- parameters: {fmt_params(mine)} (teacher {fmt_params(theirs)}"
             + (f", {mine / theirs:.2f}×)" if mine and theirs else ")")]
    eff = record.get("efficiency", {}) if record.get("efficiency_task") == task else {}
    if role in eff and teacher_role in eff:
        device = record.get("environment", {}).get("device", "cpu")
        for key, what in (("latency_ms_b1", "batch 1"), ("latency_ms_b32", "batch 32")):
            a, b = eff[role].get(key), eff[teacher_role].get(key)
            if a and b:
                lines.append(f"- latency per example, {what} ({device}, {eff[role].get('dtype')}): {a:.2f} ms "
                             f"(teacher {b:.2f} ms, {b / a:.1f}× faster)")
    else:
        lines.append("- latency: not measured for this task in this run")
    return lines


def model_card(record: dict, task: str, role: str) -> ModelCard:
    """The card of the ``role`` model (a student or baseline) that ``record``'s run saved for ``task``."""
    from kdbench.config import DistillConfig

    spec = record["config"]["task_specs"][task]
    head_name = FAMILIES.meta(spec["family"])["head"]
    pipeline_tag = head(head_name).pipeline_tag
    config = record["config"]
    distill = {**DistillConfig().model_dump(), **config.get("distill", {}),
               **config.get("per_task", {}).get(task, {}).get("distill", {})}
    confidence = round(config["eval"]["confidence"] * 100)
    info, teachers = task_models(record, task)[role], _teachers(record, task)
    teacher_role = TEACHER if TEACHER in task_models(record, task) else "ensemble"
    name = f"{record['suite']}-{task}-{role}"
    data = ModelCardData(
        base_model=[t for t in teachers if _hub_id(t)] or None, library_name="transformers", tags=TAGS,
        datasets=[spec["dataset"]["id"]] if spec["dataset"].get("id") else None, pipeline_tag=pipeline_tag,
        model_name=name, eval_results=_eval_results(record, task, role, pipeline_tag),
    )
    if data.base_model and len(data.base_model) == 1:
        data.base_model = data.base_model[0]
    results, pairs = record["results"][task], record["pairs"].get(task, {})
    d = record["datasets"][task]
    main = main_score(record, task)
    body = [f"# {name}", "",
            f"A {ROLE_LABELS.get(role, role)} ({head_name.replace('_', ' ')} head) made by "
            f"kdbench {record['kdbench_version']} in run `{record['run_id']}` "
            f"(suite `{record['suite']}`) on `{task}`: "
            + (f"distilled from {', '.join(f'`{t}`' for t in teachers)}." if info.get("method") == "kd" else
               f"the KD student's architecture trained on labels only, what the student distilled from "
               f"{', '.join(f'`{t}`' for t in teachers)} is measured against."), "",
            "## How it was made", *_how_made(info, distill, teachers), "",
            f"## Results on {d['id']}{'/' + d['config'] if d.get('config') else ''}:{d['split']} "
            f"({d['rows']} examples, {confidence}% CIs)", "",
            "| metric | this model | teacher |", "|---|---|---|"]
    body += [f"| {metric_name(record, m)} | {_value(v, m, _percent(record, task, m))} | "
             f"{_value(results.get(teacher_role, {}).get(m), m, _percent(record, task, m))} |"
             for m, v in results[role].items()]
    bought = pairs.get(f"{STUDENT}|{BASELINE}")
    if bought:
        body += ["", "## What KD bought", _bought(record, task, bought)]
    loyalty = pairs.get(f"{role}|{teacher_role}")
    if loyalty:
        body += ["", "## Loyalty to the teacher",
                 "; ".join(f"{metric_name(record, m)} {_value(v, m, _percent(record, task, m))}" for m, v in loyalty.items()) + "."]
    body += ["", "## Size and latency against the teacher", *_size_and_latency(record, task, role, teacher_role), "",
             f"The full run record is `report.json` (run `{record['run_id']}`); its headline metric here is "
             f"{metric_name(record, main)}."]
    return ModelCard.from_template(data, template_str=_TEMPLATE, body="\n".join(body))


def write_cards(record: dict, run_dir: Path) -> list[Path]:
    """A card beside every model the run saved under ``run_dir``."""
    written = []
    for task, role, folder in saved_models(record):
        if (run_dir / folder).is_dir():
            path = run_dir / folder / CARD_FILE
            model_card(record, task, role).save(path)
            written.append(path)
    return written
