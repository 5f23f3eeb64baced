"""``flipsketch models``, the default model, and hub models loaded from huggingface_hub's cache.

The hub is a folder here: ``hub_cache`` points ``HF_HUB_CACHE`` at an empty one, and
``add_to_hub_cache`` puts a model into it exactly as huggingface_hub stores a download
(blobs, a snapshot of links, ``refs/main``). The session is offline (``HF_HUB_OFFLINE=1``), so
every lookup goes through the real ``snapshot_download`` and nothing touches the network.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.filesize import decimal

from flipsketch.api import load_pipeline
from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.models.presets import (
    MODELSCOPE_BASE,
    SKETCH_FINETUNE,
    VARIANT_PATTERNS,
    default_model,
    download_patterns,
    settings_path,
)

from testing import build_tiny_components, save_authors_checkpoint


def add_to_hub_cache(cache: Path, repo_id: str, files: Path) -> Path:
    """Store the folder ``files`` in ``cache`` as huggingface_hub stores a downloaded
    repository: each file a blob named by its hash, a snapshot folder of relative links to
    them, and ``refs/main`` naming that snapshot's commit. Returns the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def cached_sketch_model(hub_cache, tmp_path):
    """The authors' repository in the hub cache: ``(snapshot, marker)``, where ``marker``
    appears if anything unpickles the ``lora/`` pickle."""
    marker = tmp_path / "lora-was-unpickled"
    save_authors_checkpoint(tmp_path / "repo", marker=marker)
    return add_to_hub_cache(hub_cache, SKETCH_FINETUNE, tmp_path / "repo"), marker


@pytest.fixture
def drawing(tmp_path) -> Path:
    path = tmp_path / "drawing.png"
    image = Image.new("L", (64, 64), 255)
    image.paste(0, (20, 30, 44, 34))
    image.save(path)
    return path


def unique_size(files) -> int:
    """Bytes of ``files`` counted once per distinct content, as blobs are stored."""
    blobs = {hashlib.sha256(p.read_bytes()).hexdigest(): p.stat().st_size for p in files}
    return sum(blobs.values())


