"""Same inputs and seed, same frames: across processes, with or without the inversion cache,
and whether a seed is sampled alone or as one of ``--samples K``.

Frames are written as a folder of PNGs with ``--raw`` (grey levels as decoded, no
thresholding that could hide a difference) and compared twice: the decoded pixels, and the
files' bytes (the writer itself adds nothing that varies, such as a time stamp).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_sketch

FAST = ("--steps", "3", "--frames", "3", "--size", "32", "--raw")


def frames(folder: Path) -> np.ndarray:
    """(F, H, W) uint8 pixels of a PNG-frames folder, in frame order."""
    files = sorted(folder.glob("*.png"))
    assert files, f"no frames in {folder}"
    return np.stack([np.asarray(Image.open(f)) for f in files])


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def animate_in_new_process(*args: str | os.PathLike, cwd: Path) -> dict:
    """``flipsketch animate ARGS --json`` in a fresh interpreter; its JSON summary."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "flipsketch", "animate", *map(os.fspath, args),
                           "--json"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow  # two real processes
def test_same_seed_same_frames_across_processes_and_the_inversion_cache(tiny_model_dir, tmp_path,
                                                                        cli):
    # A scheduler config written by an older diffusers (as on the hub) lacks keys that
    # diffusers then lists in "_use_default_values", a list whose order changes from process
    # to process: the cache key must not depend on it.
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config_path = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    for key in ("timestep_spacing", "rescale_betas_zero_snr", "steps_offset", "clip_sample"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config))
    sketch = shared_sketch("fish.png")
    common = (sketch, "a fish swimming", "--model", model, "--seed", "5", *FAST)
    # The test's cache folder starts empty: the first process inverts the drawing and keeps
    # the result, the second reads it back.
    first = animate_in_new_process(*common, "-o", "a", cwd=tmp_path)
    second = animate_in_new_process(*common, "-o", "b", cwd=tmp_path)
    assert (first["inversion_cached"], second["inversion_cached"]) == (False, True)
    # And a third run, in this process, inverts afresh.
    third = cli("animate", *common, "-o", "c", "--no-cache", "--json", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["inversion_cached"] is None  # the cache not consulted

    a, b, c = (tmp_path / name for name in "abc")
    assert frames(a).shape == (3, 32, 32)
    np.testing.assert_array_equal(frames(a), frames(b))
    np.testing.assert_array_equal(frames(a), frames(c))
    assert file_bytes(a) == file_bytes(b) == file_bytes(c)


def test_sample_k_of_many_equals_a_single_run_with_seed_plus_k(tiny_model_dir, tmp_path, cli):
    """``--samples 3 --seed 5`` writes ``s-1``..``s-3``: sample k (numbered k + 1) is the
    animation a single run with ``--seed 5 + k`` makes, though the three were sampled
    together in one batch."""
    common = (shared_sketch("fish.png"), "a fish swimming", "--model", tiny_model_dir, *FAST)
    together = cli("animate", *common, "--seed", "5", "--samples", "3", "-o", "s", "--json",
                   cwd=tmp_path)
    assert together.returncode == 0, together.stderr
    assert json.loads(together.stdout)["seeds"] == [5, 6, 7]
    for k in range(3):
        alone = cli("animate", *common, "--seed", str(5 + k), "-o", f"alone{k}", cwd=tmp_path)
        assert alone.returncode == 0, alone.stderr
        np.testing.assert_array_equal(frames(tmp_path / f"s-{k + 1}"),
                                      frames(tmp_path / f"alone{k}"), err_msg=f"sample {k}")
