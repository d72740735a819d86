"""Recipes: pipelines that combine the library's stages, kept apart from the stages themselves.

- :mod:`vmeta.recipes.sweep` — a grid of training runs, each trained (or resumed, or skipped), predicted and
  evaluated, then one comparison table (`vmeta sweep`): the grid file and the plan in ``sweep_plan``, run and
  value names in ``sweep_names``, the tables in ``sweep_table``;
- :mod:`vmeta.recipes.demo` — the demo model: a sample dataset built, the tiny architecture trained on it
  (`vmeta models build-demo`).

A recipe may import any stage (dataset, train, predict, evaluate, models); no stage imports a recipe.
"""
