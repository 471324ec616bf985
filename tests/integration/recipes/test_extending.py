"""How many files a newcomer writes to extend kdbench, proved by writing them: each extension is a
package of its own in a temporary folder that the registry is pointed at (``Registry.extended``),
so nothing of kdbench is edited. A new logit loss is one module; a new metric one module
(tests/unit/metrics/test_metric_registry.py); a new family on an existing head one module and its task YAML; a
new head its backend, its recipe and its family (and the family's task YAML)."""
import textwrap
from contextlib import ExitStack

import pytest

from kdbench.registry import FAMILIES, HEADS, RECIPES
from tests.helpers.extending import plugin

# a family on the classification head: labels given as words in a column, mapped by label_names
WORD_LABELS = '''
import numpy as np

from kdbench.registry import FAMILIES
from kdbench.tasks.classification import ClassificationTask


@FAMILIES.register("word_labels", head="classification", kind="classifier")
class WordLabelTask(ClassificationTask):
    """Classification whose label column holds the label names themselves ("neg", "pos")."""

    def labels(self, split):
        index = {name: i for i, name in enumerate(self.spec.label_names)}
        return np.array([index[v] for v in split.rows[self.spec.columns.label]], dtype=np.int64)
'''


WORD_LABELS_YAML = '''
name: words_sst2
family: word_labels
dataset: {path: sst2.csv, eval_split: train}
columns: {text: sentence, label: sentiment}
label_names: [neg, pos]
main_score: accuracy
metrics: [accuracy, ece]
pair_metrics: [label_loyalty]
'''


# a head: sentence-pair similarity as the cosine of two mean-pooled embeddings (a bi-encoder on STS)
PAIR_BACKEND = '''
import numpy as np

from kdbench.backends.embeddings import HFEmbedder
from kdbench.registry import HEADS


@HEADS.register("pair_similarity", auto_class="AutoModel", pipeline_tag="sentence-similarity", unread=["pooler."])
class PairSimilarity:
    """The cosine of two texts' unit-length mean-pooled embeddings."""

    def __init__(self, model, tokenizer, dtype, max_length, batch_size):
        self.embedder, self.max_length = HFEmbedder(model, tokenizer, dtype, batch_size=batch_size), max_length

    def similarities(self, texts, pairs):
        a = self.embedder.embed(texts, max_length=self.max_length)
        return np.sum(a * self.embedder.embed(pairs, max_length=self.max_length), axis=1).astype(np.float64)
'''


PAIR_FAMILY = '''
import numpy as np

from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.predictions import RegressionPredictions
from kdbench.registry import FAMILIES
from kdbench.tasks.base import LoadedModel, Task, TaskSpecBase, unknown_metric
from kdbench.yamlio import StrictModel

from ext_head.backend import PairSimilarity


class Columns(StrictModel):
    text: str
    text_pair: str
    label: str = "label"


class Spec(TaskSpecBase):
    columns: Columns
    label_range: tuple[float, float]


@FAMILIES.register("sts_cosine", head="pair_similarity", kind="regression")
class StsCosineTask(Task):
    """Semantic similarity scored by a bi-encoder's cosine, no trained head."""

    Spec = Spec
    pairs = True

    @classmethod
    def check_spec(cls, spec):
        return unknown_metric(spec)

    def _columns(self):
        c = self.spec.columns
        return [c.text, c.text_pair, c.label]

    def train_data(self, rows, seed):
        return self.train_split(rows, seed, self._columns())

    def train_record(self, split):
        return {"split": split.spec.split, "rows": len(split.rows), "sha256": split.sha256()}

    def eval_data(self, rows):
        return self.load(self.spec.dataset.eval_split, rows, columns=self._columns())

    def dataset_record(self, split):
        return {**split.reference(), "rows": len(split.rows)}

    def inputs(self, split):
        return list(split.rows[self.spec.columns.text]), list(split.rows[self.spec.columns.text_pair])

    efficiency_inputs = inputs

    def labels(self, split):
        return np.asarray(split.rows[self.spec.columns.label], dtype=np.float64)

    def load_model(self, model_id, revision=None, device=None):
        return LoadedModel(load_for_head(model_id, self.head, revision, device).eval(), load_tokenizer(model_id, revision),
                           model_id)

    def predict(self, model, split, role, settings):
        backend = PairSimilarity(model.model, model.tokenizer, settings.dtype, self.max_length(settings),
                                 settings.eval.batch_size)
        scores = backend.similarities(*self.inputs(split))
        return RegressionPredictions(self.name, role, [str(i) for i in range(len(scores))], scores, self.labels(split))
'''


PAIR_RECIPE = '''
import numpy as np
import torch

from kdbench.backends.batching import encode
from kdbench.backends.embeddings import HFEmbedder, mean_pool
from kdbench.distill.recipes.base import Recipe
from kdbench.registry import LOSSES, RECIPES
from kdbench.roles import TEACHER


@RECIPES.register("pair_similarity", loss_levels=["embedding"], default_loss="cosine_embedding", features=True)
class PairSimilarityRecipe(Recipe):
    """Embedding KD on both sentences of every training pair; the baseline is the student before KD."""

    trains_baseline = False

    @classmethod
    def training_rows(cls, task, suite):
        return 2 * len(task.train_data(suite.data.train_rows, suite.seed).rows)

    def setup(self):
        self.teacher, info = self.teacher_as_is()
        self.add_teacher(TEACHER, self.teacher, info, self.suite.teacher.model)
        data = self.task.train_data(self.suite.data.train_rows, self.suite.seed)
        self.train_dataset = self.task.train_record(data)
        texts, pairs = self.task.inputs(data)
        self.texts = texts + pairs
        embedder = HFEmbedder(self.teacher.model, self.teacher.tokenizer, self.suite.dtype)
        targets = embedder.embed_features(encode(self.teacher.tokenizer, self.texts, None, self.max_length))
        self.targets = torch.as_tensor(targets, dtype=torch.float32)

    def loss_step(self, role, student):
        kd, targets = LOSSES[self.distill.loss], self.targets

        def loss_fn(outputs, idx, batch):
            emb = mean_pool(outputs.last_hidden_state, batch["attention_mask"])
            return kd(emb, targets[idx].to(emb.device))

        return loss_fn

    def features(self, role, student):
        return encode(student.tokenizer, self.texts, None, self.max_length)

    def method(self, role):
        return {"method": "kd", "loss": self.distill.loss, "loss_args": self.distill.loss_args}
'''


