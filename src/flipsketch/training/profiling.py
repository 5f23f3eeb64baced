"""Where a training step's time goes: named sections timed by the loop, and torch.profiler.

``train_denoiser`` with ``LoopConfig.profile_steps = N`` runs its first N steps inside
``torch.profiler`` and times each part of a step with plain timers (``StepSections``): drawing or
waiting for clips, the VAE encode, noising, the text encoder, the UNet forward, the backward
pass, the optimiser, the EMA and the bookkeeping (loss logging, checkpoints, exports). The
sections are also ``record_function`` ranges, so they appear by name in the profiler's trace
beside the operators that ran inside them.

Written to ``RUN_DIR/profile/``: ``sections.txt`` / ``sections.json`` (seconds per step and per
clip by section, the first step apart from the later ones: it pays one-off costs such as
allocations and cuDNN's kernel search), ``ops.txt`` (the operators by self time) and
``trace.json.gz`` (a Chrome/Perfetto trace of the profiled steps); with
``LoopConfig.profile_operators`` False the timers run alone and only the sections are written.
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

# The parts of a step, in the order they run; "other" is what the step took beyond them
# (accelerate's accumulate/backward wrappers, Python in between).
SECTIONS = {
    "data": "drawing clips (or waiting for the workers that draw them)",
    "vae_encode": "VAE encode of new clips, latent cache reads and copies",
    "noise": "caption dropout, timesteps, noise, noised latents and targets",
    "text_encoder": "tokenizer and text encoder forward",
    "unet_forward": "UNet forward and the loss",
    "backward": "backward through the UNet and text encoder",
    "optimizer": "gradient clipping, AdamW step, LR schedule, zero_grad",
    "ema": "EMA update of the trainable weights",
    "bookkeeping": "loss gather and logging, checkpoints, exports",
}


class StepSections:
    """Plain wall-clock timers per named section of a step, for the steps being profiled.

    Off (``active`` False), ``section`` does nothing, so the loop pays nothing outside the
    profiled steps. On a GPU each section ends with a synchronize while on: kernels run
    asynchronously, so without it a section's time would land in whichever one waits next.
    """

    def __init__(self, device: torch.device):
        self.sync = device.type == "cuda"
        self.active = False
        self.steps: list[dict[str, float]] = []  # one {section: seconds} per profiled step
        self._started = 0.0

    def start_step(self) -> None:
        if self.active:
            self.steps.append({})
            self._started = time.perf_counter()

    def end_step(self) -> None:
        if self.active:
            self.steps[-1]["total"] = time.perf_counter() - self._started

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        if not self.active:
            yield
            return
        tic = time.perf_counter()
        with record_function(name):
            yield
            if self.sync:
                torch.cuda.synchronize()
        spent = self.steps[-1]
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - tic

    def summary(self, batch_size: int) -> dict:
        """Seconds per step by section: ``first`` step, mean of the ``later`` ones, and each
        step's own (``per_step``)."""
        later = self.steps[1:] or self.steps
        return {"batch_size": batch_size, "steps": len(self.steps),
                "first": mean_sections(self.steps[:1]), "later": mean_sections(later),
                "per_step": [mean_sections([row]) for row in self.steps]}


def mean_sections(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean seconds per step of each section over ``rows`` (steps), with ``other`` (the step's
    total beyond its sections) filled in."""
    out = {k: sum(r.get(k, 0.0) for r in rows) / len(rows) for k in [*SECTIONS, "total"]}
    out["other"] = out["total"] - sum(out[k] for k in SECTIONS)
    return out


def format_sections(columns: dict[str, dict[str, float]], batch_size: int) -> str:
    """Markdown table of seconds per step by section, one column per ``columns`` entry
    (title -> ``mean_sections``), then the last column's share of the step and per clip."""
    titles = list(columns)
    last = columns[titles[-1]]
    total = last["total"] or 1.0
    lines = ["| section | " + " | ".join(f"{t} (s/step)" for t in titles)
             + " | share | per clip (ms) |",
             "| --- |" + " ---: |" * (len(titles) + 2)]
    for name in [*SECTIONS, "other", "total"]:
        cells = " | ".join(f"{columns[t][name]:.3f}" for t in titles)
        lines.append(f"| {name} | {cells} | {last[name] / total:.0%} | "
                     f"{last[name] / batch_size * 1e3:.0f} |")
    return "\n".join(lines) + "\n"


def legend() -> str:
    """What each section of the table holds, one Markdown list item per section."""
    return "\n".join(f"- {name}: {what}" for name, what in SECTIONS.items())


class StepProfiler:
    """The section timers over the first ``steps`` steps, with ``torch.profiler`` beside them
    when ``operators``; writes ``out_dir`` when those steps are done (or at ``close`` if the
    run ends sooner)."""

    def __init__(self, steps: int, out_dir: Path, device: torch.device, batch_size: int,
                 operators: bool = True):
        self.remaining, self.out_dir, self.batch_size = steps, out_dir, batch_size
        self.sections = StepSections(device)
        self._profile = None
        if steps > 0:
            if operators:
                activities = [ProfilerActivity.CPU]
                if device.type == "cuda":
                    activities.append(ProfilerActivity.CUDA)
                self._profile = profile(activities=activities)
                self._profile.__enter__()
            self.sections.active = True

    def step_done(self) -> None:
        """Call after each optimiser step; stops and writes after the last profiled one."""
        if not self.sections.active:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            self.close()

    def close(self) -> None:
        if not self.sections.active:
            return
        prof, self._profile = self._profile, None
        if prof is not None:
            prof.__exit__(None, None, None)
        self.sections.active = False
        if self.sections.steps:
            self._write(prof)

    def _write(self, prof) -> None:
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        summary = self.sections.summary(self.batch_size)
        (out / "sections.json").write_text(json.dumps(summary, indent=1) + "\n")
        n = len(self.sections.steps)
        later = f"steps 2-{n} mean" if n > 2 else "step 2" if n == 2 else "step 1"
        table = format_sections({"step 1": summary["first"], later: summary["later"]},
                                self.batch_size)
        (out / "sections.txt").write_text(table + "\n" + legend() + "\n")
        if prof is None:  # the section timers only
            return
        sort = "self_device_time_total" if self.sections.sync else "self_cpu_time_total"
        (out / "ops.txt").write_text(prof.key_averages().table(sort_by=sort, row_limit=40))
        raw = out / "trace.json"
        prof.export_chrome_trace(str(raw))
        with raw.open("rb") as src, gzip.open(out / "trace.json.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()
