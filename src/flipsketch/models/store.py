"""Model weights on this machine: where each part of a model is, what is downloaded and how
much disk it takes, and downloading.

A hub model's files live in huggingface_hub's cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``,
else ``~/.cache/huggingface/hub``), shared with every other program that uses the hub. Only
the files that loading reads are fetched (``presets.download_patterns``), by huggingface_hub's
``snapshot_download``: files already in the cache are kept, and an interrupted download
resumes where it stopped, because huggingface_hub keeps each partial file (``.incomplete``)
and continues it on the next call.

The backbone loads every part from a folder on disk that ``locate`` found, never by hub id.
So a model that is not here fails in ``locate``, with one line naming the command that fetches
it, before diffusers or transformers load; offline (``HF_HUB_OFFLINE=1``) nothing waits for
the network; and a part lacking from a fine-tune's folder comes from its base model.

No torch here (``flipsketch models`` lists models without loading it); huggingface_hub and
tqdm are imported where a hub model is looked up.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flipsketch.errors import ModelLoadError
from flipsketch.models.presets import (
    PART_MARKERS,
    PARTS,
    VARIANT_PATTERNS,
    ModelSpec,
    download_patterns,
    is_local,
    resolve_model,
)

# What else a user can pass when a hub model is out of reach; a backbone plugin names its own.
LOCAL_INSTEAD = "use --model tiny or a local folder"


# progress(bytes done, bytes to fetch) while a download runs; the total grows as files start.
Progress = Callable[[int, int], None]


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, by its own rule but read now: huggingface_hub reads
    its environment once, at import, and the cache may have been pointed elsewhere since."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(os.path.expandvars(env[key])).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache",
                                              "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_endpoint() -> str | None:
    """``HF_ENDPOINT`` (a mirror, a private hub) as set now; None: huggingface_hub's own."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None


