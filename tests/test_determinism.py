"""Same inputs and seed, same frames: across processes, with or without the inversion cache,
and whether a seed is sampled alone or as one of ``--samples K``.

Frames are written as a folder of PNGs with ``--raw`` (grey levels as decoded, no
thresholding that could hide a difference) and compared twice: the decoded pixels, and the
files' bytes (the writer itself adds nothing that varies, such as a time stamp).

What is bit-exact and what is not: the CPU's matrix and convolution kernels (oneDNN, MKL) split
their sums by the number of threads and by the shape of the batch, and float addition is not
associative. The same computation with the same thread count gives the same bits in every
process, whatever else the machine is doing; another thread count, or a seed sampled as one row
of a batch of K instead of alone, sums in another order and moves the frames by float rounding
(~3e-6 on the 0..1 scale: ``test_rounding_moves_few_pixels_by_one_grey_level``). So the cross-
process test pins the thread count of its processes to this one's, and the batch test asserts
the rounding bound, not equality: neither passes or fails with the machine's load.
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
import torch
from PIL import Image

from testing import shared_sketch

FAST = ("--steps", "3", "--frames", "3", "--size", "32", "--raw")

# Float rounding's footprint on 8-bit frames: a difference of ~3e-6 (in 0..1) changes a grey
# level only where a value lies that close to a rounding boundary, so at most one level, in
# about 255 * 3e-6 = 0.1 % of pixels (3 of 3,072 and 1 of 3,072 on a 2-core AVX2 CPU, 2 of
# 3,072 with the UNet's outputs perturbed by 2**-22 relative on one thread). 1 % leaves a
# tenfold margin; a real change of the arithmetic (a wrong seed, another row's noise, a
# composition leaking across samples) moves most pixels by many levels.
ROUNDING_LEVELS = 1
ROUNDING_SHARE = 0.01


def frames(folder: Path) -> np.ndarray:
    """(F, H, W) uint8 pixels of a PNG-frames folder, in frame order."""
    files = sorted(folder.glob("*.png"))
    assert files, f"no frames in {folder}"
    return np.stack([np.asarray(Image.open(f)) for f in files])


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def assert_equal_up_to_rounding(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    """8-bit frames that differ at most by float rounding: ``ROUNDING_LEVELS`` grey levels in
    at most ``ROUNDING_SHARE`` of the pixels."""
    assert got.shape == expected.shape, what
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    moved = int(np.count_nonzero(diff))
    assert diff.max() <= ROUNDING_LEVELS, f"{what}: {int(diff.max())} grey levels apart"
    assert moved <= ROUNDING_SHARE * diff.size, \
        f"{what}: {moved} of {diff.size} pixels differ, more than float rounding moves"


def same_threads_env() -> dict[str, str]:
    """The environment of a child process that computes with this process's thread count.

    torch reads OMP_NUM_THREADS (MKL_NUM_THREADS for MKL's own kernels) when it starts; left
    unset, a child takes one thread per core while this process may run with fewer (pytest's
    workers run one each), and a different split of the sums moves a few pixels by one grey
    level.
    """
    threads = str(torch.get_num_threads())
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def animate_in_new_process(*args: str | os.PathLike, cwd: Path) -> dict:
    """``flipsketch animate ARGS --json`` in a fresh interpreter with this process's thread
    count (``same_threads_env``); its JSON summary."""
    env = same_threads_env()
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
    # the result, the second reads it back. All three compute with the same thread count, so
    # the frames are the same to the bit, however busy the machine is.
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
    together in one batch: its own noise, its own alignment, no attention across samples.

    Equal up to float rounding, not to the bit: the UNet sees a batch of 6 rows (3 samples,
    guided) instead of 2, and with more than one thread the CPU kernels split such sums in
    another order (one pixel 213 against 214 on a 2-core AVX2 CPU). Sampling each seed alone
    to make the bits match would give up the batch's speed on a GPU."""
    common = (shared_sketch("fish.png"), "a fish swimming", "--model", tiny_model_dir, *FAST)
    together = cli("animate", *common, "--seed", "5", "--samples", "3", "-o", "s", "--json",
                   cwd=tmp_path)
    assert together.returncode == 0, together.stderr
    assert json.loads(together.stdout)["seeds"] == [5, 6, 7]
    for k in range(3):
        alone = cli("animate", *common, "--seed", str(5 + k), "-o", f"alone{k}", cwd=tmp_path)
        assert alone.returncode == 0, alone.stderr
        assert_equal_up_to_rounding(frames(tmp_path / f"s-{k + 1}"),
                                    frames(tmp_path / f"alone{k}"), f"sample {k}")


def test_rounding_moves_few_pixels_by_one_grey_level(tiny_model_dir):
    """What ``assert_equal_up_to_rounding`` allows is float rounding and no more.

    Two runs of one seed, one of them with every UNet output scaled by a rounding-sized
    factor per element (2**-22, a few ulps, what another order of the same sums does): the
    frames stay within the bound. And the bound is tight enough to see a real difference:
    the neighbouring seed breaks it.
    """
    from flipsketch import api
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    pipe = api.load_pipeline(os.fspath(tiny_model_dir), device="cpu")
    sketch = shared_sketch("fish.png")

    def sample(seed: int) -> np.ndarray:
        """The decoded frames of ``animate FAST --seed SEED --no-cache`` (3 steps, 3 frames),
        floats in 0..1."""
        settings = api.SamplerSettings(num_frames=3, num_inference_steps=3, seed=seed)
        [clip] = api.animate(pipe, "a fish swimming", sketch, settings, cache=False)
        return clip.frames

    def pixels(frames: np.ndarray) -> np.ndarray:
        """The 8-bit frames ``--raw --size 32`` writes."""
        return np.stack([np.asarray(image) for image in api.postprocess(frames, "raw", 32)])

    exact = sample(5)
    generator = torch.Generator().manual_seed(0)

    def rounded_differently(self, latents, t, embeds):
        out = FlipSketchPipeline.predict(self, latents, t, embeds)
        return out * (1 + (torch.rand(out.shape, generator=generator) * 2 - 1) * 2.0 ** -22)

    pipe.predict = rounded_differently.__get__(pipe)
    perturbed = sample(5)
    del pipe.predict
    moved = float(np.abs(perturbed - exact).max())
    assert 0 < moved < 1e-4  # the sums' order does move the frames, by rounding only
    assert_equal_up_to_rounding(pixels(perturbed), pixels(exact), "seed 5, rounded differently")
    with pytest.raises(AssertionError, match="grey levels apart|pixels differ"):
        assert_equal_up_to_rounding(pixels(sample(6)), pixels(exact), "seed 6 against seed 5")
