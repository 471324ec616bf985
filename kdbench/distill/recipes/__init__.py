"""Training recipes, one per model head, all on one skeleton (:mod:`.base`, torchtune style): make
or reuse the teacher, build the student, distil it, train the no-KD baseline with the same budget,
and hand the models back for evaluation. ``train-and-eval`` picks the recipe registered for the
task's head (``@RECIPES.register(head, ...)``); a new head's recipe is one module here."""
from kdbench.distill.recipes.base import Recipe, Trained, recipe, run_recipe

__all__ = ["Recipe", "Trained", "recipe", "run_recipe"]
