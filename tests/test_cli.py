"""The CLI through its entry point ``main`` in this process (conftest's ``cli``), on the real
drawings shipped in src/flipsketch/examples; one test starts the real ``python -m
flipsketch``. The corpus of bad inputs is ``test_bad_inputs.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from flipsketch.cli import app
from flipsketch.errors import FlipSketchError

from testing import assert_one_line_error, read_animation, shared_sketch

FAST = ["--steps", "3", "--frames", "4", "--size", "64"]


@pytest.mark.parametrize("name, output, reader", [
    ("cat.png", "cat.gif", "frames"),
    ("fish.png", "fish.mp4", "frames"),
    ("horse.png", "horse.webp", "frames"),
    ("camel.png", "camel.png", "frames"),  # APNG
    ("cloud.png", "cloud-frames", "folder"),
])
def test_animate_writes_every_format(cli, tiny_model_dir, tmp_path, name, output, reader):
    result = cli("animate", str(shared_sketch(name)), "it moves to the right",
                        "--model", str(tiny_model_dir), "-o", str(tmp_path / output),
                        "--json", *FAST)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outputs"] == [str(tmp_path / output)]
    assert summary["seeds"] == [0]
    assert summary["timings"]["total_s"] > 0
    if reader == "folder":
        frames = sorted((tmp_path / output).glob("*.png"))
        assert len(frames) == 4
        assert Image.open(frames[0]).size == (64, 64)
    else:
        frames = read_animation(tmp_path / output)
        assert frames.shape[:3] == (4, 64, 64)
    assert "wrote" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [output]  # no temp files left


def test_default_output_is_binary_and_raw_keeps_grey(cli, tiny_model_dir, tmp_path):
    result = cli("animate", str(shared_sketch("fish.png")), "a fish", "--model",
                        str(tiny_model_dir), "-o", str(tmp_path / "bw"), *FAST)
    assert result.returncode == 0, result.stderr
    levels = np.unique(np.stack([np.asarray(Image.open(p).convert("L"))
                                 for p in (tmp_path / "bw").glob("*.png")]))
    assert set(levels.tolist()) <= {0, 255}
    result = cli("animate", str(shared_sketch("fish.png")), "a fish", "--model",
                        str(tiny_model_dir), "-o", str(tmp_path / "grey"), "--raw", *FAST)
    assert result.returncode == 0, result.stderr
    levels = np.unique(np.stack([np.asarray(Image.open(p).convert("L"))
                                 for p in (tmp_path / "grey").glob("*.png")]))
    assert len(levels) > 2


def test_samples_are_numbered_and_generate_needs_no_sketch(cli, tiny_model_dir, tmp_path):
    result = cli("generate", "a ball bouncing", "--model", str(tiny_model_dir),
                        "--samples", "2", "--seed", "7", "-o", str(tmp_path / "ball.gif"),
                        "--json", *FAST)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["seeds"] == [7, 8]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ball-1.gif", "ball-2.gif"]


def test_refuses_to_overwrite_without_force(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "cat.gif"
    out.write_bytes(b"precious")
    args = ["animate", str(shared_sketch("cat.png")), "a cat", "--model", str(tiny_model_dir),
            "-o", str(out), *FAST]
    assert_one_line_error(cli(*args), "exists", "--force")
    assert out.read_bytes() == b"precious"
    result = cli(*args, "--force")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:3] == b"GIF"


def test_missing_model_folder_parts_give_one_line(cli, tmp_path):
    broken = tmp_path / "model"
    (broken / "unet").mkdir(parents=True)
    result = cli("animate", str(shared_sketch("cat.png")), "a cat", "--model", str(broken),
                        "-o", str(tmp_path / "o.gif"), *FAST)
    assert_one_line_error(result, "model")


@pytest.mark.slow  # three interpreter start-ups
def test_console_entry_point_exits_2_with_one_line(tmp_path):
    """The real ``python -m flipsketch`` and the installed ``flipsketch`` script: a new
    interpreter's exit code and stderr, nothing written; ``--debug`` lets the traceback out."""
    script = Path(sys.executable).with_name("flipsketch")
    commands = [[sys.executable, "-m", "flipsketch"]]
    if script.exists():
        commands.append([str(script)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in commands:
        result = subprocess.run([*command, "animate", "nope.png", "a cat", "-o", "out.gif"],
                                capture_output=True, text=True, cwd=tmp_path, env=env,
                                timeout=300)
        assert_one_line_error(result, "nope.png")
        assert list(tmp_path.iterdir()) == []
    result = subprocess.run([sys.executable, "-m", "flipsketch", "--debug", "animate",
                             "nope.png", "a cat"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_debug_lets_the_exception_out(cli, tmp_path, capsys):
    # Re-raised instead of turned into one line: the interpreter then prints the traceback
    # (the real process above checks that).
    with pytest.raises(FlipSketchError):
        cli("--debug", "animate", str(tmp_path / "nope.png"), "a cat")
    assert "error:" not in capsys.readouterr().err


def test_plugins_lists_stages_with_defaults(cli):
    result = cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    stages = info["stages"]
    expected = {"backbone": "modelscope", "inverter": "ddim", "aligner": "gradient",
                "composer": "flipsketch", "postprocessor": "lineart"}
    for stage, default in expected.items():
        assert stages[stage]["default"] == default
        assert default in stages[stage]["implementations"]
    assert {"gif", "mp4", "webp", "apng", "png-frames"} <= set(stages["writer"]["implementations"])
    builtins = [p for p in info["plugins"] if p["builtin"]]
    assert {p["distribution"] for p in builtins} == {"flipsketch"}
    assert all(p["version"] for p in builtins)


def one_line_error(result) -> str:
    assert_one_line_error(result)
    return result.stderr.strip()


def test_markup_in_user_text_is_printed_as_written(cli, tmp_path):
    line = one_line_error(cli("animate", "a[/]b.png", "x", cwd=tmp_path))
    assert "a[/]b.png" in line
    line = one_line_error(cli("animate", str(shared_sketch("cat.png")), "x",
                              "--composer", "[bold]nope[/]"))
    assert "[bold]nope[/]" in line


def test_settings_errors_name_the_flag_of_the_field(cli, tmp_path):
    cat = str(shared_sketch("cat.png"))
    out = ("-o", str(tmp_path / "out.gif"))
    for args, expected in [
        (("animate", cat, "a cat", "--frames", "1", *out), "--frames must be at least 2"),
        (("generate", "a cat", "--steps", "0", *out), "--steps must be at least 1"),
        (("animate", cat, "a cat", "--compose", "sideways", *out),
         "--compose must be one of both, spatial, temporal, none, not 'sideways'"),
        (("animate", cat, "a cat", "--tau1", "30", *out),
         "--tau1 must be between 0 and the number of steps (25)"),
        (("animate", cat, "a cat", "--align-optimizer", "lbfgs", *out), "--align-optimizer"),
        (("animate", cat, "a cat", "--size", "4", *out), "--size must be at least 8 pixels"),
        (("train", "lora", str(tmp_path), "-o", str(tmp_path / "adapter"), "--batch", "0"),
         "--batch must be at least 1"),
    ]:
        assert expected in one_line_error(cli(*args))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("switch_off", [
    ["--no-compose"], ["--compose", "none"], ["--composer", "none"],
])
def test_a_stage_switched_off_is_not_looked_up(cli, tmp_path, switch_off):
    # Every way to switch composition off is the one rule of api.sampler_stages: the composer
    # named "nope" is then never looked up, and the checks go on to the model.
    line = one_line_error(cli(
        "animate", str(shared_sketch("cat.png")), "a cat", "--composer", "nope",
        *switch_off, "--model", "no_such_model", "-o", str(tmp_path / "out.gif")))
    assert "no_such_model" in line and "composer" not in line
    if switch_off != ["--composer", "none"]:
        line = one_line_error(cli(
            "animate", str(shared_sketch("cat.png")), "a cat", "--aligner", "nope",
            "--model", "no_such_model", "-o", str(tmp_path / "out.gif")))
        assert "unknown aligner 'nope'" in line


def command_paths(command, path: tuple[str, ...] = ()):
    """Every command and group of the app, as the words that invoke it."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def test_help_shows_clean_flags_for_every_command():
    runner = CliRunner()
    paths = list(command_paths(typer.main.get_command(app)))
    assert ("animate",) in paths and ("train", "base") in paths and ("eval", "ablate") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], prog_name="flipsketch")
        assert result.exit_code == 0, (path, result.output)
        assert "--no-no-" not in result.output, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
    animate = runner.invoke(app, ["animate", "--help"], prog_name="flipsketch").output
    for flag in ("--no-compose ", "--no-align ", "--allow-pickle ", "--force ", "--json "):
        assert flag in animate and f"{flag.strip()} /" not in animate, flag