def _sst2_csv(path, rows: int = 96):
    from kdbench.data import DatasetSpec, load_split

    loaded = load_split(DatasetSpec("nyu-mll/glue", "sst2", "train"), rows=rows, shuffle_seed=0)
    lines = ["sentence,sentiment"] + [f'"{s.replace(chr(34), "")}",{"pos" if y else "neg"}'
                                      for s, y in zip(loaded.rows["sentence"], loaded.rows["label"])]
    path.write_text("\n".join(lines) + "\n")


def _tiny(name: str, task: str, teacher: dict, **extra) -> dict:
    return {"name": name, "tasks": [task], "seed": 0, "dtype": "fp32", "max_length": 32,
            "data": {"train_rows": 64, "eval_rows": 48}, "teacher": teacher,
            "student": {"builder": "layer_selection", "layers": [0, 5]},
            "distill": {"epochs": 1, "batch_size": 16, "lr": 1e-4}, "eval": {"efficiency": False, "batch_size": 32},
            **extra}


@pytest.mark.slow
def test_a_new_family_on_an_existing_head_is_one_module_and_its_task_file(tmp_path, monkeypatch, data_dir):
    """A family whose labels are words, on the classification head: listed, validated, distilled
    and scored by train-and-eval through the classification recipe, unchanged."""
    from kdbench.config import SuiteConfig
    from kdbench.distill.run import train_and_eval
    from kdbench.reference import tasks_listing

    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    package = plugin(tmp_path, monkeypatch, "ext_family", {"words": WORD_LABELS})
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "words_sst2.yaml").write_text(WORD_LABELS_YAML)
    _sst2_csv(tasks / "sst2.csv")
    with FAMILIES.extended(package):
        assert "words_sst2         word_labels" in tasks_listing([tasks])
        suite = SuiteConfig.model_validate(_tiny("words", "words_sst2", {
            "model": "sentence-transformers/all-MiniLM-L6-v2", "finetune": {"epochs": 1, "batch_size": 16, "lr": 1e-4}}))
        result = train_and_eval(suite, reports_dir=tmp_path / "reports", leaderboard_dir=None, include_paths=[tasks])
    record = result.record
    assert set(record["results"]["words_sst2"]) == {"teacher", "student", "baseline"}
    assert record["models"]["student"]["method"] == "kd" and record["models"]["student"]["loss"] == "forward_kl"
    assert 0 <= record["results"]["words_sst2"]["student"]["accuracy"]["value"] <= 1
    assert "label_loyalty" in record["pairs"]["words_sst2"]["student|teacher"]


@pytest.mark.slow
def test_a_new_head_is_its_backend_its_recipe_and_its_family(tmp_path, monkeypatch, data_dir):
    """Sentence-pair similarity by a bi-encoder's cosine: a head loaded by its registered auto class,
    distilled by its own recipe, scored with the regression metrics, through train-and-eval."""
    from kdbench.config import SuiteConfig
    from kdbench.distill.run import train_and_eval

    monkeypatch.setenv("KDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    package = plugin(tmp_path, monkeypatch, "ext_head", {"backend": PAIR_BACKEND, "family": PAIR_FAMILY,
                                                         "recipe": PAIR_RECIPE})
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "stsb_cosine.yaml").write_text(textwrap.dedent('''
        name: stsb_cosine
        family: sts_cosine
        dataset: {id: nyu-mll/glue, config: stsb, train_split: train, eval_split: validation}
        columns: {text: sentence1, text_pair: sentence2, label: label}
        label_range: [0.0, 5.0]
        main_score: spearman
        metrics: [pearson, spearman]
        pair_metrics: [regression_loyalty]
    '''))
    with ExitStack() as stack:
        for registry in (HEADS, FAMILIES, RECIPES):
            stack.enter_context(registry.extended(package))
        suite = SuiteConfig.model_validate(_tiny("pairs", "stsb_cosine", {
            "model": "sentence-transformers/all-MiniLM-L6-v2", "finetune": None}))
        result = train_and_eval(suite, reports_dir=tmp_path / "reports", leaderboard_dir=None, include_paths=[tasks])
    record = result.record
    student = record["models"]["student"]
    assert student["method"] == "kd" and student["loss"] == "cosine_embedding" and student["train_steps"] == 8
    assert record["models"]["baseline"]["method"] == "pretrained_no_kd"
    scores = record["results"]["stsb_cosine"]
    assert scores["teacher"]["spearman"]["value"] > 0.5  # MiniLM-L6's cosine on STS-B
    assert "regression_loyalty" in record["pairs"]["stsb_cosine"]["student|teacher"]
