"""Which models ``--model`` can name (presets, local diffusers folders, hub ids), which files
of a hub model are fetched, and which model is the default.

These are the names of the built-in ``modelscope`` backbone, which resolves ``--model`` here
before it loads anything; other backbones accept names of their own. Resolving touches no
weights and imports no model library, so recipes check their model with it before any step.

The default model, used where ``--model`` is not given, is the first of: the
``FLIPSKETCH_MODEL`` environment variable, the user's settings file
(``flipsketch models default NAME`` writes it), the embedded ``tiny`` model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from flipsketch.errors import UsageError
from flipsketch.files import user_config_dir, write_text_atomic

TINY_DIR = Path(__file__).parent / "weights" / "tiny"  # the shipped weights
MODELSCOPE_BASE = "damo-vilab/text-to-video-ms-1.7b"
SKETCH_FINETUNE = "Hmrishav/t2v_sketch-lora"
SKETCH_CHECKPOINT = "checkpoint-2500"  # the folder of the authors' demo

# The parts of a diffusers text-to-video folder the backbone loads, each in its own subfolder,
# and the files of which one says a folder has that part (transformers 5 saves a tokenizer as
# tokenizer.json, earlier versions as vocab.json and merges.txt).
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
PART_MARKERS = {"unet": ("config.json",), "vae": ("config.json",),
                "text_encoder": ("config.json",),
                "tokenizer": ("tokenizer_config.json", "tokenizer.json", "vocab.json"),
                "scheduler": ("scheduler_config.json",)}
# Reduced-precision copies some repositories keep beside the full weights: the backbone loads
# the full weights and casts them, so these are never fetched.
VARIANT_PATTERNS = ("*.fp16.*", "*.bf16.*", "*.non_ema.*")


@dataclass(frozen=True)
class ModelSpec:
    """A model to load: the diffusers folder at ``subfolder`` of ``source`` (a local folder or
    a hub id), each part taken from it where it has one.

    ``fallback`` (a folder or hub id with a diffusers layout at its root) supplies the parts
    that folder lacks: a fine-tune saved as a whole pipeline needs nothing from it, one that
    saved only its UNet takes the rest from its base. ``unet_source``/``unet_subfolder``
    (``--unet PATH_OR_ID[:SUBFOLDER]``) replace only the UNet, whatever the folder holds.
    ``description`` says what the model is for (``flipsketch models`` lists it).
    """

    source: str
    subfolder: str = ""
    fallback: str | None = None
    unet_source: str | None = None
    unet_subfolder: str = ""
    description: str = ""

    @property
    def hub_ids(self) -> list[str]:
        """The hub repositories the model's files come from, its own first."""
        sources = (self.source, self.fallback, self.unet_source)
        return [s for s in dict.fromkeys(sources) if s and not is_local(s)]


PRESETS: dict[str, ModelSpec] = {
    "tiny": ModelSpec(
        str(TINY_DIR),
        description="small 128-px sketch animator trained for flipsketch and shipped with "
                    "it; runs on a CPU",
    ),
    "modelscope-sketch": ModelSpec(
        SKETCH_FINETUNE, subfolder=SKETCH_CHECKPOINT, fallback=MODELSCOPE_BASE,
        description="the paper's model: the authors' sketch fine-tune of ModelScope T2V "
                    "1.7B (GPU)",
    ),
    "modelscope": ModelSpec(
        MODELSCOPE_BASE,
        description="ModelScope T2V 1.7B base, not tuned for sketches (GPU; comparisons)",
    ),
}

FALLBACK_MODEL = "tiny"  # the default when neither FLIPSKETCH_MODEL nor the settings name one
MODEL_ENV = "FLIPSKETCH_MODEL"
SETTINGS_FILE = "config.yaml"
DEFAULT_KEY = "default_model"

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_local(source: str) -> bool:
    """Whether ``source`` is a folder on this machine (else it is a hub id), as diffusers'
    ``from_pretrained`` decides it."""
    return Path(source).expanduser().is_dir()


def resolve_model(name: str, unet: str | None = None) -> ModelSpec:
    """A preset name, a local diffusers folder or a hub id -> ``ModelSpec``.

    ``unet`` optionally names a fine-tune ("PATH_OR_ID" or "PATH_OR_ID:SUBFOLDER") whose
    ``unet/`` replaces the model's UNet.
    """
    if name in PRESETS:
        spec = PRESETS[name]
    elif is_local(name):
        spec = ModelSpec(str(Path(name).expanduser()))
    elif _HUB_ID.match(name) and not Path(name).suffix:
        spec = ModelSpec(name)
    else:
        raise UsageError(
            f"model '{name}' is neither a preset ({', '.join(PRESETS)}), a local folder nor "
            "a hub id like 'org/name'; pass --model tiny or a diffusers model folder"
        )
    if unet is not None:
        source, _, subfolder = unet.partition(":")
        spec = replace(spec, unet_source=source, unet_subfolder=subfolder)
    return spec