def one_line_error(result, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- which files are fetched ---------------------------------------------------------------------
def test_only_what_loading_reads_is_downloaded():
    from huggingface_hub.utils import filter_repo_objects

    authors_repo = [
        "README.md", "checkpoint-2000/unet/diffusion_pytorch_model.safetensors",
        "checkpoint-2500/model_index.json", "checkpoint-2500/lora/pytorch_lora_weights.bin",
        "checkpoint-2500/lora/adapter_config.json",
        "checkpoint-2500/unet/config.json", "checkpoint-2500/unet/diffusion_pytorch_model.bin",
        "checkpoint-2500/unet/diffusion_pytorch_model.safetensors",
        "checkpoint-2500/unet/diffusion_pytorch_model.fp16.safetensors",
        "checkpoint-2500/text_encoder/config.json",
        "checkpoint-2500/text_encoder/model.safetensors",
        "checkpoint-2500/tokenizer/merges.txt", "checkpoint-2500/tokenizer/vocab.json",
        "checkpoint-2500/scheduler/scheduler_config.json",
    ]

    def fetched(allow_pickle: bool) -> set[str]:
        return set(filter_repo_objects(
            authors_repo, allow_patterns=download_patterns("checkpoint-2500",
                                                           allow_pickle=allow_pickle),
            ignore_patterns=list(VARIANT_PATTERNS)))

    safe = {"checkpoint-2500/model_index.json", "checkpoint-2500/unet/config.json",
            "checkpoint-2500/unet/diffusion_pytorch_model.safetensors",
            "checkpoint-2500/text_encoder/config.json",
            "checkpoint-2500/text_encoder/model.safetensors",
            "checkpoint-2500/tokenizer/merges.txt", "checkpoint-2500/tokenizer/vocab.json",
            "checkpoint-2500/scheduler/scheduler_config.json"}
    assert fetched(allow_pickle=False) == safe
    # --allow-pickle adds the parts' pickled weights, never the lora/ pickle
    assert fetched(allow_pickle=True) == safe | {
        "checkpoint-2500/unet/diffusion_pytorch_model.bin"}

    base_repo = ["VQGAN_autoencoder.pth", "open_clip_pytorch_model.bin", "model_index.json",
                 "text_encoder/config.json", "text_encoder/model.safetensors",
                 "text_encoder/model.fp16.safetensors", "vae/config.json"]
    assert set(filter_repo_objects(base_repo, allow_patterns=download_patterns(
        parts=["text_encoder"]), ignore_patterns=list(VARIANT_PATTERNS))) == {
        "model_index.json", "text_encoder/config.json", "text_encoder/model.safetensors"}


# -- loading from the hub cache ------------------------------------------------------------------
def test_the_sketch_preset_loads_from_the_hub_cache_offline(cached_sketch_model):
    _, marker = cached_sketch_model
    pipe = load_pipeline("modelscope-sketch", device="cpu")
    finetune = build_tiny_components(seed=1)
    for part in ("unet", "text_encoder"):
        for mine, theirs in zip(getattr(pipe, part).parameters(),
                                finetune[part].parameters(), strict=True):
            torch.testing.assert_close(mine, theirs)
    assert not marker.exists()  # the lora/ pickle was left alone


def test_a_lacking_part_comes_from_the_cached_base(hub_cache, tmp_path, tiny_model_dir):
    marker = tmp_path / "lora-was-unpickled"
    save_authors_checkpoint(tmp_path / "repo", without=("text_encoder",), marker=marker)
    add_to_hub_cache(hub_cache, SKETCH_FINETUNE, tmp_path / "repo")
    # Without the base, the one line names the command that fetches both.
    with pytest.raises(ModelLoadError, match="flipsketch models download modelscope-sketch"):
        load_pipeline("modelscope-sketch", device="cpu")

    add_to_hub_cache(hub_cache, MODELSCOPE_BASE, tiny_model_dir)
    pipe = load_pipeline("modelscope-sketch", device="cpu")
    base = build_tiny_components(seed=0)["text_encoder"]
    for mine, theirs in zip(pipe.text_encoder.parameters(), base.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)
    assert not marker.exists()


def test_a_partly_cached_fine_tune_is_incomplete_not_mixed_with_the_base(
        cached_sketch_model, hub_cache, tiny_model_dir):
    snapshot, _ = cached_sketch_model
    add_to_hub_cache(hub_cache, MODELSCOPE_BASE, tiny_model_dir)
    for link in (snapshot / "checkpoint-2500" / "text_encoder").iterdir():
        link.unlink()  # as if the download stopped before the text encoder
    with pytest.raises(ModelLoadError, match="text_encoder/") as error:
        load_pipeline("modelscope-sketch", device="cpu")
    assert "`flipsketch models download modelscope-sketch`" in str(error.value)


def test_a_missing_model_offline_is_one_line_naming_the_download_command(cli, hub_cache,
                                                                          drawing, tmp_path):
    result = cli("animate", drawing, "a line", "--model", "modelscope-sketch",
                 "-o", tmp_path / "out.gif")
    line = one_line_error(result, "modelscope-sketch", "HF_HUB_OFFLINE",
                          "`flipsketch models download modelscope-sketch`")
    assert "not downloaded" in line
    assert not (tmp_path / "out.gif").exists()
    # a hub id the same way, with `models download` taking hub ids too
    one_line_error(cli("animate", drawing, "a line", "--model", "org/a-model",
                       "-o", tmp_path / "out.gif"), "`flipsketch models download org/a-model`")


# -- flipsketch models ---------------------------------------------------------------------------
def test_models_lists_presets_with_what_is_downloaded_and_its_size(cli, cached_sketch_model):
    snapshot, _ = cached_sketch_model
    result = cli("models", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    rows = {row["name"]: row for row in listing["models"]}
    assert list(rows) == ["tiny", "modelscope-sketch", "modelscope"]
    sketch = rows["modelscope-sketch"]
    assert sketch["downloaded"] and sketch["hub_ids"] == [SKETCH_FINETUNE, MODELSCOPE_BASE]
    checkpoint = snapshot / "checkpoint-2500"
    assert Path(sketch["path"]) == checkpoint
    assert sketch["size_bytes"] == unique_size(
        p for p in checkpoint.rglob("*") if p.is_file() and "lora" not in p.parts)
    assert rows["modelscope"]["downloaded"] is False and rows["modelscope"]["size_bytes"] is None
    tiny = Path(rows["tiny"]["path"])
    assert rows["tiny"]["downloaded"] and rows["tiny"]["size_bytes"] == unique_size(
        p for p in tiny.rglob("*") if p.is_file())
    assert rows["tiny"]["default"] and listing["default"] == {"name": "tiny",
                                                             "origin": "built-in"}
    assert all(row["description"] for row in rows.values())

    table = cli("models")
    assert table.returncode == 0
    [line] = [line for line in table.stdout.splitlines() if "modelscope-sketch" in line]
    assert "yes" in line and decimal(sketch["size_bytes"]) in line  # "1.6 MB"


def test_models_download_offline(cli, cached_sketch_model, hub_cache):
    result = cli("models", "download", "modelscope-sketch")
    assert result.returncode == 0, result.stderr
    assert "already downloaded" in result.stderr
    one_line_error(cli("models", "download", "modelscope"), "HF_HUB_OFFLINE",
                   "not downloaded")
    result = cli("models", "download", "tiny")
    assert result.returncode == 0 and "nothing to download" in result.stderr
    one_line_error(cli("models", "download", "no_such_model"), "no_such_model")


@pytest.fixture
def unreachable_hub(hub_cache, monkeypatch):
    """Online, but the hub is a closed port on this machine: what a machine without network
    sees, without touching the network."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as closed:  # a free port, closed again: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once, at import


def test_without_network_a_cached_model_is_up_to_date_and_loads(cli, cached_sketch_model,
                                                                 unreachable_hub):
    result = cli("models", "download", "modelscope-sketch")
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("up to date: modelscope-sketch (")
    assert load_pipeline("modelscope-sketch", device="cpu").unet is not None
    one_line_error(cli("models", "download", "modelscope"), "cannot be reached",
                   "`flipsketch models download modelscope` when online")


def test_download_progress_counts_bytes_over_repositories():
    from flipsketch.models.store import _ByteCounter

    reports = []
    counter = _ByteCounter(lambda done, total: reports.append((done, total)))
    for size in (100, 50):  # a fine-tune, then its base: one count
        files = counter.bar_class()(total=2, desc="Fetching 2 files")
        data = counter.bar_class()(total=0, unit="B", unit_scale=True)
        data.total += size  # as snapshot_download adds each file it starts
        data.update(size // 2)
        data.update(size - size // 2)
        files.update(2)
        data.close()
        files.close()
        counter.finish_repository()
    assert reports == [(50, 100), (100, 100), (125, 150), (150, 150)]


# -- the default model ---------------------------------------------------------------------------
def test_default_model_order(cli, monkeypatch, hub_cache, drawing, tmp_path, tiny_model_dir):
    """--model, then FLIPSKETCH_MODEL, then `flipsketch models default`, then tiny."""
    assert default_model() == "tiny"
    result = cli("models", "default", "org/saved-model")
    assert result.returncode == 0, result.stderr
    assert str(settings_path()) in result.stderr
    assert "flipsketch models download org/saved-model" in result.stderr  # not here yet
    assert "org/saved-model" in settings_path().read_text()
    assert default_model() == "org/saved-model"
    animate = ["animate", drawing, "a line", "-o", tmp_path / "out.gif", "--steps", "1",
               "--frames", "2", "--size", "64", "--json"]
    one_line_error(cli(*animate), "flipsketch models download org/saved-model")

    monkeypatch.setenv("FLIPSKETCH_MODEL", "org/env-model")
    assert default_model() == "org/env-model"
    one_line_error(cli(*animate), "flipsketch models download org/env-model")
    listing = json.loads(cli("models", "--json").stdout)
    assert listing["default"] == {"name": "org/env-model", "origin": "FLIPSKETCH_MODEL"}
    assert listing["models"][-1]["name"] == "org/env-model"

    result = cli(*animate, "--model", tiny_model_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == str(tiny_model_dir)

    monkeypatch.delenv("FLIPSKETCH_MODEL")
    result = cli("models", "default", "--unset")
    assert result.returncode == 0, result.stderr
    assert default_model() == "tiny"
    assert cli("models", "default").stdout.startswith("tiny (from the built-in default)")


def test_a_folder_default_is_saved_absolute_and_bad_names_are_refused(cli, tmp_path,
                                                                      tiny_model_dir,
                                                                      monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    assert cli("models", "default", tiny_model_dir.name).returncode == 0
    assert default_model() == str(tiny_model_dir)
    one_line_error(cli("models", "default", "not_a_model"), "not_a_model")
    assert default_model() == str(tiny_model_dir)  # unchanged
    one_line_error(cli("models", "default", "tiny", "--unset"), "--unset")


def test_a_broken_settings_file_is_one_line(cli):
    settings_path().parent.mkdir(parents=True)
    settings_path().write_text("default_model: [unclosed\n")
    one_line_error(cli("models"), str(settings_path()), "fix or delete it")
    settings_path().write_text("default_model: 3\n")
    with pytest.raises(UsageError, match="default_model"):
        default_model()
