"""``paper``: the paper's sampler beside the toolkit's, one switch in every front end.

The README's table "The paper's sampler" says where the two differ (``api.PAPER_SAMPLER`` and
``api.TOOLKIT_SAMPLER``); here a run with the switch is the pipeline called with exactly the
table's values and nothing else changed (same UNet calls, same frames), each value of the
table changes the frames on its own, and the command line, recipes, batch manifests and the
web API all carry the one setting.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from flipsketch.api import (
    PAPER_SAMPLER,
    TOOLKIT_SAMPLER,
    SamplerChoices,
    SamplerSettings,
    animate,
    prepare_sketch,
)
from flipsketch.plugins import AlignSettings, get_manager
from flipsketch.sampler.attention import temporal_logit_scale

from testing import record_unet_calls, shared_sketch

PROMPT = "a fish swimming"
STEPS, FRAMES, SEED = 6, 4, 3  # tau1 = 2T/5 = 2, tau2 = 3T/5 = 3: both windows inside the run


def drawing() -> Image.Image:
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line([(10, 12), (50, 40)], fill=0, width=3)
    ImageDraw.Draw(image).ellipse([(20, 30), (44, 54)], outline=0, width=2)
    return image


def through_api(pipe, **settings) -> tuple[np.ndarray, list]:
    """``api.animate`` as every front end calls it: (frames, UNet calls)."""
    calls, handle = record_unet_calls(pipe)
    [clip] = animate(pipe, PROMPT, drawing(), SamplerSettings(
        num_frames=FRAMES, num_inference_steps=STEPS, seed=SEED, **settings), cache=False)
    handle.remove()
    return clip.frames, calls


def direct(pipe, choices: SamplerChoices) -> tuple[np.ndarray, list]:
    """The pipeline itself with ``choices`` where the samplers differ and its defaults (the
    numbers of Algorithm 1, the built-in stages) everywhere else."""
    calls, handle = record_unet_calls(pipe)
    out = pipe(PROMPT, prepare_sketch(drawing(), pipe.model_resolution), num_frames=FRAMES,
               num_inference_steps=STEPS, seeds=[SEED],
               keep_first_frame=choices.keep_first_frame,
               frame_index_base=choices.frame_index_base, lambda_rule=choices.lambda_rule,
               lambda_scale=choices.lambda_scale,
               align_settings=AlignSettings(choices.align_iterations, choices.align_lr))
    handle.remove()
    return out.frames[0].numpy(), calls


def test_the_table_of_differences():
    """README's table, row by row; everything else is shared, the numbers of Algorithm 1 too."""
    assert dataclasses.asdict(TOOLKIT_SAMPLER) == {
        "keep_first_frame": True, "align_iterations": 1, "align_lr": 1e-2,
        "frame_index_base": 1, "lambda_rule": None, "lambda_scale": None}
    assert dataclasses.asdict(PAPER_SAMPLER) == {
        "keep_first_frame": False, "align_iterations": 10, "align_lr": 1e-3,
        "frame_index_base": 0, "lambda_rule": "logit", "lambda_scale": 0.02}
    toolkit, paper = SamplerSettings(), SamplerSettings(paper=True)
    assert toolkit.choices == TOOLKIT_SAMPLER and paper.choices == PAPER_SAMPLER
    shared = {f.name for f in dataclasses.fields(SamplerSettings)} - {
        "paper", *dataclasses.asdict(PAPER_SAMPLER)}
    assert {name: getattr(paper, name) for name in shared} == \
        {name: getattr(toolkit, name) for name in shared}
    # Algorithm 1 as published: T = 25, CFG 9, M = 10, lambda 0.5, tau1/tau2 from T (2T/5 and
    # 3T/5, the pipeline's defaults for None), adam.
    assert (paper.num_inference_steps, paper.guidance_scale, paper.num_frames, paper.lambda_,
            paper.tau1, paper.tau2, paper.align_optimizer, paper.negative_prompt) == \
        (25, 9.0, 10, 0.5, None, None, "adam", "")


def test_values_given_win_over_either_sampler():
    settings = SamplerSettings(paper=True, keep_first_frame=True, align_iterations=3)
    assert settings.choices == dataclasses.replace(PAPER_SAMPLER, keep_first_frame=True,
                                                   align_iterations=3)
    assert SamplerSettings(align_lr=0.5).choices.align_lr == 0.5
    assert SamplerSettings(paper=True, lambda_=1.0).choices == PAPER_SAMPLER


def test_each_sampler_is_the_pipeline_with_its_column_of_the_table(tiny_pipe):
    """Same seed, same UNet calls, same frames: nothing differs but the table's values."""
    for settings, choices in (({}, TOOLKIT_SAMPLER), ({"paper": True}, PAPER_SAMPLER)):
        frames, calls = through_api(tiny_pipe, **settings)
        expected_frames, expected_calls = direct(tiny_pipe, choices)
        assert calls == expected_calls
        np.testing.assert_array_equal(frames, expected_frames)


