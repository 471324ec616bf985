"""How the pinned records in this folder were made (run once, with the code of the commit before the
metric registry; tests/unit/test_pinned_records.py re-scores the pinned predictions with today's code and
compares every value): real runs of each family on tiny slices, each task's predictions (every
role), its run settings and task spec, and the ``results``/``pairs`` the pipeline wrote.

    PYTHONPATH=$PWD python tests/data/pinned/capture.py OUT_DIR
"""
from __future__ import annotations

import dataclasses
import gzip
import pickle
import sys
from pathlib import Path

import yaml

from kdbench import pipeline
from kdbench.config import load_suite
from kdbench.distill.run import train_and_eval
from kdbench.models.loading import load_for_head, load_tokenizer, save_model
from kdbench.models.students import layer_selection
from kdbench.tasks import get_task

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUICK = ["eval.efficiency=false"]


def _plain(p) -> dict:
    return {"class": f"{type(p).__module__}:{type(p).__qualname__}",
            "fields": {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    captured: dict[str, dict] = {}
    original = pipeline._score_task

    def capture(run, eval_data, settings):
        predictions, results, pairs = original(run, eval_data, settings)
        captured[run.task.name] = {
            "spec": run.task.spec.model_dump(mode="json"), "settings": settings, "ensemble": run.ensemble,
            "predictions": {role: _plain(p) for role, p in predictions.items()}, "results": results, "pairs": pairs}
        return predictions, results, pairs

    pipeline._score_task = capture

    def save(name: str) -> None:
        with gzip.open(out / f"{name}.pkl.gz", "wb") as f:
            pickle.dump(dict(captured), f)
        captured.clear()

    kw = dict(reports_dir=work / "reports", leaderboard_dir=None)
    tiny = ["data.train_rows=160", "distill.epochs=1", "teacher.finetune.epochs=1", *QUICK]
    train_and_eval(load_suite("glue", ["tasks=[cola, mrpc, stsb]", "data.eval_rows=96", *tiny]), **kw)
    save("glue")
    train_and_eval(load_suite("ner", ["data.eval_rows=60", *tiny]), **kw)
    save("ner")

    tasks = work / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    for name, edit in (("dbpedia_entity_5k", lambda s: s.update(corpus_rows=200, max_length=128)),
                       ("gsm8k", lambda s: s["generation"].update(max_new_tokens=24))):
        spec = get_task(name).spec.model_dump(mode="json", exclude_none=True)
        edit(spec)
        (tasks / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    models = {"teacher": "sentence-transformers/all-MiniLM-L6-v2",
              "student": "sentence-transformers/paraphrase-MiniLM-L3-v2",
              "baseline": "sentence-transformers/all-mpnet-base-v2"}
    pipeline.evaluate(load_suite("retrieval", QUICK), models, include_paths=[tasks], **kw)
    save("retrieval")

    lm = ["data.train_rows=16", "data.eval_rows=4", "distill.epochs=1", "distill.batch_size=8", "distill.lr=1e-3",
          "student.layers=[0, 29]", *QUICK]
    train_and_eval(load_suite("lm", [*lm, "max_length=64"]), **kw)
    save("lm")
    train_and_eval(load_suite("reasoning", lm), include_paths=[tasks], **kw)
    save("reasoning")

    students = {}
    teacher = load_for_head(SMOL, "causal_lm")
    for role, layers in (("student", list(range(0, 30, 2))), ("baseline", [0, 29])):
        students[role] = work / f"smol-{role}"
        save_model(layer_selection(teacher, layers), load_tokenizer(SMOL), students[role])
    pipeline.evaluate(load_suite("lm_eval", ["data.eval_rows=6", *QUICK]),
                      {"teacher": SMOL, **{r: str(p) for r, p in students.items()}}, **kw)
    save("lm_eval")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