def download_patterns(subfolder: str = "", parts: Iterable[str] = PARTS, *,
                      allow_pickle: bool = False) -> list[str]:
    """The files of a hub model that loading ``parts`` from its ``subfolder`` reads, as
    ``snapshot_download`` ``allow_patterns``: ``model_index.json`` and, in each part's folder,
    configs, tokenizer files and safetensors weights; pickled ``.bin`` weights only with
    ``allow_pickle``.

    Naming the parts' folders is what keeps everything else out: the pickled text-encoder LoRA
    in ``lora/`` beside the authors' checkpoint, the original (non-diffusers) ModelScope
    checkpoints at the base repository's root, other checkpoints of a fine-tune repository.
    Pass ``VARIANT_PATTERNS`` as ``ignore_patterns`` with them.
    """
    prefix = f"{subfolder.strip('/')}/" if subfolder.strip("/") else ""
    kinds = ("*.json", "*.txt", "*.safetensors", *(("*.bin",) if allow_pickle else ()))
    return [f"{prefix}model_index.json",
            *(f"{prefix}{part}/{kind}" for part in parts for kind in kinds)]


# -- the default model -------------------------------------------------------------------------
class DefaultModel(NamedTuple):
    """The model used without ``--model`` and where that choice comes from."""

    name: str
    origin: str  # "FLIPSKETCH_MODEL", the settings file's path, or "built-in"


def settings_path() -> Path:
    """The user's settings file: ``config.yaml`` in ``files.user_config_dir()``."""
    return user_config_dir() / SETTINGS_FILE


def default_model() -> str:
    """The model to load when ``--model`` is not given: ``FLIPSKETCH_MODEL``, else the default
    saved by ``flipsketch models default``, else ``tiny``. Read at each call, so every front
    end (CLI, recipes, training, the Python API) follows the same rule."""
    return default_model_origin().name


def default_model_origin() -> DefaultModel:
    """``default_model()`` and where it came from, for ``flipsketch models`` to show."""
    from_env = os.environ.get(MODEL_ENV, "").strip()
    if from_env:
        return DefaultModel(from_env, MODEL_ENV)
    saved = saved_default_model()
    if saved is not None:
        return DefaultModel(saved, str(settings_path()))
    return DefaultModel(FALLBACK_MODEL, "built-in")


def saved_default_model() -> str | None:
    """The default saved by ``flipsketch models default NAME``, None when there is none."""
    saved = _read_settings().get(DEFAULT_KEY)
    if saved is not None and (not isinstance(saved, str) or not saved.strip()):
        raise UsageError(f"'{DEFAULT_KEY}' in '{settings_path()}' must be a model name; run "
                         "`flipsketch models default NAME` or `--unset`")
    return saved.strip() if saved is not None else None


def set_default_model(name: str | None) -> Path:
    """Save ``name`` as the user's default model (None forgets it) and return the settings
    file. The name is checked first; a local folder is saved as an absolute path, so the
    default means the same folder wherever flipsketch runs. Other settings in the file stay."""
    settings = _read_settings()
    if name is None:
        settings.pop(DEFAULT_KEY, None)
    else:
        resolve_model(name)
        local = name not in PRESETS and is_local(name)
        settings[DEFAULT_KEY] = str(Path(name).expanduser().resolve()) if local else name
    import yaml

    path = settings_path()
    text = "# flipsketch settings (`flipsketch models default NAME` writes default_model)\n"
    if settings:
        text += yaml.safe_dump(settings, sort_keys=False, allow_unicode=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text, force=True)
    except OSError as exc:
        raise UsageError(f"cannot write settings file '{path}' ({exc.strerror or exc}); check "
                         "the folder's permissions or set FLIPSKETCH_CONFIG_DIR") from exc
    return path


def _read_settings() -> dict:
    path = settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read settings file '{path}' ({exc}); fix or delete it") \
            from exc
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise UsageError(f"settings file '{path}{line}' is not valid YAML; fix or delete it") \
            from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"settings file '{path}' must be a mapping like "
                         f"'{DEFAULT_KEY}: tiny'; fix or delete it")
    return data
