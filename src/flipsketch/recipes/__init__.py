"""YAML recipes: a whole workflow in one file, checked completely before anything runs.


A recipe is plain data, read with ``yaml.safe_load`` rules (no Python tags, no shell, no code)::

    version: 1
    description: the word CAT becomes a cat
    model: tiny                      # the FlipSketch model for the sketch steps
    defaults: {num_inference_steps: 25, seed: 0}   # sampler options for every sketch step
    steps:
      - {name: letters, type: word, text: CAT, prompt: the letters turn into a cat}
      - {name: gif, type: write, input: letters, path: cat.gif}

Steps run in order. A step uses an earlier step's frames by naming it as its ``input``. Step
types are plugins (``register_recipe_steps``); the built-in ones at the end of this module
register through that same hook. Sampler options come from the sampler's own defaults, then the
recipe's ``defaults``, then the step type's defaults (``word`` turns temporal composition off),
then the step's own keys; ``--set`` edits the document before any of this.

Every problem is reported as one line ``file:line: key.path: problem`` (the line comes from
YAML's node marks); input files, output paths and plugin names are all checked before the
first step starts. Input paths are relative to the recipe file (to the current folder when
given with ``--set``); outputs must stay inside OUTDIR.

Each step's result is cached in OUTDIR under a hash of everything it depends on (its keys, the
content of its input files, the model, the hashes of the steps it reads), so a re-run redoes
only the steps whose inputs changed, and the steps after them.

Modules: ``schema`` (the format), ``parsing`` (finding and reading a file, ``--set``),
``validation`` (every check, with file:line), ``cache`` (step keys and the output cache),
``runner`` (running the steps), ``steps`` (the built-in step types).
"""

from flipsketch.recipes.parsing import describe_bundled, find_recipe, load_recipe
from flipsketch.recipes.runner import Reporter, StepReport, run_recipe
from flipsketch.recipes.schema import Clip, Field, Recipe, RecipeError, Step, StepType

__all__ = ["Clip", "Field", "Recipe", "RecipeError", "Reporter", "Step", "StepReport",
           "StepType", "describe_bundled", "find_recipe", "load_recipe", "run_recipe"]
