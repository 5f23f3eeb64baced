"""One job through the Python API: sample, rank, post-process, write every download.

Exactly what ``flipsketch animate`` does with the same options (``flipsketch.api.animate``
with its progress callback, ``postprocess``, ``save``), so the page's animation and the
command line's are the same file. The drawing's inversion is cached between jobs
(``animate``'s ``cache``), so a second prompt for the same drawing skips the inversion.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from flipsketch.api import FOLDER_WRITER, animate, postprocess, save
from flipsketch.plugins import PluginManager
from flipsketch_web.jobs import Job, Progress

# The downloads of each sample: kind -> file name (the suffix picks the writer). "zip" is
# the PNG-frames folder's frames (frame_000.png ...) as one download, written straight into
# the archive; "svg" only where the SVG plugin registered its writer.
FILES = {"gif": "animation.gif", "mp4": "animation.mp4", "zip": "frames.zip",
         "svg": "animation.svg"}
WRITERS = {"gif": "gif", "mp4": "mp4", "zip": FOLDER_WRITER, "svg": "svg"}


def formats(manager: PluginManager) -> list[str]:
    """The download kinds this server can write: the writers that are registered."""
    writers = manager.registry("writer").impls
    return [kind for kind, writer in WRITERS.items() if writer in writers]


def write_zip(images: list, path: Path) -> None:
    """The frames as ``frame_000.png`` ... in one zip (the PNG-frames writer's names);
    PNG is compressed already, so the archive stores them as they are."""
    digits = max(3, len(str(len(images) - 1)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for number, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            archive.writestr(f"frame_{number:0{digits}d}.png", buffer.getvalue())


def run_job(pipe, job: Job, progress: Progress, folder: Path,
            manager: PluginManager) -> dict[str, Any]:
    """Sample ``job`` and write its downloads under ``folder``; returns the result record
    (file names, not URLs: the app turns them into URLs)."""
    request = job.request
    animations = animate(pipe, request.prompt, job.sketch, request.settings, **request.stages,
                         progress=progress, manager=manager)

    # Best-of-K: with a drawing, the samples in order of how well they keep it (every one
    # returned, best first); without one there is nothing to rank against.
    scores: list[float | None] = [None] * len(animations)
    if job.sketch is not None and len(animations) > 1:
        from flipsketch.evaluation.ranking import rank

        ranked = rank(job.sketch, animations)
        animations, scores = [r.animation for r in ranked], [r.score for r in ranked]

    kinds = formats(manager)
    total, done = len(animations) * len(kinds), 0
    progress("writing", 0, total)
    samples = []
    for number, (animation, score) in enumerate(zip(animations, scores, strict=True), start=1):
        images = postprocess(animation.frames, request.postprocessor, size=request.size,
                             transparent=request.transparent, sketch=job.sketch,
                             manager=manager)
        target = folder / f"sample-{number}"
        target.mkdir(parents=True, exist_ok=True)
        files = {}
        for kind in kinds:
            path = target / FILES[kind]
            if kind == "zip":
                write_zip(images, path)
            else:
                save(images, path, fps=request.fps, manager=manager)
            files[kind] = f"{target.name}/{path.name}"
            done += 1
            progress("writing", done, total)
        samples.append({"rank": number, "seed": animation.seed, "score": score,
                        "files": files})
    return {"frames": request.settings.num_frames, "size": request.size, "fps": request.fps,
            "ranked": scores[0] is not None, "samples": samples,
            "timings": animations[0].timings,
            "inversion_cached": animations[0].inversion_cached}