def hub_offline() -> bool:
    """Whether the hub may not be contacted (``HF_HUB_OFFLINE``, now or at import)."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return now or bool(constants.HF_HUB_OFFLINE)


def has_part(folder: Path, part: str) -> bool:
    """Whether ``folder`` (a model's ``unet/``, ``vae/``...) holds the part ``part``."""
    return any((folder / marker).is_file() for marker in PART_MARKERS[part])


@dataclass(frozen=True)
class ModelFiles:
    """A model on disk: ``root`` is its own diffusers folder, ``parts`` each part's folder
    (``.../text_encoder``), which for a part the model lacks is in its base model's folder."""

    name: str
    root: Path
    parts: dict[str, Path]

    def size_bytes(self) -> int:
        """Bytes on disk of what loading reads: every file of each part's folder and the
        files at the root (``model_index.json``), each blob once (cache snapshots link to
        shared blobs)."""
        files = [p for folder in self.parts.values() for p in folder.rglob("*")]
        files += [p for p in self.root.iterdir() if p.is_file()]
        blobs = {p.resolve() for p in files if p.is_file()}
        return sum(blob.stat().st_size for blob in blobs)


@dataclass(frozen=True)
class ModelStatus:
    """What ``flipsketch models`` shows of one model: ``files`` is None unless every part is
    on this machine."""

    name: str
    spec: ModelSpec
    files: ModelFiles | None

    @property
    def downloaded(self) -> bool:
        return self.files is not None

    @property
    def size_bytes(self) -> int:
        return self.files.size_bytes() if self.files is not None else 0


def status(name: str, *, allow_pickle: bool = False) -> ModelStatus:
    """Whether model ``name`` (a preset, folder or hub id) is complete on this machine, and
    its size; reads the cache only, never the network. With ``allow_pickle`` it also looks
    for the pickled weights ``download(allow_pickle=True)`` fetches, as far as the cache's
    record of the repository tells."""
    spec = resolve_model(name)
    try:
        files = locate(name, spec, allow_pickle=allow_pickle, download=False)
    except ModelLoadError:
        files = None
    return ModelStatus(name, spec, files)


def download(name: str, *, allow_pickle: bool = False,
             progress: Progress | None = None) -> ModelStatus:
    """Fetch what model ``name`` loads into the hub cache and return its status.

    What is already cached is kept and checked against the hub (a new revision is fetched);
    an interrupted download resumes. ``progress(done, total)`` reports bytes; without it
    huggingface_hub draws its own bars on stderr. A local folder has nothing to fetch.
    """
    spec = resolve_model(name)
    files = locate(name, spec, allow_pickle=allow_pickle, download=True, progress=progress)
    return ModelStatus(name, spec, files)


def locate(name: str, spec: ModelSpec | None = None, *, allow_pickle: bool = False,
           download: bool = True, progress: Progress | None = None,
           instead: str = LOCAL_INSTEAD) -> ModelFiles:
    """Each part of model ``name`` (``spec``: its resolution, by default ``resolve_model``)
    as a folder on disk, fetching what is missing when ``download`` and the hub is reachable.

    Each part comes from the model's own folder where it has one, else from ``spec.fallback``
    (only the lacking parts are fetched from it); ``--unet`` replaces the UNet. Raises a
    one-line ``ModelLoadError`` for a model that is not here and cannot be fetched, or that
    lacks a part. ``instead``: what else to pass when a hub model is out of reach (a backbone
    plugin's own advice rather than ``--model tiny``).
    """
    spec = spec or resolve_model(name)
    counter = _ByteCounter(progress) if progress is not None else None
    fix = f"flipsketch models download {name}" + (" --allow-pickle" if allow_pickle else "")

    def fetch(source: str, subfolder: str, parts: list[str], what: str, fix: str) -> Path:
        if is_local(source):
            folder = Path(source).expanduser() / subfolder
            if not folder.is_dir():
                raise ModelLoadError(f"{what} folder '{source}' has no subfolder '{subfolder}'; "
                                     "point it at the folder holding unet/, vae/, ...")
            return folder
        return _hub_folder(source, subfolder, parts, what=what, fix=fix, instead=instead,
                           allow_pickle=allow_pickle, download=download, counter=counter)

    own = [part for part in PARTS if not (part == "unet" and spec.unet_source)]
    root = fetch(spec.source, spec.subfolder, own, f"model '{name}'", fix)
    parts = {part: root / part for part in own if has_part(root / part, part)}
    # A part the folder's model_index.json lists is its own even where it is missing (an
    # interrupted download): the base's would silently mix two models, so it stays missing.
    lacking = [part for part in own if part not in parts and part not in _listed_parts(root)]
    if lacking and spec.fallback:
        base = fetch(spec.fallback, "", lacking, f"base model '{spec.fallback}' of '{name}'",
                     fix)
        parts.update({part: base / part for part in lacking if has_part(base / part, part)})
    if spec.unet_source:
        prefix = f"{spec.unet_subfolder.strip('/')}/" if spec.unet_subfolder.strip("/") else ""
        unet_root = fetch(spec.unet_source, spec.unet_subfolder, ["unet"],
                          f"--unet '{spec.unet_source}'",
                          f"hf download {spec.unet_source} --include '{prefix}unet/*'")
        if has_part(unet_root / "unet", "unet"):
            parts["unet"] = unet_root / "unet"
    missing = [part for part in PARTS if part not in parts]
    if missing:
        raise ModelLoadError(_incomplete(name, spec, root, missing, fix))
    return ModelFiles(name, root, parts)


def _listed_parts(root: Path) -> set[str]:
    """The parts ``root/model_index.json`` names (none without one): what a diffusers
    pipeline saved there, e.g. ``"text_encoder": ["transformers", "CLIPTextModel"]``."""
    try:
        index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(index, dict):
        return set()
    return {key for key, value in index.items() if key in PARTS and isinstance(value, list)
            and value and value[-1] is not None}


def _incomplete(name: str, spec: ModelSpec, root: Path, missing: Iterable[str],
                fix: str) -> str:
    lacks = ", ".join(f"{part}/" for part in missing)
    if "unet" in missing and spec.unet_source:
        return (f"--unet '{spec.unet_source}' has no unet/ with a config.json; pass a "
                "diffusers folder or ID:SUBFOLDER that holds unet/")
    if is_local(spec.source):
        return (f"model folder '{root}' is incomplete: it lacks {lacks}; a diffusers "
                "text-to-video folder has unet/, vae/, text_encoder/, tokenizer/ and scheduler/")
    return (f"model '{name}' is incomplete here: {root} lacks {lacks}; run `{fix}` to "
            "complete it (it resumes)")


def _hub_folder(repo: str, subfolder: str, parts: list[str], *, what: str, fix: str,
                instead: str, allow_pickle: bool, download: bool,
                counter: _ByteCounter | None) -> Path:
    """The cached snapshot's ``subfolder`` of hub model ``repo`` holding ``parts``, fetched
    first unless ``download`` is False or the hub is off; every failure is one line."""
    patterns = download_patterns(subfolder, parts, allow_pickle=allow_pickle)
    return hub_snapshot(repo, patterns, what=what, fix=fix, instead=instead,
                        download=download, counter=counter) / subfolder


def hub_snapshot(repo: str, allow_patterns: list[str], *, what: str, fix: str,
                 instead: str = LOCAL_INSTEAD, download: bool = True,
                 counter: _ByteCounter | None = None) -> Path:
    """The cached snapshot folder of hub repository ``repo``: its files matching
    ``allow_patterns`` (never the reduced-precision copies, ``VARIANT_PATTERNS``), fetched
    first unless ``download`` is False or the hub is off (``HF_HUB_OFFLINE``).

    Every failure is a one-line ``ModelLoadError`` about ``what`` (e.g. "model 'org/name'"):
    not downloaded while offline or unreachable (run ``fix``, or ``instead``), gated (accept
    the terms, log in), no such repository, or a download error. Public for backbone plugins
    that fetch parts of their own (a motion adapter, say).
    """
    from huggingface_hub import errors, snapshot_download

    try:
        snapshot = snapshot_download(
            repo, cache_dir=hub_cache_dir(), endpoint=hub_endpoint(),
            local_files_only=not download or hub_offline(),
            allow_patterns=list(allow_patterns), ignore_patterns=list(VARIANT_PATTERNS),
            tqdm_class=counter.bar_class() if counter is not None else None)
    except errors.LocalEntryNotFoundError as exc:  # not (all) cached; the hub is off or away
        partly = isinstance(exc, getattr(errors, "IncompleteSnapshotError", ()))
        state = "is only partly downloaded" if partly else "is not downloaded"
        if hub_offline():
            why, how = "HF_HUB_OFFLINE is set", f"unset it and run `{fix}`"
        else:
            why, how = "the Hugging Face hub cannot be reached", f"run `{fix}` when online"
        raise ModelLoadError(f"{what} {state} and {why}; {how}, or {instead}") from exc
    except errors.GatedRepoError as exc:  # before its base class, RepositoryNotFoundError
        raise ModelLoadError(f"{what} is gated on the hub: accept its terms at "
                             f"https://huggingface.co/{repo}, log in with `hf auth login`, "
                             f"then run `{fix}`") from exc
    except errors.RepositoryNotFoundError as exc:
        raise ModelLoadError(f"{what}: no model '{repo}' on the Hugging Face hub (a private "
                             "one needs `hf auth login`); check the name") from exc
    except (OSError, ValueError) as exc:  # HTTP errors, a full disk, an unwritable cache
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ModelLoadError(f"cannot download {what} ({reason}); fix that and run `{fix}` "
                             "again (it resumes)") from exc
    finally:
        if counter is not None:
            counter.finish_repository()
    return Path(snapshot)


class _NullFile:
    """Where the bars of ``_ByteCounter`` draw: nowhere (the caller draws its own)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@dataclass
class _ByteCounter:
    """``progress(done, total)`` from the byte counts of ``snapshot_download``'s bars.

    ``snapshot_download`` reports through the tqdm class it is given: a bar of files and bars
    of bytes (unit "B") into which every file's size and progress are summed. The class made
    here draws nothing and reports the furthest byte bar, added to the repositories already
    fetched, so a model fetched from two repositories (a fine-tune and its base) is one count.
    """

    progress: Progress
    done_before: int = 0
    total_before: int = 0
    bars: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bar_class(self) -> type:
        from tqdm import tqdm

        counter = self

        class CountingBar(tqdm):
            def __init__(self, *args, **kwargs) -> None:
                kwargs.update(file=_NullFile(), disable=False)
                super().__init__(*args, **kwargs)
                if self.unit == "B":
                    with counter.lock:
                        counter.bars.append(self)

            def update(self, n: float | None = 1) -> bool | None:
                shown = super().update(n)
                if self.unit == "B":
                    counter.report()
                return shown

        return CountingBar

    def _counts(self) -> tuple[int, int]:
        with self.lock:
            done = int(max((bar.n for bar in self.bars), default=0))
            total = int(max((bar.total or 0 for bar in self.bars), default=0))
        return done, max(done, total)

    def report(self) -> None:
        done, total = self._counts()
        self.progress(self.done_before + done, self.total_before + total)

    def finish_repository(self) -> None:
        """The current repository is done (or failed): its bytes count as before."""
        done, total = self._counts()
        self.done_before += total
        self.total_before += total
        with self.lock:
            self.bars.clear()
