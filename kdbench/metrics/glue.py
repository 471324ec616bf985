"""The GLUE average of a run (Wang et al. 2019): each GLUE task's score is the unweighted mean of its
official metrics (MRPC and QQP: accuracy and F1; STS-B: Pearson and Spearman; CoLA: MCC); tasks of
one group (MNLI matched and mismatched) count as one task with the mean of their scores; the
average is the unweighted mean over tasks. Computed per role from the run record alone."""
from __future__ import annotations


def glue_average(record: dict) -> dict:
    """``{"glue_average": {role: {"value", "ci": None, "tasks": [...]}}}``, or {} without GLUE tasks.
    A role missing a task's metric gets no average (a partial average would not be GLUE's)."""
    specs = record.get("config", {}).get("task_specs", {})
    glue = {name: spec["glue_score"] for name, spec in specs.items()
            if spec.get("glue_score") and name in record["results"]}
    if not glue:
        return {}
    roles = dict.fromkeys(role for name in glue for role in record["results"][name])
    out = {}
    for role in roles:
        groups: dict[str, list[float]] = {}
        for name, score in glue.items():
            metrics = record["results"][name].get(role, {})
            if any(m not in metrics for m in score["metrics"]):
                break
            task_score = sum(metrics[m]["value"] for m in score["metrics"]) / len(score["metrics"])
            groups.setdefault(score.get("group") or name, []).append(task_score)
        else:
            value = sum(sum(v) / len(v) for v in groups.values()) / len(groups)
            out[role] = {"value": value, "ci": None, "tasks": sorted(glue)}
    return {"glue_average": out} if out else {}
