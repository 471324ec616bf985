"""Per-example outputs of one model on one task, kept for the whole run (DESIGN.md, "Core objects").

Every teacher–student metric is computed from two Predictions, never by re-running a model. Each
family has its own kind (class probabilities, regression scores, token tags, rankings, generations,
token log-probabilities); all share the base class's example ids, alignment check and
``samples.parquet`` rows.
"""
from kdbench.predictions.base import Predictions, samples_frame
from kdbench.predictions.classifier import ClassifierPredictions, RegressionPredictions

__all__ = ["ClassifierPredictions", "Predictions", "RegressionPredictions", "samples_frame"]
