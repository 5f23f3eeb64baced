"""Result tables: what ``flipsketch eval ... --csv`` writes, and the paper's Table 1 to compare
with."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from flipsketch.files import write_text_atomic


def write_csv(rows: list[dict], path: Path, *, force: bool = True) -> None:
    """Write ``rows`` (one column per key of the first row) to ``path`` as CSV.

    The table is built in memory and the file replaced atomically, so a bad row or Ctrl-C
    leaves an earlier table untouched. ``force`` is True because the command checked the path
    before spending minutes sampling; pass False to refuse a file that appeared since.
    """
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(path), buffer.getvalue(), force=force)


@dataclass(frozen=True)
class PaperScores:
    """One row of the paper's Table 1: mean and ± of each score; None where it prints "-"."""

    s2v_consistency: float | None
    s2v_std: float | None
    t2v_alignment: float | None
    t2v_std: float | None


# Table 1 of the FlipSketch paper, "Comparing animations with CLIP-based metrics" (Sec. 5.1,
# ../shared/paper/flipsketch-paper.txt): S2V consistency (CLIP) and T2V alignment (X-CLIP),
# mean ± std as printed. The paper gives no sampler settings for it beyond the method's own
# (ModelScope T2V + sketch LoRA, 256 px, 10 frames, 25 DDIM steps) and does not name the CLIP
# or X-CLIP checkpoints.
PAPER_TABLE_1: dict[str, PaperScores] = {
    "SVD": PaperScores(0.917, 0.004, None, None),
    "T2V LoRA": PaperScores(None, None, 0.158, 0.001),
    "DynamiCrafter": PaperScores(0.780, 0.003, 0.127, 0.003),
    "Live-Sketch": PaperScores(0.965, 0.003, 0.142, 0.005),
    "Ours": PaperScores(0.956, 0.004, 0.172, 0.002),
    "Ours @ lambda = 0": PaperScores(0.949, 0.002, 0.174, 0.001),
    "Ours @ lambda = 1": PaperScores(0.968, 0.003, 0.170, 0.001),
    "Ours w/o frame align": PaperScores(0.952, 0.004, 0.171, 0.001),
    "Ours w/o C^T & C^S": PaperScores(0.876, 0.004, 0.168, 0.001),
}


def paper_columns(paper_row: str | None) -> dict[str, float | None]:
    """The paper's two numbers for a row of ours (None for both where it has no such row),
    as the columns ``eval ablate`` prints and writes beside the measured ones."""
    scores = PAPER_TABLE_1.get(paper_row or "", PaperScores(None, None, None, None))
    return {"paper_s2v_consistency": scores.s2v_consistency,
            "paper_t2v_alignment": scores.t2v_alignment}
