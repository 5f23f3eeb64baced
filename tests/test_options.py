"""One table of options (``flipsketch.settings.OPTIONS``) makes every front end's options.

Each entry must reach the command line of ``animate``, ``generate`` and ``batch`` (flag, help,
default), the manifest's columns and the web form, and set the same settings field in each;
the sampler's own defaults are the settings'. Adding an option to the table is the one edit.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer.main

from flipsketch.api import OPTIONS, OutputSettings, SamplerSettings, check_request, describe
from flipsketch.batch import read_manifest
from flipsketch.cli import app
from flipsketch.errors import SettingsError, UsageError
from flipsketch.plugins import get_manager
from flipsketch.recipes.validation import sampler_call, sampler_options
from flipsketch.settings import find_option

from testing import assert_one_line_error, shared_sketch

# A value other than the default for each valued option, as text and as the field gets it.
OTHER = {"frames": ("6", 6), "steps": ("7", 7), "guidance": ("4.5", 4.5),
         "negative-prompt": ("blurry", "blurry"), "lambda": ("0.8", 0.8),
         "tau1": ("2", 2), "tau2": ("4", 4), "compose": ("spatial", "spatial"),
         "align-iterations": ("3", 3), "align-lr": ("0.002", 0.002),
         "lambda-rule": ("weight", "weight"), "align-optimizer": ("sgd", "sgd"),
         "seed": ("5", 5), "samples": ("2", 2), "inverter": ("ddim-sampled", "ddim-sampled"),
         "aligner": ("gradient", "gradient"), "composer": ("flipsketch", "flipsketch"),
         "size": ("64", 64), "fps": ("12", 12.0), "postprocessor": ("binarize", "binarize")}


def commands() -> dict:
    return typer.main.get_command(app).commands


def field_value(request, o):
    """What the request holds for option ``o``: its settings field, or where its stage went."""
    if o.field in {f.name for f in dataclasses.fields(SamplerSettings)}:
        return getattr(request.settings, o.field)
    if o.field in {f.name for f in dataclasses.fields(OutputSettings)}:
        return getattr(request.output, o.field)
    return request.stages.get(o.key)


def test_every_settings_field_is_an_option_and_every_option_has_help():
    fields = {f.name for t in (SamplerSettings, OutputSettings) for f in dataclasses.fields(t)}
    assert fields == {o.field for o in OPTIONS.values() if o.field}
    for o in OPTIONS.values():
        assert o.help.strip() and o.flag.startswith("--")
        assert find_option(o.key) is o and find_option(o.flag.partition("/")[0]) in (o, None)
        assert all(find_option(name) is o for name in o.names)


@pytest.mark.parametrize("command", ["animate", "generate", "batch"])
def test_every_option_is_a_command_line_option_with_the_tables_help_and_default(command):
    params = {p.name: p for p in commands()[command].params}
    for o in OPTIONS.values():
        param = params[o.name]
        assert [*param.opts, *param.secondary_opts] == o.flag.split("/")
        assert param.help == o.help
        assert param.default == o.parameter_default


def test_the_samplers_own_defaults_are_the_settings():
    from flipsketch.api import TOOLKIT_SAMPLER
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    defaults = SamplerSettings()
    signature = inspect.signature(FlipSketchPipeline.__call__).parameters
    for name in ("num_frames", "num_inference_steps", "guidance_scale", "negative_prompt",
                 "tau1", "tau2", "lambda_", "compose"):
        assert signature[name].default == getattr(defaults, name), name
    for name in ("keep_first_frame", "frame_index_base", "lambda_rule"):
        assert signature[name].default == getattr(TOOLKIT_SAMPLER, name), name


@pytest.mark.parametrize("key", [k for k in OPTIONS if k in OTHER])
def test_every_valued_option_sets_its_field_the_same_way_everywhere(key, cli, tmp_path):
    """The pre-flight check, a recipe's sampler key, a manifest column by its key and the web
    form by its key give the same settings."""
    o = OPTIONS[key]
    text, expected = OTHER[key]
    extra = {"steps": "8"} if key in ("tau1", "tau2") else {}  # windows within the steps
    manager = get_manager()
    direct = check_request("a fish", {key: expected, **{k: int(v) for k, v in extra.items()}},
                           manager)
    assert field_value(direct, o) == expected
    if key in sampler_options() or o.field and o.field.rstrip("_") in sampler_options():
        recipe_key = o.field.rstrip("_") if o.field else key
        settings, stages = sampler_call({recipe_key: expected, **{
            OPTIONS[k].field: int(v) for k, v in extra.items()}}, manager)
        assert (getattr(settings, o.field) if o.field else stages[key]) == expected

    sketch = tmp_path / "fish.png"
    sketch.write_bytes(shared_sketch("fish.png").read_bytes())
    columns = {"sketch": "fish.png", "prompt": "a fish", key: text, **extra}
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(",".join(columns) + "\n" + ",".join(columns.values()) + "\n")
    [job] = read_manifest(manifest).jobs
    if o.field in {f.name for f in dataclasses.fields(OutputSettings)}:
        name = "postprocess" if key == "postprocessor" else key
        assert job.write[name] == expected
    elif o.field:
        assert getattr(job.settings, o.field) == expected
    else:
        assert job.stages[key] == expected

    web = pytest.importorskip("flipsketch_web.options")
    request = web.parse({"prompt": "a fish", key: text, **extra}, manager)
    if o.field in {f.name for f in dataclasses.fields(OutputSettings)}:
        assert getattr(request, o.field) == expected
    elif o.field:
        assert getattr(request.settings, o.field) == expected
    else:
        assert request.stages[key] == expected


def test_every_switch_sets_its_field_from_the_command_line_and_the_form(cli, tmp_path):
    web = pytest.importorskip("flipsketch_web.options")
    manager = get_manager()
    for o in OPTIONS.values():
        for flag, value in o.flags.items():
            request = web.parse({"prompt": "a fish", flag: "on"}, manager)
            if o.key == "raw":
                assert request.postprocessor == "raw"
            elif o.key == "no-compose":
                assert request.settings.compose == "none"
            elif o.key == "transparent":
                assert request.transparent is value
            else:
                assert getattr(request.settings, o.field) is value, flag


def test_yes_and_no_are_the_same_words_in_a_manifest_and_the_form(tmp_path):
    web = pytest.importorskip("flipsketch_web.options")
    for word, value in (("yes", True), ("on", True), ("1", True), ("no", False),
                        ("off", False), ("false", False)):
        assert web.parse({"prompt": "a fish", "paper": word}, get_manager()).settings.paper \
            is value
        manifest = tmp_path / f"{word}.csv"
        manifest.write_text(f"prompt,paper\na fish,{word}\n")
        assert read_manifest(manifest).jobs[0].settings.paper is value


def test_a_settings_error_is_worded_in_each_front_ends_spelling(cli, tmp_path):
    with pytest.raises(SettingsError) as caught:
        check_request("a fish", {"frames": 1}, get_manager())
    assert describe(caught.value) == "--frames must be at least 2"
    assert describe(caught.value, lambda field: field.rstrip("_")) == \
        "num_frames must be at least 2"  # a recipe's spelling
    assert_one_line_error(cli("generate", "a fish", "--frames", "1"),
                          "--frames must be at least 2")
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("prompt,frames\na fish,1\n")
    with pytest.raises(UsageError, match="column 'frames': must be at least 2"):
        read_manifest(manifest)


def test_the_pre_flight_check_runs_the_command_lines_checks_in_its_order():
    manager = get_manager()
    with pytest.raises(UsageError, match="--raw is the 'raw' post-processor"):
        check_request("", {"raw": True, "postprocessor": "lineart", "frames": 1}, manager)
    with pytest.raises(SettingsError, match="must be at least 2"):
        check_request("", {"frames": 1}, manager)  # the options before the prompt
    with pytest.raises(UsageError, match="the prompt is empty"):
        check_request("", {}, manager)
    with pytest.raises(UsageError, match="'stepz' is not an option .did you mean 'steps'"):
        check_request("a fish", {"stepz": 3}, manager)
    assert check_request(None, {}, manager).prompt is None  # batch: options alone


def test_the_writer_option_picks_the_writer_on_the_command_line_and_in_a_batch(
        cli, tiny_model_dir, tmp_path):
    fast = ["--model", str(tiny_model_dir), "--steps", "2", "--frames", "3", "--size", "32"]
    out = tmp_path / "clip.out"  # a suffix no writer claims: --writer decides
    result = cli("generate", "a ball bouncing", "-o", out, "--writer", "gif", *fast)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:6] == b"GIF89a"
    assert_one_line_error(cli("generate", "a ball", "-o", tmp_path / "x", "--writer", "gyf",
                              *fast), "gyf")
    assert_one_line_error(cli("generate", "a ball", "-o", tmp_path / "y", "--svg", "--writer",
                              "gif", *fast), "--svg is --writer svg-frames")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

    manifest = tmp_path / "jobs.csv"
    manifest.write_text("prompt,output,writer\na ball,ball.out,webp\na ball,ball.gif,\n")
    result = cli("batch", manifest, "-o", tmp_path / "batch", *fast)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "batch" / "ball.out").read_bytes()[8:12] == b"WEBP"
    assert (tmp_path / "batch" / "ball.gif").read_bytes()[:6] == b"GIF89a"


def test_the_web_form_refuses_a_writer_the_page_picks_itself():
    web = pytest.importorskip("flipsketch_web.options")
    with pytest.raises(UsageError, match="the page writes every download kind"):
        web.parse({"prompt": "a fish", "writer": "gif"}, get_manager())
