"""Retrieval family: BEIR loading, bi-encoder embeddings, exact search, ranking metrics (checked
against pytrec_eval on real rankings of the real models), teacher–student metrics, the embedding
KD recipe. Real models, the local DBpedia-Entity 5k mirror, small corpus slices."""
from __future__ import annotations

import numpy as np
import pytest

from kdbench.backends.embeddings import HFEmbedder
from kdbench.data.beir import load_beir
from tests.helpers import retrieval as shared
from tests.helpers.retrieval import DATASET, STUDENT_ID, small_task

# fixtures shared with tests/unit/tasks/test_retrieval.py (pytest finds them as attributes of this module)
task, models = shared.task, shared.models


# ---------------------------------------------------------------------------------------------
# the embedding KD recipe
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_embedding_recipe_brings_the_student_closer_to_the_teacher(tmp_path, monkeypatch, data_dir):
    from kdbench.config import load_suite
    from kdbench.distill.recipes import run_recipe as run
    from kdbench.roles import BASELINE, STUDENT, TEACHER

    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    task = small_task(200)  # 200 documents + the 10 queries without judgments
    task.spec = task.spec.model_copy(update={"max_length": 128})
    pretrained = ["student.builder=pretrained", f"student.model={STUDENT_ID}"]  # its own tokenizer and space
    suite = load_suite("retrieval", [*pretrained, "distill.epochs=1", "distill.batch_size=16", "distill.lr=2e-4"])
    trained = run(task, suite, tmp_path / "run")
    assert trained.info[STUDENT]["method"] == "kd" and trained.info[BASELINE]["method"] == "pretrained_no_kd"
    assert trained.info[STUDENT]["train_steps"] == 14  # ceil(210 / 16)
    assert trained.info[TEACHER]["train_embeddings_reused"] is False
    assert trained.train_dataset["rows"] == 210 and trained.train_dataset["transductive"] is True
    assert (tmp_path / "run" / "models" / task.name / "student" / "model.safetensors").is_file()
    assert trained.dirs[BASELINE] == STUDENT_ID  # the untouched published checkpoint

    # mean cosine to the teacher's embeddings on held-out documents (not among the 200 trained on)
    # and on the evaluated queries (never trained on)
    full = load_beir(DATASET)
    texts = [f"{t} {x}".strip() for t, x in zip(full.titles[300:400], full.texts[300:400])] + full.queries
    emb = {role: HFEmbedder(m.model, m.tokenizer, "bf16", max_length=256).embed(texts)
           for role, m in trained.models.items()}
    cos = {role: np.sum(emb[role] * emb[TEACHER], axis=1) for role in (BASELINE, STUDENT)}
    for part in (slice(0, 100), slice(100, None)):
        before, after = cos[BASELINE][part].mean(), cos[STUDENT][part].mean()
        assert after > before + 0.05, (before, after)  # measured: 0.27 -> 0.35 (documents), 0.29 -> 0.40 (queries)

    # the teacher's training embeddings come from the safetensors cache on a second run (1 step)
    again = run(task, load_suite("retrieval", [*pretrained, "distill.epochs=0.05", "distill.batch_size=16"]),
                tmp_path / "run2")
    assert again.info[TEACHER]["train_embeddings_reused"] is True and again.info[STUDENT]["train_steps"] == 1