def test_the_two_samplers_differ_in_unet_calls_where_the_table_says(tiny_pipe):
    _, toolkit = through_api(tiny_pipe)
    _, paper = through_api(tiny_pipe, paper=True)
    inversion = [(1, 1)] * STEPS
    # One sample: a joint pass is (2, M) (guidance batched), an alignment iteration (1, M).
    toolkit_loop = [
        (1, 1), (1, 4), (1, 4), (2, 4),  # step 0: target, 1 iteration, reference x N = 4, joint
        (1, 1), (1, 4), (1, 3), (2, 4),  # step 1: N = 3
        (1, 2), (2, 4),  # step 2: composing only
        (1, 1), (2, 4),  # step 3 = tau2: N = 1
        (1, 1), (2, 4),  # step 4: frame 1 kept, so its reference trajectory goes on
        (2, 4),  # step 5: frame 1 set to it; nothing left to advance
    ]
    paper_loop = [
        (1, 1), *[(1, 4)] * 10, (1, 4), (2, 4),  # step 0: the authors' 10 iterations
        (1, 1), *[(1, 4)] * 10, (1, 3), (2, 4),  # step 1
        (1, 2), (2, 4),  # step 2
        (1, 1), (2, 4),  # step 3 = tau2: the last step with frame 1 on the reference
        (2, 4), (2, 4),  # steps 4, 5: frame 1 generated like the others
    ]
    assert toolkit == inversion + toolkit_loop
    assert paper == inversion + paper_loop


@pytest.mark.parametrize("field, value", [
    (f, getattr(TOOLKIT_SAMPLER, f)) for f in dataclasses.asdict(PAPER_SAMPLER)
    if getattr(TOOLKIT_SAMPLER, f) != getattr(PAPER_SAMPLER, f)])
def test_every_row_of_the_table_changes_the_frames_on_its_own(tiny_pipe, field, value):
    # The toolkit's lambda_scale and lambda_rule are the model's own: they differ from the
    # paper's 1/50 on the logit on a model that records others (the test UNet records none
    # until here).
    tiny_pipe.unet.register_to_config(lambda_scale=1.0, lambda_rule="weight")
    paper, _ = direct(tiny_pipe, PAPER_SAMPLER)
    changed, _ = direct(tiny_pipe, dataclasses.replace(PAPER_SAMPLER, **{field: value}))
    assert not np.array_equal(paper, changed), f"{field} changed nothing"


def test_the_temporal_scale_numbers_frames_as_each_sampler_does():
    """1 + lambda * i / 50 for query frame i towards frame 1: i = 1..M in the toolkit (frame
    1 scaled by eq. 9's factor), 0..M-1 in the authors' code (frame 2 gets eq. 9's factor)."""
    toolkit = temporal_logit_scale(4, 0.5)
    assert torch.allclose(toolkit, torch.tensor([1.01, 1.02, 1.03, 1.04]))
    authors = temporal_logit_scale(4, 0.5, frame_index_base=0)
    assert torch.allclose(authors, torch.tensor([1.0, 1.01, 1.02, 1.03]))
    assert torch.allclose(toolkit - authors, torch.full((4,), 0.5 / 50))  # 0.01 at lambda 0.5
    assert torch.equal(temporal_logit_scale(4, 0.0, frame_index_base=0), torch.ones(4))


# -- one setting, every front end --------------------------------------------------------------
QUICK = ["--steps", "3", "--frames", "3", "--size", "32"]


def test_animate_paper_is_the_tables_flags(cli, tiny_model_dir, tmp_path):
    """At lambda 0 the temporal scale is 1 whatever the numbering, so --paper is exactly
    --free-first-frame with the authors' alignment; without it, the toolkit's frames."""
    shutil.copy(shared_sketch("fish.png"), tmp_path / "fish.png")
    common = ["animate", "fish.png", PROMPT, "--model", tiny_model_dir, *QUICK, "--lambda", "0",
              "--no-cache"]
    runs = {
        "paper.gif": ["--paper"],
        "flags.gif": ["--free-first-frame", "--align-iterations", "10", "--align-lr", "0.001"],
        "toolkit.gif": [],
        "paper-kept.gif": ["--paper", "--keep-first-frame"],
        "kept.gif": ["--align-iterations", "10", "--align-lr", "0.001"],
    }
    for name, flags in runs.items():
        result = cli(*common, *flags, "-o", name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    data = {name: (tmp_path / name).read_bytes() for name in runs}
    assert data["paper.gif"] == data["flags.gif"]
    assert data["paper.gif"] != data["toolkit.gif"]
    assert data["paper-kept.gif"] == data["kept.gif"]  # a flag given wins over --paper


def test_recipes_batch_and_the_web_api_take_the_same_setting(tmp_path):
    from flipsketch.batch import read_manifest
    from flipsketch.recipes import load_recipe

    shutil.copy(shared_sketch("fish.png"), tmp_path / "fish.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("version: 1\ndefaults: {paper: true}\nsteps:\n"
                      "  - {name: a, type: animate, sketch: fish.png, prompt: a fish}\n"
                      "  - {name: b, type: animate, sketch: fish.png, prompt: a fish, "
                      "paper: false}\n")
    a, b = load_recipe(recipe).steps
    assert a.settings.paper and a.settings.choices == PAPER_SAMPLER
    assert not b.settings.paper and b.settings.choices == TOOLKIT_SAMPLER

    manifest = tmp_path / "jobs.csv"
    manifest.write_text("sketch,prompt,paper\nfish.png,a fish,yes\nfish.png,a fish,\n")
    paper, toolkit = read_manifest(manifest).jobs
    assert paper.settings.paper and not toolkit.settings.paper
    assert paper.fingerprint != toolkit.fingerprint  # a changed switch redoes the job
    defaulted = read_manifest(manifest, {"paper": True}).jobs[1]  # `batch --paper`
    assert defaulted.settings.paper

    web_options = pytest.importorskip("flipsketch_web.options")
    request = web_options.parse({"prompt": "a fish", "paper": "on"}, get_manager())
    assert request.settings.paper and request.settings.choices == PAPER_SAMPLER
    assert web_options.FIELDS["paper"][1] is True  # a switch: on sets paper
    assert web_options.FIELDS["free-first-frame"][1] is False
