"""The embedded tiny model: ModelScope's architecture, shrunk to train on a CPU.

It uses the very classes of ModelScope text-to-video (``UNet3DConditionModel``,
``AutoencoderKL``, ``CLIPTextModel`` + ``CLIPTokenizer``, ``DDIMScheduler``) so that every
sampler stage (inversion, frame alignment, attention composition) runs on it unchanged, only
smaller: 128 px grey frames, 4 x 16 x 16 latents, a ~11 M parameter UNet and a 3-layer text
tower over the real CLIP BPE vocabulary (built by ``scripts/build_tokenizer.py``).

Two differences from ModelScope are deliberate and live in the configs, not in code:
the VAE stores per-channel ``latents_mean``/``latents_std`` (read by ``latents.py``) and the
scheduler predicts velocity with a zero-terminal-SNR schedule, because epsilon prediction on
near-binary sketch latents drifted and exploded in an earlier attempt.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import diffusers
import torch
import yaml
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from flipsketch.errors import UsageError
from flipsketch.files import atomic_path
from flipsketch.models.frame_positions import add_frame_positions, load_unet
from flipsketch.models.presets import TINY_DIR
from flipsketch.overrides import load_yaml

CONFIG_PATH = Path(__file__).with_name("tiny.yaml")  # architecture and training recipe

# Which library and class each part of the folder is, as diffusers' model_index.json spells it.
PARTS = {
    "scheduler": ("diffusers", "DDIMScheduler"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "unet": ("diffusers", "UNet3DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
}


def load_config(path: str | os.PathLike) -> dict:
    """A training/architecture YAML as a dict; a missing or malformed file is a usage error."""
    path = Path(path)
    try:
        config = load_yaml(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config {path} not found; pass a YAML file such as "
                         f"flipsketch/models/tiny.yaml") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"config {path} is not valid YAML ({first}); fix it") from None
    if not isinstance(config, dict) or "model" not in config:
        raise UsageError(f"config {path} has no 'model' section; start from "
                         f"flipsketch/models/tiny.yaml")
    return config


def override_config(config: dict, override: str) -> None:
    """Apply one ``--set stages.base.batch_size=64`` style edit to a loaded config.

    Only keys the config already has can be set, so a typo is an error rather than a setting
    silently ignored; values are read as YAML scalars or lists.
    """
    from flipsketch.overrides import parse_override

    key, parts, value = parse_override(override, example="stages.base.batch_size=64")
    target, path = config, []
    for depth, part in enumerate(parts):
        keys = target if isinstance(target, dict) else {}
        if part not in keys:
            where = ".".join(path) or "the config"
            raise UsageError(f"--set {key}: {where} has no '{part}'; it has "
                             f"{', '.join(map(str, keys)) or 'no keys'}")
        if depth == len(parts) - 1:
            if isinstance(target[part], dict):
                raise UsageError(f"--set {key}: {key} is a section; set one of its keys "
                                 f"({', '.join(map(str, target[part]))})")
            target[part] = value
            return
        target, path = target[part], [*path, str(part)]


def build_components(config: dict, tokenizer_dir: str | os.PathLike | None = None) -> dict:
    """Freshly initialised parts, ``dict(vae, unet, text_encoder, tokenizer, scheduler)``.

    ``config`` is the whole YAML (its ``model`` section is read). The tokenizer is not
    trained, so it is loaded from ``tokenizer_dir`` (default: the shipped one).
    """
    m = config["model"]
    resolution = int(m["resolution"])
    v = m["vae"]
    n_levels = len(v["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * n_levels,
        up_block_types=("UpDecoderBlock2D",) * n_levels,
        block_out_channels=tuple(v["block_out_channels"]),
        layers_per_block=int(v["layers_per_block"]),
        latent_channels=int(v["latent_channels"]),
        norm_num_groups=int(v["norm_num_groups"]),
        sample_size=resolution,
        # Placeholders until the VAE stage measures them on training frames.
        latents_mean=(0.0,) * int(v["latent_channels"]),
        latents_std=(1.0,) * int(v["latent_channels"]),
    )

    t = m["text_encoder"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_size=int(t["hidden_size"]),
        intermediate_size=int(t["intermediate_size"]),
        num_hidden_layers=int(t["num_hidden_layers"]),
        num_attention_heads=int(t["num_attention_heads"]),
        projection_dim=int(t["hidden_size"]),
        hidden_act="gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    ))

    u = m["unet"]
    unet = UNet3DConditionModel(
        sample_size=resolution // 2 ** (n_levels - 1),
        in_channels=int(v["latent_channels"]),
        out_channels=int(v["latent_channels"]),
        down_block_types=tuple(u["down_block_types"]),
        up_block_types=tuple(u["up_block_types"]),
        block_out_channels=tuple(u["block_out_channels"]),
        layers_per_block=int(u["layers_per_block"]),
        norm_num_groups=int(u["norm_num_groups"]),
        cross_attention_dim=int(t["hidden_size"]),
        attention_head_dim=int(u["attention_head_dim"]),
    )

    if u.get("frame_positions"):
        add_frame_positions(unet, int(u["frame_positions"]))

    scheduler = DDIMScheduler(**m["scheduler"])
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir or TINY_DIR / "tokenizer")
    return dict(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer,
                scheduler=scheduler)


def load_components(folder: str | os.PathLike) -> dict:
    """Every part of an exported folder, in float32 (training continues from these)."""
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise UsageError(f"{folder} is not a model folder (no model_index.json); "
                         "export one with 'flipsketch train export'")
    return dict(
        vae=AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=torch.float32),
        unet=load_unet(folder, subfolder="unet", dtype=torch.float32),
        text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder",
                                                   dtype=torch.float32),
        tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        scheduler=DDIMScheduler.from_pretrained(folder, subfolder="scheduler"),
    )


def export_model(components: dict, out_dir: str | os.PathLike,
                 dtype: torch.dtype = torch.float16) -> Path:
    """Write ``components`` as a standard diffusers folder at ``out_dir``.

    The folder is assembled next to ``out_dir`` and swapped in at the end, so a reader (or a
    crash) never sees a half-written model. The model parts are replaced whole; anything else
    already in ``out_dir`` (a README, a licence) is carried over. Overwrite checks are the
    caller's job.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir, force=True, suffix="") as tmp:
        tmp.mkdir()
        for name in ("unet", "vae", "text_encoder"):
            part = copy.deepcopy(components[name]).to(dtype)  # (the caller keeps float32)
            part.save_pretrained(tmp / name, safe_serialization=True)
        _save_tokenizer(components["tokenizer"], tmp / "tokenizer")
        components["scheduler"].save_pretrained(tmp / "scheduler")
        index = {"_class_name": "FlipSketchPipeline", "_diffusers_version": diffusers.__version__}
        index.update({name: list(lib_cls) for name, lib_cls in PARTS.items()})
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        owned = set(PARTS) | {"model_index.json"}
        for entry in out_dir.iterdir() if out_dir.is_dir() else ():
            if entry.name not in owned and not entry.is_symlink():
                carry = shutil.copytree if entry.is_dir() else shutil.copy2
                carry(entry, tmp / entry.name)
    return out_dir


def _save_tokenizer(tokenizer, folder: Path) -> None:
    """Copy the compact BPE files the tokenizer was loaded from (vocab.json + merges.txt,
    1.5 MB) where they exist; transformers' own ``save_pretrained`` writes a 3.6 MB
    tokenizer.json, which would push the model folder past its 40 MB budget."""
    loaded_from = Path(tokenizer.name_or_path)  # the folder itself, or its parent (subfolder=)
    for source in (loaded_from, loaded_from / "tokenizer"):
        if (source / "vocab.json").is_file() and (source / "merges.txt").is_file():
            shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".*"))
            return
    tokenizer.save_pretrained(folder)
